"""Signs websockets in from the session cookie.

Channels' `AuthMiddlewareStack` does the same, but its session layer also wraps `send` to
save the session and set cookies on HTTP responses. A websocket frame can carry no cookie,
so on a socket that wrapper is only a cost, paid for every frame of every answer streamed
to every tab (a few per cent of the relay's CPU, docs/performance.md). This middleware
reads the session once, at connect, and passes `send` through untouched.
"""

from importlib import import_module
from typing import Any

from channels.auth import get_user
from django.conf import settings
from django.http.cookie import parse_cookie


class SessionAuthMiddleware:
    """Puts `session` and `user` (a signed-in user or AnonymousUser) into the scope."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.session_store = import_module(settings.SESSION_ENGINE).SessionStore

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        cookie = b""
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                cookie = value
                break
        cookies = parse_cookie(cookie.decode("latin1"))
        session = self.session_store(cookies.get(settings.SESSION_COOKIE_NAME))
        scope = {**scope, "cookies": cookies, "session": session}
        scope["user"] = await get_user(scope)
        return await self.app(scope, receive, send)
