"""Sharing in the browser: Share under an answer makes a link, a visitor with no account
reads the conversation up to that answer, and Revoke on the Shared links page ends it."""

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import last_answer, send, sign_up
from tests.fake_mistral import Reply, split_tokens

pytestmark = pytest.mark.e2e


def test_share_an_answer_read_it_without_an_account_then_revoke_it(
    page: Page, fake, browser: Browser, live_server_url
):
    sign_up(page)
    fake.enqueue(Reply.tokens(split_tokens("Lyon, then **Annecy**.")))
    fake.enqueue(Reply.tokens(["Trip plans"]))
    send(page, "Where should I go?")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    fake.enqueue(Reply.tokens(split_tokens("Pack light.")))
    send(page, "What should I pack?")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Pack light.")

    first_answer = page.locator(".msg--assistant").first
    first_answer.hover()
    first_answer.get_by_role("button", name="Share up to this answer").click()
    dialog = page.get_by_role("dialog", name="Share this conversation")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Create link").click()
    link = dialog.get_by_label("The link")
    expect(link).not_to_have_value("")
    url = link.input_value()
    assert "/s/" in url
    dialog.get_by_role("button", name="Close").click()

    visitor = browser.new_context()  # no account, no cookies
    reader = visitor.new_page()
    reader.goto(url)
    expect(reader.get_by_role("heading", level=1)).to_have_text("Trip plans")
    expect(reader.locator(".msg--user .bubble")).to_have_text(["Where should I go?"])
    expect(reader.locator(".msg--assistant strong")).to_have_text("Annecy")
    expect(reader.get_by_text("Pack light.")).to_have_count(0)  # after the shared answer
    expect(reader.locator('meta[name="robots"]')).to_have_attribute("content", "noindex, nofollow")

    page.goto(f"{live_server_url}/shares/")
    expect(page.get_by_role("heading", name="Shared links")).to_be_visible()
    page.get_by_role("button", name="Revoke the link to Trip plans").click()
    expect(page.get_by_text("Revoked")).to_be_visible()

    response = reader.goto(url)
    assert response.status == 404
    visitor.close()
