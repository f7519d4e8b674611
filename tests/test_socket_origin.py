"""Only the site's own pages open a socket: the Origin's scheme, host and port must be the
request's own, or listed in CSRF_TRUSTED_ORIGINS (chatsite/socket_origin.py)."""

import pytest
from channels.testing import WebsocketCommunicator

from chatsite.asgi import application
from tests.conftest import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def connects(user, *, origin: bytes | None, host: bytes | None, **extra: bytes) -> bool:
    headers = [(b"cookie", await session_cookie(user))]
    if origin is not None:
        headers.append((b"origin", origin))
    if host is not None:
        headers.append((b"host", host))
    headers += [(name.replace("_", "-").encode(), value) for name, value in extra.items()]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return connected


async def test_socket_from_the_sites_own_origin_is_accepted(user):
    assert await connects(user, origin=b"http://127.0.0.1:8000", host=b"127.0.0.1:8000")
    assert await connects(user, origin=b"http://localhost", host=b"localhost:80")


async def test_socket_from_another_port_on_the_same_host_is_refused(user):
    assert not await connects(user, origin=b"http://127.0.0.1:9999", host=b"127.0.0.1:8000")
    assert not await connects(user, origin=b"http://localhost:3000", host=b"localhost:8000")
    assert not await connects(user, origin=b"http://127.0.0.1:8000", host=b"127.0.0.1")


async def test_socket_from_another_scheme_is_refused(user):
    assert not await connects(user, origin=b"https://127.0.0.1:8000", host=b"127.0.0.1:8000")
    assert not await connects(
        user,
        origin=b"http://chat.example.org",
        host=b"chat.example.org",
        x_forwarded_proto=b"https",
    )


async def test_socket_behind_the_https_proxy_is_accepted(user, settings):
    """deploy/nginx.conf passes the browser's Host and the scheme as X-Forwarded-Proto."""
    settings.ALLOWED_HOSTS = ["chat.example.org"]
    assert await connects(
        user,
        origin=b"https://chat.example.org",
        host=b"chat.example.org",
        x_forwarded_proto=b"https",
    )


async def test_socket_to_a_host_not_in_allowed_hosts_is_refused(user, settings):
    settings.ALLOWED_HOSTS = ["chat.example.org"]
    assert not await connects(user, origin=b"http://evil.example", host=b"evil.example")


async def test_socket_from_a_csrf_trusted_origin_is_accepted(user, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.org", "https://*.example.net"]
    assert await connects(user, origin=b"https://app.example.org", host=b"127.0.0.1:8000")
    assert await connects(user, origin=b"https://eu.example.net", host=b"127.0.0.1:8000")
    assert not await connects(user, origin=b"http://app.example.org", host=b"127.0.0.1:8000")
    assert not await connects(user, origin=b"https://app.example.org:8443", host=b"127.0.0.1")


async def test_socket_without_an_origin_is_refused(user):
    """Every browser sends one; the page and the bench's clients do too."""
    assert not await connects(user, origin=None, host=b"127.0.0.1:8000")
    assert not await connects(user, origin=b"null", host=b"127.0.0.1:8000")


async def test_socket_without_a_host_is_refused(user):
    assert not await connects(user, origin=b"http://127.0.0.1", host=None)
