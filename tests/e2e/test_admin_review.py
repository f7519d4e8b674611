"""The review journey: a user reports an answer from the chat, a reviewer finds it first in
the admin's queue, reads the transcript as the user saw it and marks it reviewed; an admin
reads the usage charts; a transcript with branches shows each version where it forks, in
every look and clean under axe. Every admin page runs under the site's
Content-Security-Policy: a violation is a console error, which fails the test. With
UPDATE_SCREENSHOTS=1 the reviewed transcript is kept as docs/screenshot-admin-review.png and
the branches as docs/screenshot-admin-branches-{light,dark,phone}.png."""

import os
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.axe import LOOKS, violations
from tests.e2e.conftest import PASSWORD, ROOT, last_answer, send, sign_up
from tests.fake_mistral import Reply, split_tokens

pytestmark = pytest.mark.e2e

ANSWER = """Paris has been the capital of France since **987**, under Hugh Capet.

- Population: about 2.1 million
- River: the Seine
"""


def _staff(site_shell, *, superuser: bool) -> str:
    username = f"staff{uuid.uuid4().hex[:8]}"
    site_shell(
        "from django.contrib.auth.models import Group, User\n"
        f"u = User.objects.create_user({username!r}, password={PASSWORD!r}, is_staff=True, "
        f"is_superuser={superuser})\n"
        "u.groups.add(Group.objects.get(name='Reviewer'))\n"
    )
    return username


def _admin_login(page: Page, username: str) -> None:
    page.context.clear_cookies()
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()


def test_reported_answer_is_reviewed_in_the_admin(page: Page, fake, site_shell, tmp_path):
    page.set_viewport_size({"width": 1280, "height": 900})
    owner = sign_up(page)
    fake.enqueue(Reply.tokens(split_tokens(ANSWER), usage=(31, 40)))
    fake.enqueue(Reply.tokens(["Capital of France"]))
    send(page, "Since when is Paris the capital of France?")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "complete")
    expect(page.locator("#conv-title")).to_have_text("Capital of France")

    answer.get_by_role("button", name="Report this answer").click()
    dialog = page.get_by_role("dialog", name="Report this answer")
    dialog.get_by_label("What was wrong? (optional)").fill("987 is when Hugh Capet was crowned.")
    dialog.get_by_role("button", name="Send report").click()
    expect(dialog).not_to_be_visible()
    expect(answer.get_by_role("button", name="Reported")).to_have_attribute("aria-pressed", "true")

    reviewer = _staff(site_shell, superuser=False)
    _admin_login(page, reviewer)
    page.get_by_role("rowheader", name="Conversations").get_by_role("link").click()
    first_row = page.locator("#result_list tbody tr").first
    expect(first_row).to_contain_text("Capital of France")
    expect(first_row).to_contain_text(owner)
    expect(first_row.locator("td.field-reported img")).to_have_attribute("alt", "True")

    first_row.get_by_role("link", name="Capital of France").click()
    transcript = page.locator(".review-transcript")
    expect(transcript.locator(".review-msg--user")).to_contain_text("Since when is Paris")
    expect(transcript.locator(".review-answer strong")).to_have_text("987")
    expect(transcript.locator(".review-answer li")).to_have_count(2)
    expect(transcript.locator(".review-report")).to_contain_text(f"Reported by {owner}")
    expect(transcript.locator(".review-report")).to_contain_text("Hugh Capet was crowned")
    expect(transcript.locator(".review-facts")).to_contain_text("31 in · 40 out")
    # The transcript is not a form: only the review can be changed.
    expect(page.locator("textarea[name=text], input[name=title]")).to_have_count(0)

    page.get_by_label("Review status").select_option("reviewed")
    page.get_by_label("Review notes").fill("Checked: the date is right, the wording is loose.")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    expect(page.locator(".field-reviewed_by .readonly")).to_have_text(reviewer)
    out = ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") else Path(tmp_path)
    page.screenshot(animations="disabled", path=out / "screenshot-admin-review.png", full_page=True)

    page.goto("/admin/conversations/conversation/")
    reviewed_row = page.locator("#result_list tbody tr", has_text="Capital of France")
    expect(reviewed_row.locator("td.field-review_status")).to_have_text("Reviewed")


