"""Finding a conversation from the sidebar's search box (a match in an answer, highlighted,
opened at that message on its branch), and pinning and archiving conversations. With
UPDATE_SCREENSHOTS=1 the results are kept as docs/screenshot-search.png."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ROOT, last_answer, send, sign_up, wait_connected
from tests.fake_mistral import Reply, split_tokens

pytestmark = pytest.mark.e2e


def ask(page: Page, fake, question: str, answer: str, title: str) -> None:
    fake.enqueue(Reply.tokens(split_tokens(answer)))
    fake.enqueue(Reply.tokens([title]))
    send(page, question)
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    expect(page.locator("#conv-title")).to_have_text(title)


def new_chat(page: Page) -> None:
    page.get_by_role("link", name="New chat").first.click()
    expect(page.get_by_role("heading", name="Ask anything")).to_be_visible()
    wait_connected(page)


def press(page: Page, button: str, title: str) -> None:
    """A sidebar row's button, shown while the row is hovered."""
    page.locator(".conv", has_text=title).hover()
    page.get_by_role("button", name=f"{button} {title}").click()


def search(page: Page, words: str):
    page.get_by_role("searchbox", name="Search conversations").fill(words)
    results = page.locator("#search-list")
    expect(page.locator("#search-results")).to_be_visible()
    return results


def test_search_finds_an_answer_and_opens_it_on_its_branch(page: Page, fake):
    sign_up(page)
    ask(page, fake, "Where do okapis live?", "Okapis live in <the> Ituri rainforest.", "Okapis")
    first_answer_id = last_answer(page).get_attribute("data-id")
    # A second version of the answer: the conversation now shows it, not the first.
    fake.enqueue(Reply.tokens(["In Congo."]))
    last_answer(page).get_by_role("button", name="Regenerate answer").click()
    expect(last_answer(page).locator(".msg-body")).to_have_text("In Congo.")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    new_chat(page)
    ask(page, fake, "Name a fruit", "A mango.", "Fruit")

    results = search(page, "iTuRi rain")
    expect(results.locator(".search-hit")).to_have_count(1)
    hit = results.locator(".search-hit")
    expect(hit.locator(".search-title")).to_have_text("Okapis")
    expect(hit.locator(".search-snippet")).to_contain_text("Okapis live in <the> Ituri rainforest.")
    expect(hit.locator("mark")).to_have_text(["Ituri", "rainforest"])
    expect(page.locator("#conv-sections")).to_be_hidden()

    hit.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/c/\d+/#message-{first_answer_id}$"))
    wait_connected(page)
    found = page.locator(f"#message-{first_answer_id}")
    expect(found).to_have_class(re.compile("is-found"))
    expect(found).to_be_in_viewport()
    expect(last_answer(page).locator(".msg-body")).to_contain_text("Ituri rainforest.")
    expect(last_answer(page).locator(".msg-versions-count")).to_have_text("1 / 2")

    # Escape empties the box and the conversation list comes back.
    box = page.get_by_role("searchbox", name="Search conversations")
    box.fill("mango")
    expect(page.locator("#search-list .search-hit")).to_have_count(1)
    box.press("Escape")
    expect(page.locator("#search-results")).to_be_hidden()
    expect(page.locator("#conv-list .conv")).to_have_count(2)


def test_search_that_finds_nothing_says_so(page: Page, fake):
    sign_up(page)
    ask(page, fake, "Hello", "Hi there.", "Greeting")
    page.keyboard.press("Control+Shift+F")
    expect(page.get_by_role("searchbox", name="Search conversations")).to_be_focused()
    results = search(page, "zebra")
    expect(results).to_contain_text("No conversation matches “zebra”.")


