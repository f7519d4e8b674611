"""Sockets are opened only by the site's own pages: the Origin a browser sends must be the
request's own scheme, host and port, or one of CSRF_TRUSTED_ORIGINS.

A websocket is not covered by CSRF tokens and carries the session cookie, so any page the
browser shows could open one and drive a user's chat. Channels' AllowedHostsOriginValidator
compares only the Origin's host with ALLOWED_HOSTS, which let another app on the same host
(`http://127.0.0.1:9999`, `http://localhost:3000`) in. Here the whole origin is compared.

The request's scheme: daphne puts none in a websocket's scope, even with `--proxy-headers`,
so behind the proxy it comes from `X-Forwarded-Proto` (deploy/nginx.conf sets it; the Host
it passes is the browser's, port included). Trusting that header costs nothing: a browser
cannot set headers on a websocket request, and a client that is not a browser can send any
Origin it likes. A socket without an Origin is refused: every browser sends one, and the
site's own clients (the page, bench/) do too.
"""

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

_DEFAULT_PORTS = {"http": 80, "https": 443}

# (scheme, host, port), as compared.
Origin = tuple[str, str, int]


def _origin(scheme: str, netloc: str) -> Origin | None:
    """`scheme` and `host[:port]` as a comparable triple (the host as ALLOWED_HOSTS
    spells it); None for what is not one."""
    if scheme not in _DEFAULT_PORTS:
        return None
    host, port = split_domain_port(netloc)
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        return None
    return scheme, host, int(port) if port else _DEFAULT_PORTS[scheme]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1").strip().lower()
    return None


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin a page of this site would have for this request: its Host header, and
    its scheme (the scope's, else the proxy's `X-Forwarded-Proto`, else http)."""
    host = _header(scope, b"host")
    if not host:
        return None
    if "scheme" in scope:
        scheme = {"ws": "http", "wss": "https"}.get(scope["scheme"], scope["scheme"])
    else:
        forwarded = _header(scope, b"x-forwarded-proto")
        scheme = forwarded.split(",")[0].strip() if forwarded else "http"
    return _origin(scheme, host)


def _allowed_hosts() -> list[str]:
    # What Django itself allows when ALLOWED_HOSTS is empty (HttpRequest.get_host).
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return settings.ALLOWED_HOSTS


def _trusted(origin: str) -> bool:
    """In CSRF_TRUSTED_ORIGINS, read as Django's CSRF check reads it: exact origins, and
    `scheme://*.domain` for any subdomain."""
    sent = urlsplit(origin)
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        trusted = trusted.lower()
        if "*" not in trusted:
            if origin == trusted:
                return True
            continue
        allowed = urlsplit(trusted)
        if allowed.scheme == sent.scheme and is_same_domain(
            sent.netloc, allowed.netloc.replace("*", "", 1)
        ):
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether a socket request comes from one of the site's own pages, to a host in
    ALLOWED_HOSTS."""
    own = own_origin(scope)
    if own is None or not validate_host(own[1], _allowed_hosts()):
        return False
    sent = _header(scope, b"origin")
    if not sent:
        return False
    try:
        parts = urlsplit(sent)
    except ValueError:  # an unclosed IPv6 bracket
        return False
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        return False
    return _origin(parts.scheme, parts.netloc) == own or _trusted(sent)


class SameOriginOnly:
    """ASGI middleware: a websocket from any other origin is refused at the handshake (403),
    before the session is read."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)
