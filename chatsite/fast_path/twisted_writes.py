"""Twisted writes that go out at once.

Daphne serves websockets through Twisted, whose TCP transport never writes in `write()`:
it buffers the bytes and registers the socket with the event loop, and only on the next
loop turn, when the selector says the socket is writable, sends them and unregisters it
again. For a chat relay that is one frame per token: two selector changes and an extra
loop wake-up per frame (about a tenth of the relay's CPU in our profiles). asyncio's own
transports try the send first and only fall back to buffering when the socket is full;
this module gives Twisted's TCP connections the same behaviour.

Order is kept: the shortcut is taken only when nothing is buffered, so bytes never pass
ones written earlier. A streaming producer (twisted.web's HTTP channel registers one) is
paused by Twisted's own path as soon as bytes have to be buffered; anything unusual (TLS
started on the connection, a pull producer, a closing connection, a send error) takes that
path from the start.

Part of the fast path (chatsite/fast_path/__init__.py): patched in only when the start-up
check finds the attributes `_write` reads, in a Twisted release it was written for.
"""

from twisted.internet import tcp

# Twisted's own `write`, kept when the patch goes in (not at import: this module must import
# even where the start-up check finds Twisted changed).
_twisted_write = None


def _write(self: tcp.Connection, data: bytes) -> None:
    if (
        data
        and self.connected
        and not self.disconnecting
        and not self._writeDisconnected
        and not self.TLS
        and (self.producer is None or self.streamingProducer)
        and not self._tempDataBuffer
        and len(self.dataBuffer) == self.offset
    ):
        try:
            sent = self.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # Twisted's path meets the error again and closes the connection
        if sent == len(data):
            return
        data = data[sent:]
    _twisted_write(self, data)


def install() -> None:
    """Patch Twisted's TCP connections, process-wide (idempotent). Only `fast_path.install()`
    calls it, once the check has found the internals above."""
    global _twisted_write
    if _twisted_write is None:
        _twisted_write = tcp.Connection.write
    tcp.Connection.write = _write  # type: ignore[method-assign]


def uninstall() -> None:
    """Give Twisted its own `write` back (the fast path turned off)."""
    if _twisted_write is not None:
        tcp.Connection.write = _twisted_write  # type: ignore[method-assign]
