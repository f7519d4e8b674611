"""Every page and dialog, in light, dark and on a 375 px phone, checked by axe-core against
WCAG 2.1 AA (tests/e2e/axe.py): any violation fails, listed with its elements. Also the
layout faults a walk at those sizes found: the model list off the phone's edge, the page
dialog's buttons below the window, raw markdown in a scanned page, white charts in the
dark admin, a changelist wider than the window. With UPDATE_SCREENSHOTS=1 the looks are
kept as docs/screenshot-a11y-*.png."""

import os
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests import documentfiles, imagefiles
from tests.e2e.axe import LOOKS, violations
from tests.e2e.conftest import PASSWORD, ROOT, last_answer, send, sign_up
from tests.e2e.test_admin_review import _admin_login, _staff
from tests.fake_mistral import Reply, split_tokens

pytestmark = pytest.mark.e2e

WIDE = "x = [" + ", ".join(str(n) for n in range(120)) + "]"

ANSWER = f"""# Lyon in three days

The [tourist office](https://www.lyon-france.com) keeps a list; the minutes say so
[report.pdf, p. 2].

## Day one

- Vieux Lyon and the traboules
- Fourvière at sunset

| Day | Museum |
|-----|--------|
| 1 | Musée des Confluences |

```python
{WIDE}
```
"""

# A scanned page's OCR text, as Mistral's OCR writes it: markdown.
OCR_MARKDOWN = "# Board minutes\n\n| Item | Vote |\n|---|---|\n| Budget | **yes** |\n"


def _rich_conversation(page: Page, fake) -> int:
    """A conversation with what the pages can show: an image, a document with a scanned
    page, and an answer with headings, a link, a citation, a table and a wide code block.
    Returns its id."""
    fake.ocr_text = lambda index: OCR_MARKDOWN
    sign_up(page)
    page.locator("#attach-input").set_input_files(
        [{"name": "IMG_2034.png", "mimeType": "image/png", "buffer": imagefiles.png()}]
    )
    expect(page.locator('#attachments .attachment[data-state="ready"]')).to_have_count(1)
    pdf = documentfiles.pdf(["Trip notes for Lyon, with the museums to see.", None])
    page.locator("#doc-attach-input").set_input_files(
        [{"name": "report.pdf", "mimeType": "application/pdf", "buffer": pdf}]
    )
    expect(page.locator("#doc-tray .doc-item")).to_have_attribute("data-state", "ready")
    fake.enqueue(Reply.tokens(split_tokens(ANSWER), usage=(40, 90)))
    fake.enqueue(Reply.tokens(["Three days in Lyon"]))
    send(page, "Plan three days in Lyon from these.")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    expect(page.locator("#conv-title")).to_have_text("Three days in Lyon")
    return int(re.search(r"/c/(\d+)/", page.url)[1])


def _shot(page: Page, name: str, tmp_path: Path) -> None:
    out = ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    page.screenshot(animations="disabled", path=out / f"screenshot-a11y-{name}.png")


def _look(page: Page, viewport: dict, scheme: str) -> None:
    page.set_viewport_size(viewport)
    page.emulate_media(color_scheme=scheme, reduced_motion="reduce")