def test_pin_then_archive_then_find_and_bring_back(page: Page, fake):
    sign_up(page)
    ask(page, fake, "Tell me about herons", "Herons wade.", "Herons")
    new_chat(page)
    ask(page, fake, "Tell me about owls", "Owls hunt at night.", "Owls")
    recent = page.locator("#conv-list")
    pinned = page.locator("#pinned-list")
    expect(recent.locator(".conv-title")).to_have_text(["Owls", "Herons"])
    expect(page.locator("#pinned-heading")).to_be_hidden()

    press(page, "Pin", "Herons")
    expect(pinned.locator(".conv-title")).to_have_text(["Herons"])
    expect(page.locator("#pinned-heading")).to_be_visible()
    expect(recent.locator(".conv-title")).to_have_text(["Owls"])
    pin = pinned.locator('[data-action="pin"]')  # hidden until hovered: not by its role
    expect(pin).to_have_attribute("aria-pressed", "true")
    page.reload()
    wait_connected(page)
    expect(pinned.locator(".conv-title")).to_have_text(["Herons"])

    press(page, "Archive", "Herons")
    expect(pinned.locator(".conv")).to_have_count(0)
    expect(recent.locator(".conv-title")).to_have_text(["Owls"])
    page.reload()
    wait_connected(page)
    expect(page.locator("#conv-sections .conv-title")).to_have_text(["Owls"])

    hit = search(page, "wade").locator(".search-hit")
    expect(hit.locator(".search-title")).to_contain_text("Herons")
    expect(hit.locator(".search-badge")).to_have_text("Archived")
    page.get_by_role("searchbox", name="Search conversations").press("Escape")

    page.locator("#archived summary").click()
    archived = page.locator("#archived-list")
    expect(archived.locator(".conv-title")).to_have_text(["Herons"])
    press(page, "Archive", "Herons")  # pressed: brings it back
    expect(archived.locator(".conv")).to_have_count(0)
    expect(recent.locator(".conv-title")).to_have_text(["Owls", "Herons"])
    page.reload()
    wait_connected(page)
    expect(recent.locator(".conv-title")).to_have_text(["Owls", "Herons"])


LONG = """
from django.contrib.auth.models import User
from conversations.models import Conversation, Message
owner = User.objects.get(username=OWNER)
c = Conversation.objects.create(owner=owner, model="mistral-small-latest", title="Long one")
parent = None
for i in range(300):
    role = "user" if i % 2 == 0 else "assistant"
    text = "the first wombat question" if i == 0 else f"message number {i}"
    parent = Message.objects.create(conversation=c, role=role, text=text, parent=parent)
"""


def test_a_match_above_the_messages_the_page_shows_is_loaded_and_shown(page: Page, site_shell):
    owner = sign_up(page)
    site_shell(f"OWNER = {owner!r}\n" + LONG)
    page.reload()
    wait_connected(page)
    search(page, "wombat").get_by_role("link").click()
    found = page.locator(".msg", has_text="the first wombat question")
    expect(found).to_have_class(re.compile("is-found"))
    expect(found).to_be_in_viewport()
    expect(page.locator("#thread-earlier")).to_have_count(0)


def test_search_results_screenshot(page: Page, fake, tmp_path):
    """The sidebar's results, as docs/screenshot-search.png shows them (kept with
    UPDATE_SCREENSHOTS=1)."""
    out = ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") else Path(tmp_path)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="light", reduced_motion="reduce")
    sign_up(page, f"ada{os.getpid()}")
    ask(
        page,
        fake,
        "Which rainforest do okapis live in?",
        "Okapis live in the **Ituri rainforest**, in the north-east of the Democratic Republic "
        "of the Congo.",
        "Okapi habitat",
    )
    new_chat(page)
    ask(page, fake, "Plan a trip to the rainforest", "Pack light, waterproof layers.", "Trip plan")
    new_chat(page)
    ask(page, fake, "Name a fruit", "A mango.", "Fruit")
    expect(search(page, "rainfor").locator(".search-hit")).to_have_count(2)
    page.mouse.move(0, 0)
    page.screenshot(path=out / "screenshot-search.png")
