"""The conversation as a tree, in the browser: regenerate an answer (with the same model or
another), edit a question, continue a cut answer, copy, fork, switch between versions with
"‹ 2 / 3 ›" (in every tab, and after a reload), and the shortcuts for all of it. With
UPDATE_SCREENSHOTS=1 the thread with versions is kept as docs/screenshot-branches-*.png."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests import imagefiles
from tests.e2e.conftest import ROOT, last_answer, send, sign_up, wait_connected
from tests.fake_mistral import Reply, split_tokens

pytestmark = pytest.mark.e2e


def ask(
    page: Page, fake, question: str, answer: str, *, title: str | None = None, shown: str = ""
) -> None:
    fake.enqueue(Reply.tokens(split_tokens(answer)))
    if title:
        fake.enqueue(Reply.tokens([title]))
    send(page, question)
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    expect(last_answer(page).locator(".msg-body")).to_have_text(shown or answer)
    if title:
        expect(page.locator("#conv-title")).to_have_text(title)


def versions(message):
    return message.locator(".msg-versions-count")


def streamed(fake) -> list[dict]:
    return [r.json for r in fake.requests if r.json and r.json.get("stream")]


def test_regenerate_then_go_back_to_the_first_answer_and_keep_it_after_a_reload(page: Page, fake):
    sign_up(page)
    ask(page, fake, "Name a colour", "Blue.", title="Colours")
    expect(versions(last_answer(page))).to_be_hidden()

    fake.enqueue(Reply.tokens(["Green."]))
    last_answer(page).get_by_role("button", name="Regenerate answer").click()
    expect(last_answer(page).locator(".msg-body")).to_have_text("Green.")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    expect(versions(last_answer(page))).to_have_text("2 / 2")
    expect(page.locator(".msg")).to_have_count(2)
    # The new answer's request carries the question, not the answer it replaces.
    assert [m["role"] for m in streamed(fake)[-1]["messages"]] == ["user"]

    last_answer(page).get_by_role("button", name="Previous version").click()
    expect(last_answer(page).locator(".msg-body")).to_have_text("Blue.")
    expect(versions(last_answer(page))).to_have_text("1 / 2")
    expect(last_answer(page).get_by_role("button", name="Previous version")).to_be_disabled()

    page.reload()
    wait_connected(page)
    expect(last_answer(page).locator(".msg-body")).to_have_text("Blue.")
    expect(versions(last_answer(page))).to_have_text("1 / 2")
    last_answer(page).get_by_role("button", name="Next version").click()
    expect(last_answer(page).locator(".msg-body")).to_have_text("Green.")


def test_regenerate_with_another_model(page: Page, fake):
    sign_up(page)
    ask(page, fake, "Name a colour", "Blue.", title="Colours")
    fake.enqueue(Reply.tokens(["Crimson."]))
    menu_button = last_answer(page).get_by_role("button", name="Regenerate with another model")
    menu_button.click()
    menu = page.get_by_role("menu", name="Regenerate with")
    expect(menu).to_be_visible()
    expect(menu_button).to_have_attribute("aria-expanded", "true")
    menu.get_by_role("menuitem", name="mistral-large-latest").click()
    expect(menu).to_have_count(0)
    expect(last_answer(page).locator(".msg-body")).to_have_text("Crimson.")
    expect(last_answer(page).locator(".msg-meta")).to_contain_text("mistral-large-latest")
    assert streamed(fake)[-1]["model"] == "mistral-large-latest"
    # The conversation's own model stays as it was.
    expect(page.get_by_role("button", name="Model: mistral-small-latest")).to_be_visible()


def test_edit_a_question_drops_an_image_and_keeps_the_old_branch(page: Page, fake):
    sign_up(page)
    page.locator("#attach-input").set_input_files(
        [
            {"name": name, "mimeType": "image/png", "buffer": imagefiles.png(color=color)}
            for name, color in (("red.png", (200, 0, 0)), ("blue.png", (0, 0, 200)))
        ]
    )
    expect(page.locator('#attachments .attachment[data-state="ready"]')).to_have_count(2)
    ask(page, fake, "Describe these", "Red and blue.", title="Two images")
    question = page.locator(".msg--user").last
    box = page.get_by_label("Message", exact=True)

    # Edit, then Escape: the box is as it was.
    box.fill("a draft")
    question.get_by_role("button", name="Edit question").click()
    expect(page.locator("#edit-bar")).to_contain_text("Editing your question")
    expect(box).to_have_value("Describe these")
    expect(box).to_be_focused()
    expect(page.locator('#attachments .attachment[data-state="ready"]')).to_have_count(2)
    box.press("Escape")
    expect(page.locator("#edit-bar")).to_be_hidden()
    expect(box).to_have_value("a draft")
    expect(page.locator("#attachments .attachment")).to_have_count(0)

    box.fill("")
    question.get_by_role("button", name="Edit question").click()
    page.get_by_role("button", name="Remove blue.png").click()
    expect(page.locator("#attachments .attachment")).to_have_count(1)
    fake.enqueue(Reply.tokens(["Only red."]))
    box.fill("Describe this one")
    box.press("Enter")
    expect(page.locator("#edit-bar")).to_be_hidden()
    question = page.locator(".msg--user").last
    expect(question.locator(".bubble")).to_have_text("Describe this one")
    expect(question.locator(".msg-image img")).to_have_count(1)
    expect(versions(question)).to_have_text("2 / 2")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Only red.")
    expect(page.locator(".msg")).to_have_count(2)
    edited = next(r for r in reversed(fake.requests) if r.json and r.json.get("stream"))
    assert len(edited.images) == 1

    question.get_by_role("button", name="Previous version").click()
    question = page.locator(".msg--user").last
    expect(question.locator(".bubble")).to_have_text("Describe these")
    expect(question.locator(".msg-image img")).to_have_count(2)
    expect(last_answer(page).locator(".msg-body")).to_have_text("Red and blue.")
    expect(versions(question)).to_have_text("1 / 2")


def test_continue_an_answer_cut_by_the_length_limit(page: Page, fake):
    sign_up(page)
    fake.enqueue(Reply.tokens(["Once upon", " a"], finish_reason="length"))
    fake.enqueue(Reply.tokens(["A story"]))
    send(page, "Tell me a story")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.locator(".msg-body")).to_have_text("Once upon a")
    expect(page.locator("#conv-title")).to_have_text("A story")
    more = answer.get_by_role("button", name="Continue answer")
    expect(more).to_be_visible()

    fake.enqueue(Reply.tokens([" time, the end."]))
    more.click()
    expect(answer.locator(".msg-body")).to_have_text("Once upon a time, the end.")
    expect(answer).to_have_attribute("data-status", "complete")
    expect(page.locator(".msg")).to_have_count(2)
    expect(versions(answer)).to_be_hidden()
    expect(answer.get_by_role("button", name="Continue answer")).to_be_hidden()


def test_copy_an_answer_as_markdown_and_a_question(page: Page, fake):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_up(page)
    ask(page, fake, "Say it boldly", "It is **bold** and `code`.", shown="It is bold and code.")
    last_answer(page).get_by_role("button", name="Copy answer").click()
    expect(page.locator("#live-status")).to_have_text("Copied the answer.")
    assert page.evaluate("navigator.clipboard.readText()") == "It is **bold** and `code`."
    page.locator(".msg--user").last.get_by_role("button", name="Copy question").click()
    expect(page.locator("#live-status")).to_have_text("Copied the question.")
    assert page.evaluate("navigator.clipboard.readText()") == "Say it boldly"
    # After a reload, the markdown comes from the page.
    page.reload()
    wait_connected(page)
    last_answer(page).get_by_role("button", name="Copy answer").click()
    page.wait_for_function(
        "async () => (await navigator.clipboard.readText()) === 'It is **bold** and `code`.'"
    )


def test_fork_from_an_answer_and_from_a_question(page: Page, fake):
    sign_up(page)
    ask(page, fake, "First question", "First answer.", title="Forks")
    ask(page, fake, "Second question", "Second answer.")
    first_url = page.url

    first_answer = page.locator(".msg--assistant").first
    first_answer.get_by_role("button", name="Fork from this answer").click()
    expect(page).not_to_have_url(first_url)
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    wait_connected(page)
    expect(page.locator(".msg")).to_have_count(2)
    expect(page.locator(".msg--user .bubble")).to_have_text(["First question"])
    expect(last_answer(page).locator(".msg-body")).to_have_text("First answer.")

    page.goto(first_url)
    wait_connected(page)
    page.locator(".msg--user").last.get_by_role("button", name="Fork from this question").click()
    expect(page).not_to_have_url(first_url)
    wait_connected(page)
    expect(page.get_by_label("Message", exact=True)).to_have_value("Second question")
    expect(last_answer(page).locator(".msg-body")).to_have_text("First answer.")
    expect(page.locator(".msg--user .bubble")).to_have_text(["First question"])


def test_a_new_branch_and_a_switch_reach_the_other_tab(page: Page, fake):
    sign_up(page)
    ask(page, fake, "Name a colour", "Blue.", title="Colours")
    other = page.context.new_page()
    other.goto(page.url)
    wait_connected(other)
    expect(last_answer(other).locator(".msg-body")).to_have_text("Blue.")

    fake.enqueue(Reply.tokens(["Green."]))
    last_answer(page).get_by_role("button", name="Regenerate answer").click()
    expect(last_answer(other).locator(".msg-body")).to_have_text("Green.")
    expect(versions(last_answer(other))).to_have_text("2 / 2")
    expect(other.locator(".msg")).to_have_count(2)

    last_answer(page).get_by_role("button", name="Previous version").click()
    expect(last_answer(page).locator(".msg-body")).to_have_text("Blue.")
    expect(last_answer(other).locator(".msg-body")).to_have_text("Blue.")
    expect(versions(last_answer(other))).to_have_text("1 / 2")


def test_shortcuts_regenerate_switch_and_edit(page: Page, fake):
    sign_up(page)
    ask(page, fake, "Name a colour", "Blue.", title="Colours")
    box = page.get_by_label("Message", exact=True)
    box.focus()

    fake.enqueue(Reply.tokens(["Green."]))
    page.keyboard.press("Control+Shift+Enter")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Green.")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    expect(versions(last_answer(page))).to_have_text("2 / 2")

    page.keyboard.press("Control+Shift+Comma")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Blue.")
    expect(page.locator("#live-status")).to_have_text("Version 1 of 2.")
    page.keyboard.press("Meta+Shift+Period")  # ⌘ on macOS
    expect(last_answer(page).locator(".msg-body")).to_have_text("Green.")

    box.focus()
    page.keyboard.press("Control+Shift+E")
    expect(page.locator("#edit-bar")).to_be_visible()
    expect(box).to_have_value("Name a colour")
    page.keyboard.press("Escape")
    expect(page.locator("#edit-bar")).to_be_hidden()
    expect(box).to_have_value("")
    page.keyboard.press("ArrowUp")  # from the empty box, as in most chat apps
    expect(page.locator("#edit-bar")).to_be_visible()
    expect(box).to_have_value("Name a colour")
    page.keyboard.press("Escape")

    page.keyboard.press("Control+/")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    for label, keys in (
        ("Regenerate the last answer", "Ctrl Shift Enter"),
        ("Edit the last question", "Ctrl Shift E"),
        ("Previous version of the last answer", "Ctrl Shift ,"),
        ("Next version of the last answer", "Ctrl Shift ."),
        ("Edit the last question, from an empty box", "↑"),
    ):
        row = help_dialog.get_by_role("row", name=re.compile(f"^{re.escape(label)} "))
        expect(row).to_contain_text(keys)


def test_versions_look_right_in_light_dark_and_on_a_phone(page: Page, fake, tmp_path):
    out = ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") else Path(tmp_path)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="light", reduced_motion="reduce")
    sign_up(page, f"grace{os.getpid()}")
    ask(
        page,
        fake,
        "A cat's name?",
        "How about **Miso**?",
        title="Cat names",
        shown="How about Miso?",
    )
    fake.enqueue(Reply.tokens(split_tokens("For a black cat: **Ink**, **Pepper** or **Nyx**.")))
    page.locator(".msg--user").last.get_by_role("button", name="Edit question").click()
    page.get_by_label("Message", exact=True).fill("Names for a black cat?")
    page.get_by_label("Message", exact=True).press("Enter")
    expect(versions(page.locator(".msg--user").last)).to_have_text("2 / 2")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    fake.enqueue(Reply.tokens(split_tokens("**Onyx**, **Shadow** or **Soot**: short and easy.")))
    last_answer(page).get_by_role("button", name="Regenerate answer").click()
    expect(versions(last_answer(page))).to_have_text("2 / 2")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    page.locator("#composer-input").blur()
    page.mouse.move(640, 790)

    page.screenshot(animations="disabled", path=out / "screenshot-branches-light.png")
    page.emulate_media(color_scheme="dark", reduced_motion="reduce")
    page.screenshot(animations="disabled", path=out / "screenshot-branches-dark.png")
    page.emulate_media(color_scheme="light", reduced_motion="reduce")
    page.set_viewport_size({"width": 375, "height": 812})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    expect(last_answer(page).get_by_role("button", name="Fork from this answer")).to_be_visible()
    page.screenshot(animations="disabled", path=out / "screenshot-branches-phone.png")


def test_an_answer_streaming_on_a_branch_switched_away_from_can_still_be_stopped(
    page: Page, fake, gate
):
    sign_up(page)
    ask(page, fake, "Name a colour", "Blue.", title="Colours")
    fake.enqueue(Reply.tokens(["Gre", "en."], gate=gate))
    last_answer(page).get_by_role("button", name="Regenerate answer").click()
    expect(last_answer(page).locator(".msg-body")).to_have_text("Gre")

    # Back to the first answer while the second streams: the conversation is still busy.
    last_answer(page).get_by_role("button", name="Previous version").click()
    expect(last_answer(page).locator(".msg-body")).to_have_text("Blue.")
    stop = page.get_by_role("button", name="Stop the answer")
    expect(stop).to_be_visible()
    stop.click()
    expect(page.get_by_role("button", name="Send")).to_be_visible()

    last_answer(page).get_by_role("button", name="Next version").click()
    expect(last_answer(page)).to_have_attribute("data-status", "stopped")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Gre")
    gate.set()