def test_chat_pages_and_dialogs_pass_axe_in_every_look(page: Page, fake, tmp_path):
    conversation = _rich_conversation(page, fake)
    # A second version of the answer: the thread shows "‹ 2 / 2 ›" and every action.
    fake.enqueue(Reply.tokens(split_tokens(ANSWER), usage=(40, 90)))
    last_answer(page).get_by_role("button", name="Regenerate answer").click()
    expect(last_answer(page).locator(".msg-versions-count")).to_have_text("2 / 2")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    document = page.locator(".msg-doc-name")
    expect(document).to_have_text("report.pdf")
    cite = last_answer(page).locator("a.cite")
    document_id = int(cite.get_attribute("data-document"))
    found: list[str] = []

    for look, viewport, scheme in LOOKS:
        _look(page, viewport, scheme)
        page.goto("/")
        expect(page.get_by_role("heading", name="Ask anything")).to_be_visible()
        found += violations(page, f"{look} new chat")

        page.goto(f"/c/{conversation}/")
        expect(last_answer(page)).to_have_attribute("data-status", "complete")
        found += violations(page, f"{look} conversation")
        _shot(page, f"{look}-conversation", tmp_path)

        page.get_by_role("button", name=re.compile("^Model:")).click()
        listbox = page.get_by_role("listbox", name="Model")
        expect(listbox.get_by_role("option")).to_have_count(6)
        box = listbox.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
        found += violations(page, f"{look} model list")
        _shot(page, f"{look}-model-list", tmp_path)
        page.keyboard.press("Escape")

        if look == "phone":
            page.get_by_role("button", name="Open the sidebar").click()
            expect(page.locator("#sidebar")).to_be_visible()
            found += violations(page, f"{look} sidebar")
            _shot(page, f"{look}-sidebar", tmp_path)
        else:
            page.locator("#conv-list .conv").first.hover()
        page.get_by_role("button", name="Rename Three days in Lyon").click()
        dialog = page.get_by_role("dialog", name="Rename conversation")
        expect(dialog).to_be_visible()
        found += violations(page, f"{look} rename dialog")
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Delete Three days in Lyon").click()
        dialog = page.get_by_role("dialog", name="Delete conversation?")
        expect(dialog).to_be_visible()
        found += violations(page, f"{look} delete dialog")
        page.keyboard.press("Escape")
        if look == "phone":
            page.keyboard.press("Escape")
            expect(page.locator("#sidebar")).not_to_be_visible()

        page.get_by_role("button", name="Conversation settings").click()
        dialog = page.get_by_role("dialog", name="Conversation settings")
        dialog.get_by_label("Temperature").fill("3")
        dialog.get_by_role("button", name="Save settings").click()
        expect(dialog.get_by_label("Temperature")).to_have_attribute("aria-invalid", "true")
        found += violations(page, f"{look} settings dialog with an error")
        page.keyboard.press("Escape")

        last_answer(page).get_by_role("button", name="Report this answer").click()
        expect(page.get_by_role("dialog", name="Report this answer")).to_be_visible()
        found += violations(page, f"{look} report dialog")
        page.keyboard.press("Escape")

        page.get_by_role("button", name=re.compile("^Enlarge image 1 you attached")).click()
        expect(page.locator("#image-dialog")).to_be_visible()
        found += violations(page, f"{look} image dialog")
        page.keyboard.press("Escape")

        last_answer(page).locator("a.cite").click()
        dialog = page.get_by_role("dialog", name="report.pdf, page 2 of 2")
        expect(dialog.get_by_role("heading", name="Board minutes")).to_be_visible()
        expect(dialog.get_by_text("# Board")).to_be_hidden()  # the raw text is not shown
        expect(dialog.get_by_role("table")).to_be_visible()
        for control in (
            dialog.get_by_role("link", name="Open in a new tab"),
            dialog.get_by_role("button", name="Close"),
        ):
            box = control.bounding_box()
            assert box["y"] + box["height"] <= viewport["height"], box
        found += violations(page, f"{look} page dialog")
        _shot(page, f"{look}-page-dialog", tmp_path)
        page.keyboard.press("Escape")

        page.keyboard.press("?")
        expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
        found += violations(page, f"{look} shortcuts dialog")
        _shot(page, f"{look}-shortcuts", tmp_path)
        page.keyboard.press("Escape")

        for path, heading in (
            (f"/c/{conversation}/settings/", "Conversation settings"),
            (f"/documents/{document_id}/pages/2/", "report.pdf, page 2 of 2"),
        ):
            page.goto(path)
            expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
            found += violations(page, f"{look} {path}")
        page.goto(f"/c/{conversation}/settings/")
        page.get_by_label("Temperature").fill("3")
        page.get_by_role("button", name="Save settings").click()
        expect(page.get_by_label("Temperature")).to_have_accessible_description(
            re.compile("less than or equal to 1.5")
        )
        found += violations(page, f"{look} settings page with an error")

    assert not found, "\n".join(found)


def test_model_list_stays_inside_the_window_at_400_percent_zoom(page: Page, fake):
    """1280×800 at 400 %: a 320×200 window. The list scrolls inside the popover."""
    sign_up(page)
    page.set_viewport_size({"width": 320, "height": 200})
    page.get_by_role("button", name=re.compile("^Model:")).click()
    listbox = page.get_by_role("listbox", name="Model")
    expect(listbox.get_by_role("option")).to_have_count(6)
    box = page.locator("#model-popover").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 320, box
    assert box["y"] + box["height"] <= 200, box
    page.keyboard.press("End")
    expect(listbox.get_by_role("option").last).to_be_in_viewport()


