"""Refuse an HTTP request body over MAX_REQUEST_BODY_BYTES before Django reads it.

Django's DATA_UPLOAD_MAX_MEMORY_SIZE leaves file uploads out, and its ASGI handler spools a
whole body to a temporary file before any view runs, so a size check in a view comes after
the disk has filled. This wrapper answers 413 from the Content-Length header alone, and cuts
a body sent without one (chunked) as soon as it passes the limit. A reverse proxy in front
should have the same limit (nginx: client_max_body_size), since the HTTP server below us
(daphne on Twisted) buffers the body it receives.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class RequestBodyLimit:
    def __init__(self, app: Callable[..., Awaitable[None]], *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.limit
            except ValueError:
                too_large = False  # the HTTP server rejects a malformed length itself
            if too_large:
                await self._refuse(send)
                return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    return {"type": "http.disconnect"}  # Django gives up on the request
            return message

        return counted

    async def _refuse(self, send: Send) -> None:
        mb = self.limit / 1_000_000
        body = orjson.dumps(
            {
                "error": {
                    "code": "too_large",
                    "message": f"The upload is too large; the limit is {mb:.0f} MB.",
                }
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
