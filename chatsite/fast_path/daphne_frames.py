"""Websocket text frames written straight to daphne's connection.

An ASGI `websocket.send` under daphne passes through six layers before reaching the
socket: the coroutine `Server.handle_reply`, the protocol's `handle_reply` and
`serverSend`, then autobahn's `sendMessage`, `sendFrame` and `sendData` (with a debug log
call and traffic counters). A chat relay sends one small frame per token to every tab, and
going around them took a quarter off its CPU per token (docs/performance.md). A server's
text frame is a two-to-ten-byte header and the UTF-8 payload, unmasked (RFC 6455 §5.2), so
this module writes it to the connection's transport itself.

`DirectFrames` is ASGI middleware: under daphne it puts a writer into the scope's
extensions (`scope["extensions"]["chatsite.write_text"]`); an app calls it with the payload
and falls back to `send` when it returns False. It returns False whenever autobahn's own
path is needed: the socket is not open, a message is half sent, frames are queued, or
compression was negotiated (daphne offers none). Under any other server there is no
writer, and `send` is the only road.

Part of the fast path (chatsite/fast_path/__init__.py): `chatsite/asgi.py` puts `DirectFrames`
in the stack only when the start-up check finds the autobahn and daphne internals `write`
reads, in releases it was written for.
"""

import functools
from collections.abc import Callable
from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol

EXTENSION = "chatsite.write_text"

TextWriter = Callable[[bytes], bool]


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame carrying `payload`."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 1 << 16:
        return b"\x81\x7e" + length.to_bytes(2, "big") + payload
    return b"\x81\x7f" + length.to_bytes(8, "big") + payload


def text_writer(send: Any) -> TextWriter | None:
    """A writer for the connection behind daphne's ASGI `send` (a partial of
    `Server.handle_reply` over the connection's protocol); None for any other `send`."""
    if not (
        isinstance(send, functools.partial)
        # daphne.server is not imported here: importing it installs Twisted's reactor.
        and type(getattr(send.func, "__self__", None)).__module__ == "daphne.server"
        and getattr(send.func, "__name__", "") == "handle_reply"
        and len(send.args) == 1
        and isinstance(send.args[0], WebSocketProtocol)
    ):
        return None
    protocol = send.args[0]

    def write(payload: bytes) -> bool:
        if (
            protocol.state != WebSocketProtocol.STATE_OPEN
            or protocol.send_state != WebSocketProtocol.SEND_STATE_GROUND
            or protocol.send_queue
            or protocol._perMessageCompress is not None
            or protocol.transport is None
        ):
            return False
        protocol.transport.write(text_frame(payload))
        return True

    return write


class DirectFrames:
    """Offers the app a `text_writer` for each websocket, in the scope's extensions."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        writer = text_writer(send) if scope["type"] == "websocket" else None
        if writer is not None:
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), EXTENSION: writer}}
        return await self.app(scope, receive, send)