def test_tools_menu_and_a_tool_step_pass_axe_in_every_look(page: Page, fake):
    """The composer's Tools menu open, for a model that calls tools and for one that
    cannot, and an answer's tool step opened; the menu inside the window."""
    sign_up(page)
    tools = page.get_by_role("button", name=re.compile("^Tools"))
    tools.click()
    page.get_by_role("switch", name="Date and time").check()
    page.keyboard.press("Escape")
    fake.enqueue(Reply.tool_calls([("current_datetime", {"timezone": "Europe/Paris"})]))
    fake.enqueue(Reply.tokens(["It is Tuesday."]))
    fake.enqueue(Reply.tokens(["Today"]))
    send(page, "What day is it?")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    conversation = page.url
    found: list[str] = []

    for look, viewport, scheme in LOOKS:
        _look(page, viewport, scheme)
        page.goto(conversation)
        step = last_answer(page).locator(".tool-call")
        step.locator("summary").click()
        expect(step.locator(".tool-result")).to_be_visible()
        found += violations(page, f"{look} tool step opened")

        tools.click()
        menu = page.get_by_role("dialog", name="Tools")
        expect(menu.get_by_role("switch", name="Date and time")).to_be_focused()
        box = menu.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
        assert box["y"] >= 0, box
        found += violations(page, f"{look} tools menu")
        page.keyboard.press("Escape")
        expect(menu).to_be_hidden()

    page.goto("/")
    page.get_by_role("button", name=re.compile("^Model:")).click()
    page.get_by_role("option", name="SmolLM2 135M").click()
    tools.click()
    expect(page.get_by_role("dialog", name="Tools")).to_contain_text("cannot call tools")
    found += violations(page, "phone tools menu for a model without tools")
    assert not found, "\n".join(found)


def test_account_pages_pass_axe_in_every_look(page: Page):
    found: list[str] = []
    for look, viewport, scheme in LOOKS:
        _look(page, viewport, scheme)
        page.goto("/accounts/login/")
        found += violations(page, f"{look} login")
        page.get_by_label("Username").fill("nobody")
        page.get_by_label("Password").fill("wrong-password")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_be_visible()
        found += violations(page, f"{look} login refused")

        page.goto("/accounts/signup/")
        found += violations(page, f"{look} signup")
        page.get_by_label("Username").fill(f"user{uuid.uuid4().hex[:10]}")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Password confirmation").fill("something else")
        page.get_by_role("button", name="Sign up").click()
        # Django 5.2 points the field at its error list: a screen reader reads it there.
        expect(page.get_by_label("Password confirmation")).to_have_accessible_description(
            re.compile("didn’t match")
        )
        found += violations(page, f"{look} signup with errors")

        username = f"locked{uuid.uuid4().hex[:8]}"
        for _ in range(5):
            page.goto("/accounts/login/")
            page.get_by_label("Username").fill(username)
            page.get_by_label("Password").fill("wrong-password")
            page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Sign-in paused")).to_be_visible()
        found += violations(page, f"{look} locked out")

        page.goto("/no/such/page/")
        found += violations(page, f"{look} not found")

    sign_up(page)
    for look, viewport, scheme in LOOKS:
        _look(page, viewport, scheme)
        page.goto("/accounts/password_change/")
        found += violations(page, f"{look} password change")
        page.get_by_label("Old password").fill("not it")
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_label("Old password")).to_have_attribute("aria-invalid", "true")
        found += violations(page, f"{look} password change with errors")
    assert not found, "\n".join(found)


def test_admin_pages_pass_axe_in_every_look(page: Page, fake, site_shell, tmp_path):
    conversation = _rich_conversation(page, fake)
    _admin_login(page, _staff(site_shell, superuser=True))
    found: list[str] = []
    for look, viewport, scheme in LOOKS:
        _look(page, viewport, scheme)
        page.goto("/admin/")
        found += violations(page, f"{look} admin index", read_stylesheets=False)
        page.goto("/admin/conversations/conversation/")
        expect(page.locator("#result_list")).to_be_visible()
        if look != "phone":  # a phone scrolls the table inside its own box
            table = page.locator("#changelist-form .results")
            widths = table.evaluate("el => [el.scrollWidth, el.clientWidth]")
            assert widths[0] <= widths[1], f"{look}: the list scrolls sideways: {widths}"
        found += violations(page, f"{look} conversation list", read_stylesheets=False)
        _shot(page, f"{look}-admin-list", tmp_path)
        page.goto(f"/admin/conversations/conversation/{conversation}/change/")
        expect(page.locator(".review-answer a.cite")).to_be_visible()
        found += violations(page, f"{look} transcript", read_stylesheets=False)
        page.goto("/admin/conversations/apicall/usage/")
        chart = page.get_by_role("img", name="Tokens per day and model")
        expect(chart).to_be_visible()
        expected = "none" if scheme == "light" else "invert(1) hue-rotate(180deg)"
        expect(chart).to_have_css("filter", expected)
        found += violations(page, f"{look} usage charts", read_stylesheets=False)
        _shot(page, f"{look}-admin-usage", tmp_path)
    assert not found, "\n".join(found)
