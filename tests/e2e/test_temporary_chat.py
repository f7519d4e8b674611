"""A temporary chat in the browser: Temporary on a new chat, the conversation stays out of
the sidebar and says what it is, and after logging out it is gone."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD, last_answer, send, sign_up, wait_connected
from tests.fake_mistral import Reply, split_tokens

pytestmark = pytest.mark.e2e


def test_a_temporary_chat_is_kept_out_of_the_sidebar_and_ends_at_logout(page: Page, fake):
    username = sign_up(page)
    toggle = page.get_by_role("button", name="Temporary")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_text("Temporary chat: not in your history")).to_be_visible()

    fake.enqueue(Reply.tokens(split_tokens("Noted, and forgotten soon.")))
    fake.enqueue(Reply.tokens(["Secret plans"]))
    send(page, "My secret plans")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    url = page.url
    expect(toggle).to_be_hidden()
    expect(page.locator("#conv-list .conv-link")).to_have_count(0)

    page.reload()
    wait_connected(page)
    expect(page.get_by_text("Temporary chat: not in your history")).to_be_visible()
    expect(page.locator("#conv-list .conv-link")).to_have_count(0)

    page.locator(".account summary").click()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    wait_connected(page)
    response = page.goto(url)
    assert response.status == 404
