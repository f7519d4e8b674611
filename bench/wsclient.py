"""A minimal websocket client (RFC 6455) on a raw `asyncio.Protocol`, for the load generator.

Cheap enough that thousands of sockets in one process do not starve the server on the
same two cores: frames are parsed straight from `data_received` with one timestamp per
network read, and delivered to a callback (no task or queue per frame), or to `recv()`
for code that prefers to await. Client frames are masked; server frames are unmasked
(a masked one is unmasked too, so the same parser serves the tests' tiny server).
No extensions (no compression) are offered.
"""

import asyncio
import base64
import collections
import hashlib
import os
import time
from collections.abc import Callable

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HANDSHAKE = 64 * 1024


class HandshakeError(Exception):
    """The server did not switch protocols (a 403 from the origin check, for example)."""


class ConnectionClosed(Exception):
    """The socket closed; `code` is the close code the server sent, if any."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"websocket closed (code {code})")
        self.code = code


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value a server must answer `key` with."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # noqa: S324


def apply_mask(data: bytes, key: bytes) -> bytes:
    """XOR `data` with the repeated 4-byte `key` (masking and unmasking are the same)."""
    n = len(data)
    if not n:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little"
    )


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    mask: bool = True,
    mask_key: bytes | None = None,
    fin: bool = True,
) -> bytes:
    """One frame; clients must mask (`mask_key` is random unless given, for tests)."""
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    head = bytearray([(0x80 if fin else 0) | opcode])
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head.append(mask_bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += n.to_bytes(8, "big")
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        head += key
        payload = apply_mask(payload, key)
    return bytes(head) + payload


def close_payload(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode()


class FrameParser:
    """Turns a byte stream into complete frames: (fin, opcode, payload)."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[tuple[bool, int, bytes]]:
        buf = self._pending + data if self._pending else data
        frames = []
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            first = buf[pos]
            second = buf[pos + 1]
            length = second & 0x7F
            head = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = pos + 10
            key = None
            if second & 0x80:
                if size - head < 4:
                    break
                key = buf[head : head + 4]
                head += 4
            end = head + length
            if end > size:
                break
            payload = buf[head:end]
            if key is not None:
                payload = apply_mask(payload, key)
            frames.append((bool(first & 0x80), first & 0x0F, payload))
            pos = end
        self._pending = buf[pos:] if pos < size else b""
        return frames


def handshake_request(
    *, host: str, port: int, path: str, key: str, origin: str | None, cookie: str | None
) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# on_message(opcode, payload, received_at): text payloads are str, binary ones bytes.
MessageCallback = Callable[[int, str | bytes, float], None]


class WebSocket(asyncio.Protocol):
    """One client socket. Set `on_message` to take messages as they arrive (with the
    `time.perf_counter()` of the read that completed them); otherwise await `recv()`."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        path: str,
        origin: str | None = None,
        cookie: str | None = None,
        on_message: MessageCallback | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.on_message = on_message
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()
        self.close_code: int | None = None
        self.transport: asyncio.Transport | None = None
        self._key = base64.b64encode(os.urandom(16)).decode()
        self._request = handshake_request(
            host=host, port=port, path=path, key=self._key, origin=origin, cookie=cookie
        )
        self._handshake = b""
        self._parser = FrameParser()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._queue: collections.deque[tuple[int, str | bytes, float]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._close_sent = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.opened.done():
            data = self._read_handshake(data)
            if not data:
                return
        for fin, opcode, payload in self._parser.feed(data):
            if opcode >= OP_CLOSE:
                self._control(opcode, payload)
                continue
            if opcode == OP_CONTINUATION:
                self._fragments.append(payload)
                if not fin:
                    continue
                opcode = self._fragment_opcode
                payload = b"".join(self._fragments)
                self._fragments = []
            elif not fin:
                self._fragment_opcode = opcode
                self._fragments = [payload]
                continue
            message = payload.decode() if opcode == OP_TEXT else payload
            if self.on_message is not None:
                self.on_message(opcode, message, now)
            else:
                self._queue.append((opcode, message, now))
                self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.opened.done():
            self.opened.set_exception(exc or HandshakeError("connection closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)
        self._wake()

    # Sending

    def send_text(self, text: str) -> None:
        if self.transport is None:
            raise ConnectionClosed(self.close_code)
        self.transport.write(encode_frame(OP_TEXT, text.encode()))

    def send_bytes(self, data: bytes) -> None:
        if self.transport is None:
            raise ConnectionClosed(self.close_code)
        self.transport.write(encode_frame(OP_BINARY, data))

    async def close(self, code: int = 1000, timeout: float = 5.0) -> int | None:  # noqa: ASYNC109
        """Send a close frame, wait for the server's (or the deadline), drop the socket."""
        if self.transport is not None and not self._close_sent:
            self._close_sent = True
            self.transport.write(encode_frame(OP_CLOSE, close_payload(code)))
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self.closed)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()
        return self.close_code

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # Receiving without a callback

    async def recv(self) -> tuple[int, str | bytes, float]:
        """The next message: (opcode, payload, received_at); ConnectionClosed at the end."""
        while not self._queue:
            if self.closed.done():
                raise ConnectionClosed(self.close_code)
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._queue.popleft()

    # Internals

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _read_handshake(self, data: bytes) -> bytes:
        self._handshake += data
        end = self._handshake.find(b"\r\n\r\n")
        if end < 0:
            if len(self._handshake) > _MAX_HANDSHAKE:
                self._fail_handshake("handshake response too large")
            return b""
        head = self._handshake[:end].decode("latin-1").split("\r\n")
        rest = self._handshake[end + 4 :]
        self._handshake = b""
        status = head[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self._fail_handshake(f"handshake refused: {head[0]}")
            return b""
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept") != accept_key(self._key):
            self._fail_handshake("bad Sec-WebSocket-Accept")
            return b""
        self.opened.set_result(None)
        return rest

    def _fail_handshake(self, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(reason))
        if self.transport is not None:
            self.transport.close()

    def _control(self, opcode: int, payload: bytes) -> None:
        if self.transport is None:
            return
        if opcode == OP_PING:
            self.transport.write(encode_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if not self._close_sent:
                self._close_sent = True
                self.transport.write(encode_frame(OP_CLOSE, payload[:2]))
            self.transport.close()


async def connect(
    host: str,
    port: int,
    path: str = "/",
    *,
    origin: str | None = None,
    cookie: str | None = None,
    on_message: MessageCallback | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> WebSocket:
    """Open a socket and complete the handshake, or raise HandshakeError/OSError."""
    loop = asyncio.get_running_loop()
    _, socket = await loop.create_connection(
        lambda: WebSocket(
            host=host, port=port, path=path, origin=origin, cookie=cookie, on_message=on_message
        ),
        host,
        port,
    )
    try:
        async with asyncio.timeout(timeout):
            await socket.opened
    except BaseException:
        socket.abort()
        raise
    return socket
