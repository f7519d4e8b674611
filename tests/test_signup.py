"""Who may make an account: CHAT_SIGNUP open, closed or by approval, and invitations made
in the admin, which work once whatever the mode."""

import re

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.core.checks import run_checks
from django.test import Client

from conversations.models import Invite, SignupRequest

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-Passphrase-42"


def sign_up(client: Client, username: str, url: str = "/accounts/signup/"):
    return client.post(url, {"username": username, "password1": PASSWORD, "password2": PASSWORD})


def signed_in(client: Client) -> bool:
    return SESSION_KEY in client.session


@pytest.fixture
def admin_client(django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="root-pw-for-tests")
    client = Client()
    client.force_login(admin)
    return client


def invite_link(admin_client) -> str:
    """An invitation made as an administrator does: the admin's add form, then the link
    its list shows."""
    response = admin_client.post("/admin/conversations/invite/add/", {"note": "for Grace"})
    assert response.status_code == 302
    page = admin_client.get("/admin/conversations/invite/").content.decode()
    return re.search(r"<code>(/accounts/signup/\?invite=[^<]+)</code>", page).group(1)


def test_open_sign_up_signs_the_new_user_in(settings):
    assert settings.CHAT_SIGNUP == "open"
    client = Client()
    assert sign_up(client, "grace").status_code == 302
    assert signed_in(client)


def test_closed_sign_up_refuses_with_a_reason_and_makes_no_account(settings):
    settings.CHAT_SIGNUP = "closed"
    client = Client()
    page = client.get("/accounts/signup/")
    assert page.status_code == 403
    assert "Sign-up is closed on this site" in page.content.decode()
    assert sign_up(client, "grace").status_code == 403
    assert not get_user_model().objects.filter(username="grace").exists()


def test_an_invitation_works_once_while_sign_up_is_closed(settings, admin_client):
    settings.CHAT_SIGNUP = "closed"
    link = invite_link(admin_client)

    client = Client()
    assert client.get(link).status_code == 200
    assert sign_up(client, "grace", link).status_code == 302
    assert signed_in(client)
    grace = get_user_model().objects.get(username="grace")
    assert grace.is_active
    assert Invite.objects.get().used_by == grace

    again = sign_up(Client(), "mallory", link)
    assert again.status_code == 403
    assert "already been used" in again.content.decode()
    assert not get_user_model().objects.filter(username="mallory").exists()


def test_an_invited_account_needs_no_approval(settings, admin_client):
    settings.CHAT_SIGNUP = "approval"
    client = Client()
    assert sign_up(client, "grace", invite_link(admin_client)).status_code == 302
    assert signed_in(client)
    assert not SignupRequest.objects.exists()


def test_with_approval_an_account_cannot_log_in_until_an_admin_approves_it(settings, admin_client):
    settings.CHAT_SIGNUP = "approval"
    client = Client()

    response = sign_up(client, "grace")

    assert response.status_code == 200
    assert "waiting for an administrator's approval" in response.content.decode()
    assert not signed_in(client)
    login = {"username": "grace", "password": PASSWORD}
    refused = client.post("/accounts/login/", login)
    assert "Your account is waiting for an administrator" in refused.content.decode()
    assert not signed_in(client)

    request = SignupRequest.objects.get()
    approved = admin_client.post(
        "/admin/conversations/signuprequest/",
        {"action": "approve", "_selected_action": [request.pk]},
    )
    assert approved.status_code == 302
    assert not SignupRequest.objects.exists()

    assert client.post("/accounts/login/", login).status_code == 302
    assert signed_in(client)


def test_a_wrong_password_of_an_account_awaiting_approval_is_just_wrong(settings):
    settings.CHAT_SIGNUP = "approval"
    sign_up(Client(), "grace")
    page = Client().post("/accounts/login/", {"username": "grace", "password": "nope-nope-1"})
    assert "waiting for" not in page.content.decode()
    assert "correct username and password" in page.content.decode()


def test_check_deploy_warns_while_sign_up_is_open(settings):
    found = run_checks(tags=["signup"], include_deployment_checks=True)
    assert [m.id for m in found] == ["conversations.W020"]
    settings.CHAT_SIGNUP = "approval"
    assert run_checks(tags=["signup"], include_deployment_checks=True) == []
    settings.CHAT_SIGNUP = "sometimes"
    assert [m.id for m in run_checks(tags=["signup"])] == ["conversations.E020"]
