"""Deleting several conversations at once, all of them, and one's account, in the
browser: what the sidebar shows after, and a second tab signed out at once."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD, sign_up, wait_connected

pytestmark = pytest.mark.e2e

THREE = """
from django.contrib.auth.models import User
from conversations.models import Conversation, Message
owner = User.objects.get(username=OWNER)
for title in ["Alpha", "Beta", "Gamma"]:
    c = Conversation.objects.create(owner=owner, model="mistral-small-latest", title=title)
    Message.objects.create(conversation=c, role="user", text="hello " + title)
"""


def confirm(page: Page, text: str) -> None:
    dialog = page.get_by_role("dialog", name="Delete conversations?")
    expect(dialog).to_contain_text(text)
    dialog.get_by_role("button", name="Delete").click()


def test_select_several_then_delete_all(page: Page, site_shell):
    owner = sign_up(page)
    site_shell(f"OWNER = {owner!r}\n" + THREE)
    page.reload()
    wait_connected(page)
    titles = page.locator("#conv-list .conv-title")
    expect(titles).to_have_text(["Gamma", "Beta", "Alpha"])

    page.get_by_role("button", name="Select").click()
    delete = page.locator("#select-delete")
    expect(delete).to_be_disabled()
    page.get_by_role("checkbox", name="Select Gamma").check()
    page.get_by_role("checkbox", name="Select Alpha").check()
    expect(page.locator("#select-count")).to_have_text("2 selected")
    delete.click()
    confirm(page, "These 2 conversations")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(titles).to_have_text(["Beta"])

    page.locator(".account summary").click()
    page.get_by_role("button", name="Delete all conversations").click()
    confirm(page, "Every conversation, archived ones too")
    expect(page.locator("#conv-list .conv")).to_have_count(0)
    expect(page.locator(".conv-empty")).to_be_visible()


def test_cancel_deletes_nothing(page: Page, site_shell):
    owner = sign_up(page)
    site_shell(f"OWNER = {owner!r}\n" + THREE)
    page.reload()
    wait_connected(page)
    page.locator(".account summary").click()
    page.get_by_role("button", name="Delete all conversations").click()
    page.get_by_role("dialog", name="Delete conversations?").get_by_role(
        "button", name="Cancel"
    ).click()
    page.reload()
    expect(page.locator("#conv-list .conv")).to_have_count(3)


def test_deleting_the_account_signs_out_every_tab(page: Page, site_shell):
    owner = sign_up(page)
    site_shell(f"OWNER = {owner!r}\n" + THREE)
    other = page.context.new_page()
    other.goto("/")
    wait_connected(other)

    page.goto("/accounts/delete/")
    page.get_by_label("Your password").fill("not it")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_text("That is not your password.")).to_be_visible()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_role("heading", name="Account deleted")).to_be_visible()

    # The other tab's socket was closed as the session ended: it goes to the login page.
    expect(other).to_have_url(re.compile(r"/accounts/login/"))
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(owner)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(re.compile("enter a correct username and password"))).to_be_visible()
