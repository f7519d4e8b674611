"""The chat by keyboard alone: sign in, skip to the message box, send, hear the answer, stop
it with Esc, use every dialog and shortcut, switch and delete conversations, and the phone
sidebar. Nothing is clicked: focus moves by Tab (tab_to) and keys do the rest."""

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests import documentfiles, imagefiles
from tests.e2e.conftest import PASSWORD, last_answer, sign_up, wait_connected
from tests.fake_mistral import Reply

pytestmark = pytest.mark.e2e


def tab_to(page: Page, target: Locator, *, limit: int = 80, key: str = "Tab") -> None:
    """Presses Tab (or `key`) until `target` has focus, as a keyboard user would."""
    for _ in range(limit):
        if target.evaluate("el => el === document.activeElement"):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{target} never took focus in {limit} presses of {key}")


def focused(page: Page) -> str:
    return page.evaluate(
        "(() => { const el = document.activeElement;"
        " return el.getAttribute('aria-label') || el.textContent.trim() || el.tagName; })()"
    )


def type_and_send(page: Page, text: str) -> None:
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_sign_in_send_stop_and_shortcuts_by_keyboard(page: Page, fake, gate):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    username = sign_up(page)
    page.context.clear_cookies()
    page.goto("/accounts/login/")
    tab_to(page, page.get_by_label("Username"))
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Ask anything")).to_be_visible()
    wait_connected(page)

    tab_to(page, page.get_by_label("Message", exact=True))
    fake.enqueue(Reply.tokens(["Bonjour ", "**tout** le monde."]))
    fake.enqueue(Reply.tokens(["Greetings"]))
    type_and_send(page, "Say hello")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    # A screen reader hears the answer itself, not only that it ended.
    expect(page.locator("#live-status")).to_have_text(re.compile("Bonjour tout le monde."))

    # On a conversation's page (messages carry visually hidden headings), the skip link
    # lands in the message box, and the page does not scroll away.
    page.reload()
    wait_connected(page)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the message box")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    assert page.evaluate("[document.scrollingElement.scrollTop, document.body.scrollTop]") == [0, 0]

    # Esc stops a streaming answer, from the message box.
    fake.enqueue(Reply.tokens(["Once", " upon", " a", " time"], gate=gate))
    type_and_send(page, "Tell me a story")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Once")
    page.keyboard.press("Escape")
    expect(last_answer(page)).to_have_attribute("data-status", "stopped")
    expect(page.locator("#live-status")).to_have_text("Answer stopped: Once")

    # Copy the last answer, with Ctrl (Windows, Linux) or ⌘ (macOS).
    page.keyboard.press("Control+Shift+C")
    expect(page.locator("#live-status")).to_have_text("Copied the last answer.")
    assert page.evaluate("navigator.clipboard.readText()") == "Once"
    page.evaluate("navigator.clipboard.writeText('')")
    page.keyboard.press("Meta+Shift+C")
    page.wait_for_function("async () => (await navigator.clipboard.readText()) === 'Once'")

    # Shift+Esc brings focus back to the message box from anywhere.
    tab_to(page, page.get_by_role("button", name="Conversation settings"))
    page.keyboard.press("Shift+Escape")
    expect(page.get_by_label("Message", exact=True)).to_be_focused()

    # "?" lists the shortcuts (outside a text field; Ctrl+/ or ⌘+/ anywhere).
    page.keyboard.press("Control+/")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_dialog).to_be_visible()
    for label, keys in (
        ("Send the message", "Enter"),
        ("New line", "Shift Enter"),
        ("Stop the answer", "Esc"),
        ("New chat", "Ctrl Shift O"),
        ("Focus the message box", "Shift Esc"),
        ("Copy the last answer", "Ctrl Shift C"),
        ("Show these shortcuts", "? or Ctrl /"),
    ):
        expect(help_dialog.get_by_role("row", name=label)).to_contain_text(keys)
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("?")
    expect(help_dialog).to_be_visible()
    page.keyboard.press("Enter")  # its Close button has focus
    expect(help_dialog).to_be_hidden()

    # A new chat, with Ctrl+Shift+O.
    page.keyboard.press("Control+Shift+O")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", name="Ask anything")).to_be_visible()


