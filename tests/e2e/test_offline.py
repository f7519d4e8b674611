"""A fresh checkout with no API key and no model server: the site still answers, from the
small model running inside it, and says so. Its own daphne, with none of the fake Mistral
server's settings, so nothing but the local model could answer."""

import os

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    last_answer,
    own_database,
    send,
    served_site,
    sign_up,
    site_page,
    wait_connected,
)

pytestmark = pytest.mark.e2e

# Records every state an answer goes through, and how many different lengths its text had:
# a streamed answer grows in steps, a buffered one appears at once.
WATCH = """() => {
  window.seen = { statuses: [], lengths: new Set() };
  new MutationObserver(() => {
    const answer = document.querySelector(".msg--assistant:last-child");
    if (!answer) return;
    const status = answer.dataset.status;
    if (window.seen.statuses.at(-1) !== status) window.seen.statuses.push(status);
    window.seen.lengths.add(answer.querySelector(".msg-body").textContent.length);
  }).observe(document.getElementById("thread"), {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
}"""


@pytest.fixture(scope="module")
def offline_site(tmp_path_factory):
    """The site as `./scripts/serve` runs it with no .env: no key, Mistral's default URL."""
    data_dir = tmp_path_factory.mktemp("offline-site")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MISTRAL_", "CHAT_ENDPOINT", "LOCAL_MODEL"))
    }
    env |= {
        "DATA_DIR": str(data_dir),
        "MISTRAL_API_KEY": "",  # wins over a developer's .env
        "LOCAL_MODEL_MAX_TOKENS": "300",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "PYTHONUNBUFFERED": "1",
    }
    with own_database(env) as env, served_site(env) as url:
        yield url


@pytest.fixture
def offline_page(browser: Browser, offline_site):
    """A page of that site, watched as tests/e2e/conftest.py's `page` is."""
    with site_page(browser, offline_site, timeout=20000) as page:
        yield page


def test_with_no_key_and_no_model_server_an_answer_streams(offline_page: Page):
    page = offline_page
    sign_up(page)
    expect(page.locator("#model-name")).to_have_text("SmolLM2 135M — small local model")
    page.locator("#model-button").click()
    option = page.get_by_role("option", name="SmolLM2 135M")
    expect(option).to_contain_text("runs on this server")
    expect(option).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Escape")

    page.evaluate(WATCH)
    send(page, "Write a short poem about the sea.")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "complete", timeout=60_000)
    expect(answer.locator(".msg-author-name")).to_have_text("Small local model")
    expect(answer.locator(".msg-meta")).to_contain_text("local/smollm2-135m · ")
    expect(answer.locator(".msg-meta")).to_contain_text(" out tokens · free · first token")
    expect(page.locator("#conv-totals")).to_contain_text(" tokens · free")
    assert answer.locator(".msg-body").inner_text().strip()
    seen = page.evaluate("({statuses: window.seen.statuses, lengths: window.seen.lengths.size})")
    assert "streaming" in seen["statuses"]
    assert seen["lengths"] > 3  # it grew token by token

    page.reload()
    expect(last_answer(page).locator(".msg-author-name")).to_have_text("Small local model")


def test_a_second_question_shows_its_place_in_the_queue(offline_page: Page):
    first = offline_page
    sign_up(first)
    send(first, "Write a long story about a dragon who learns to cook.")
    expect(last_answer(first)).to_have_attribute("data-status", "streaming", timeout=60_000)

    second = first.context.new_page()
    second.goto("/")
    wait_connected(second)
    send(second, "What is the capital of France?")
    waiting = last_answer(second)
    expect(waiting.locator(".msg-progress-text")).to_have_text(
        "Waiting for the local model — 1 answer ahead"
    )
    first.get_by_role("button", name="Stop the answer").click()
    expect(last_answer(first)).to_have_attribute("data-status", "stopped")
    expect(waiting).to_have_attribute("data-status", "complete", timeout=60_000)
    assert waiting.locator(".msg-body").inner_text().strip()
