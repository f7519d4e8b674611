"""The review journey: a user reports an answer from the chat, a reviewer finds it first in
the admin's queue, reads the transcript as the user saw it and marks it reviewed; an admin
reads the usage charts. Every admin page runs under the site's Content-Security-Policy: a
violation is a console error, which fails the test. With UPDATE_SCREENSHOTS=1 the reviewed
transcript is kept as docs/screenshot-admin-review.png."""

import os
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

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