def test_every_dialog_and_conversation_by_keyboard(page: Page, fake):
    sign_up(page)
    page.locator("#attach-input").set_input_files(
        [{"name": "IMG_1.png", "mimeType": "image/png", "buffer": imagefiles.png()}]
    )
    page.locator("#doc-attach-input").set_input_files(
        [
            {
                "name": "notes.pdf",
                "mimeType": "application/pdf",
                "buffer": documentfiles.pdf(["Lyon has two rivers."]),
            }
        ]
    )
    expect(page.locator("#doc-tray .doc-item")).to_have_attribute("data-state", "ready")
    expect(page.locator('#attachments .attachment[data-state="ready"]')).to_have_count(1)
    fake.enqueue(Reply.tokens(["Two rivers [notes.pdf, p. 1]."]))
    fake.enqueue(Reply.tokens(["Rivers"]))
    page.get_by_label("Message", exact=True).focus()
    type_and_send(page, "How many rivers?")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    expect(page.locator("#conv-title")).to_have_text("Rivers")

    # The model list: arrows open it, Esc closes it and gives focus back.
    model = page.get_by_role("button", name=re.compile("^Model:"))
    tab_to(page, model)
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("listbox", name="Model")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("listbox", name="Model")).to_be_hidden()
    expect(model).to_be_focused()

    def opens(opener: Locator, name: str) -> Locator:
        tab_to(page, opener)
        page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name=name)
        expect(dialog).to_be_visible()
        return dialog

    for opener, name in (
        (page.get_by_role("button", name="Conversation settings"), "Conversation settings"),
        (page.get_by_role("button", name="Report this answer"), "Report this answer"),
        (page.get_by_role("button", name=re.compile("^Enlarge image 1")), "Image"),
        (last_answer(page).get_by_role("link", name="[notes.pdf, p. 1]"), "notes.pdf, page 1 of 1"),
    ):
        opens(opener, name)
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog", name=name)).to_be_hidden()
        expect(opener).to_be_focused()

    dialog = opens(page.get_by_role("button", name="Rename Rivers"), "Rename conversation")
    expect(dialog.get_by_label("Title")).to_be_focused()
    page.keyboard.type("Two rivers")
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#conv-title")).to_have_text("Two rivers")

    # A second conversation; then back to the first through the sidebar.
    page.keyboard.press("Control+Shift+O")
    expect(page.get_by_role("heading", name="Ask anything")).to_be_visible()
    wait_connected(page)
    fake.enqueue(Reply.tokens(["Fine."]))
    fake.enqueue(Reply.tokens(["Small talk"]))
    page.get_by_label("Message", exact=True).focus()
    type_and_send(page, "How are you?")
    expect(page.locator("#conv-title")).to_have_text("Small talk")
    tab_to(page, page.get_by_role("link", name="Two rivers"), key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#conv-title")).to_have_text("Two rivers")
    wait_connected(page)

    # Deleting a conversation that is not open leaves focus on the list, not the page.
    # (A row's buttons show once its link has focus: Tab forward, through the link.)
    dialog = opens(page.locator('[aria-label="Delete Small talk"]'), "Delete conversation?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("link", name="Small talk")).to_have_count(0)
    expect(page.get_by_role("link", name="Two rivers")).to_be_focused()


def test_phone_sidebar_holds_focus_until_closed(page: Page, fake):
    sign_up(page)
    fake.enqueue(Reply.tokens(["Fine."]))
    fake.enqueue(Reply.tokens(["Small talk"]))
    page.get_by_label("Message", exact=True).focus()
    type_and_send(page, "How are you?")
    expect(page.locator("#conv-title")).to_have_text("Small talk")
    page.set_viewport_size({"width": 375, "height": 812})

    menu = page.get_by_role("button", name="Open the sidebar")
    tab_to(page, menu, key="Shift+Tab")
    page.keyboard.press("Enter")
    sidebar = page.get_by_role("complementary", name="Conversations")
    expect(sidebar).to_be_visible()
    expect(page.get_by_role("link", name="New chat")).to_be_focused()
    for _ in range(12):  # Tab goes round the sidebar, never to the page behind it
        page.keyboard.press("Tab")
        inside = page.evaluate(
            "document.querySelector('#sidebar').contains(document.activeElement)"
        )
        assert inside, focused(page)
    page.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    expect(menu).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("link", name="New chat")).to_be_focused()
    tab_to(page, page.get_by_role("button", name="Close the sidebar"), key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(sidebar).to_be_hidden()
    expect(menu).to_be_focused()