def test_usage_page_draws_its_charts(page: Page, fake, site_shell):
    sign_up(page)
    fake.enqueue(Reply.tokens(split_tokens("Fine, thanks."), usage=(20, 4)))
    fake.enqueue(Reply.tokens(["Small talk"]))
    send(page, "How are you?")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")

    _admin_login(page, _staff(site_shell, superuser=True))
    page.goto("/admin/conversations/apicall/")
    page.get_by_role("link", name="Usage and cost charts").click()
    expect(page.get_by_role("heading", name="Usage and cost")).to_be_visible()
    for name in ("Tokens per day and model", "Cost per day and model", "Top users by cost"):
        chart = page.get_by_role("img", name=name)
        expect(chart).to_be_visible()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=chart.element_handle()
        )
    expect(page.locator(".usage-table").first).to_contain_text("mistral-small-latest")


# A conversation with a regenerated answer (its first version reported) and an edited
# follow-up, each with its own continuation; the user went back to the first follow-up.
BRANCHED = """
from decimal import Decimal
from django.contrib.auth.models import User
from conversations.models import ApiCall, Conversation, Message, Report
from conversations.rendering import render_markdown
owner = User.objects.create_user(OWNER, password=None)
c = Conversation.objects.create(owner=owner, model="mistral-small-latest")
Conversation.objects.filter(pk=c.pk).update(title="Rivers of Lyon")
def say(text, parent):
    return Message.objects.create(conversation=c, role="user", text=text, parent=parent)
def answer(text, parent, tokens):
    m = Message.objects.create(
        conversation=c, role="assistant", text=text, html=render_markdown(text), parent=parent,
        model="mistral-small-latest", prompt_tokens=tokens, completion_tokens=tokens // 2,
        duration_ms=900 + tokens, time_to_first_token_ms=180, finish_reason="stop",
    )
    ApiCall.objects.create(
        kind="chat", model=m.model, status="complete", user=owner, conversation=c, message=m,
        prompt_tokens=tokens, completion_tokens=tokens // 2, cost_usd=Decimal(tokens) / 10**6,
    )
    return m
q = say("Which river runs through Lyon?", None)
first = answer("The **Seine** runs through Lyon.", q, 12)
Report.objects.create(message=first, user=owner, reason="It is the Rhône and the Saône.")
second = answer("Two: the **Rhône** and the **Saône**, which meet at the Confluence.", q, 14)
follow = say("Where exactly do they meet?", second)
kept = answer("At the southern tip of the *Presqu'île*, by the Musée des Confluences.", follow, 40)
edited = say("Which of the two is longer?", second)
answer("The Rhône: about 813 km, against 473 km for the Saône.", edited, 38)
Conversation.objects.filter(pk=c.pk).update(shown_leaf=kept)
"""


def test_transcript_with_branches_shows_every_version_in_every_look(
    page: Page, site_shell, tmp_path
):
    owner = f"rivers{uuid.uuid4().hex[:8]}"
    site_shell(f"OWNER = {owner!r}\n" + BRANCHED)
    _admin_login(page, _staff(site_shell, superuser=False))
    page.goto(f"/admin/conversations/conversation/?q={owner}")
    page.get_by_role("link", name="Rivers of Lyon").click()
    url = page.url
    out = ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") else Path(tmp_path)
    found: list[str] = []
    for look, viewport, scheme in LOOKS:
        page.set_viewport_size(viewport)
        page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
        page.goto(url)
        transcript = page.locator(".review-transcript")
        shown = transcript.get_by_role("region", name="Shown to the user")
        expect(shown.locator(".review-msg")).to_have_count(4)
        expect(shown.locator(".review-version--shown")).to_have_text(
            ["Version 2 of 2 · shown to the user", "Version 1 of 2 · shown to the user"]
        )
        expect(transcript.locator(".review-branch")).to_have_count(3)
        second = transcript.get_by_role("region", name="Branch 2")
        expect(second).to_contain_text("version 1 of 2 of the answer")
        expect(second.locator(".review-report")).to_contain_text("It is the Rhône")
        third = transcript.get_by_role("region", name="Branch 3")
        expect(third).to_contain_text("version 2 of 2 of the question")
        expect(third.locator(".review-facts")).to_contain_text("38 in · 19 out")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{look}: the page scrolls sideways ({width} px)"
        found += violations(page, f"{look} transcript with branches", read_stylesheets=False)
        page.screenshot(
            animations="disabled",
            path=out / f"screenshot-admin-branches-{look}.png",
            full_page=True,
        )
    assert not found, "\n".join(found)
