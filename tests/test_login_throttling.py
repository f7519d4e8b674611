"""Login throttling (django-axes): wrong passwords lock one username from one address for
the cool-off, on the site's login and the admin's; the address is the one daphne gives."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils import timezone

from chatsite import settings as site_defaults

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"  # the `user` fixture's


def log_in(client: Client, password: str, *, url: str = "/accounts/login/", **extra):
    return client.post(url, {"username": "ada", "password": password}, **extra)


def signed_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def fail(client: Client, times: int, **extra) -> None:
    for _ in range(times):
        response = log_in(client, "wrong-password", **extra)
        assert response.status_code == 200  # the form again, with its error


def test_right_password_is_refused_after_five_wrong_ones_until_the_cool_off_passes(user):
    assert site_defaults.AXES_FAILURE_LIMIT == 5
    assert timedelta(minutes=15) == site_defaults.AXES_COOLOFF_TIME
    client = Client()
    fail(client, 4)
    assert log_in(client, "wrong-password").status_code == 429  # the fifth locks

    response = log_in(client, PASSWORD)

    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many wrong passwords for “ada” from your address" in page
    assert "paused for 15 minutes" in page
    assert not signed_in(client)

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))
    response = log_in(client, PASSWORD)
    assert response.status_code == 302
    assert signed_in(client)


def test_a_shorter_cool_off_from_the_settings_applies(user, settings):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)
    client = Client()
    fail(client, 4)
    assert "paused for 1 minute." in log_in(client, "wrong-password").content.decode()
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(seconds=61))
    assert log_in(client, PASSWORD).status_code == 302


def test_admin_login_is_throttled_too(user):
    user.is_staff = True
    user.save()
    client = Client()
    fail(client, 4, url="/admin/login/")
    assert log_in(client, "wrong-password", url="/admin/login/").status_code == 429
    response = log_in(client, PASSWORD, url="/admin/login/")
    assert response.status_code == 429
    assert not signed_in(client)


def test_lockout_is_per_address_and_ignores_a_forwarded_header(user):
    """The address is REMOTE_ADDR, which daphne --proxy-headers sets from the proxy's
    X-Forwarded-For; a header sent by the client itself changes nothing."""
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    fail(attacker, 4)
    assert log_in(attacker, "wrong-password").status_code == 429
    spoofed = log_in(attacker, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert spoofed.status_code == 429

    owner = Client(REMOTE_ADDR="198.51.100.1")
    assert log_in(owner, PASSWORD).status_code == 302
    assert signed_in(owner)


def test_a_successful_login_clears_earlier_failures(user):
    client = Client()
    fail(client, 4)
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()
    fail(client, 4)
    assert log_in(client, PASSWORD).status_code == 302
