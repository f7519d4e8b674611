"""A small HTTP/1.1 client for one job: send a request and read its streamed answer with as
little work per network read as Python allows.

httpx serves every other call to the model server. On the streaming path it was a quarter
of the relay's CPU (docs/performance.md): h11's event machinery, anyio's cancel scopes and
a timeout context for every read of every stream. Here a protocol object decodes the body
(chunked or not) as bytes arrive, a reader awaits one future per read, and the read timeout
is one timer per connection, re-armed only when it fires. Connections are kept alive and
reused per event loop, like httpx's pool.

Over 400 lines: one protocol class (the response parser lives in the connection that receives
the bytes, so a read costs one callback and no hand-over) and the reader that awaits it.

No Django here, and nothing Mistral-specific: errors are this module's own, and the client
(conversations/modelservers/mistral.py) maps them to what the user is told.
"""

import asyncio
import ssl
import weakref
from collections.abc import Mapping
from importlib import metadata
from urllib.parse import urlsplit

_HEAD_LIMIT = 64 * 1024
# Kept-alive connections per server: enough for a burst of streams to find theirs again
# (at 64, each burst of 100 questions after the first opened 36 new connections).
_IDLE_PER_HOST = 256


def _user_agent() -> str:
    """Ours, so a server's operator can tell this site's requests apart (read once)."""
    try:
        version = metadata.version("mistral-chat")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        version = "0"
    return f"mistral-chat/{version}"


_USER_AGENT = _user_agent()

# States of the chunked-body decoder.
_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class HTTPStreamError(Exception):
    """The request could not be sent or its answer could not be read."""


class ConnectFailed(HTTPStreamError):
    """No connection (refused, unreachable, TLS failure, or no answer within the timeout)."""


class ReadTimeout(HTTPStreamError):
    """The server sent nothing for longer than the read timeout."""


class ConnectionCut(HTTPStreamError):
    """The connection closed, or the server broke HTTP, before the answer was complete."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; it reads one response at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple) -> None:
        self.loop = loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.received_any = False
        self._head = b""
        self.head_done: asyncio.Future | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.reusable = False
        self._chunked = False
        self._remaining = -1  # body bytes still to come; -1 reads until the server closes
        self._cstate = _SIZE
        self._chunk_left = 0
        self._pending = b""
        self.out: list[bytes] = []
        self.eof = False
        self.error: HTTPStreamError | None = None
        self.waiter: asyncio.Future | None = None
        self.last_data = 0.0
        self.read_timeout = 60.0
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        self.last_data = self.loop.time()
        if self.head_done is None:  # idle in the pool: the server may not talk now
            self._fail(ConnectionCut("unexpected data on an idle connection"))
            return
        try:
            if not self.head_done.done():
                data = self._feed_head(data)
                if not data:
                    return
            if self._chunked:
                self._feed_chunked(data)
            elif self._remaining >= 0:
                take = data[: self._remaining]
                self._remaining -= len(take)
                self.out.append(take)
                if self._remaining == 0:
                    self.eof = True
                    self.reusable = self.reusable and len(take) == len(data)
            else:
                self.out.append(data)
        except (ValueError, IndexError):
            self._fail(ConnectionCut("the server broke the HTTP framing"))
            return
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        head = self.head_done
        if self._remaining == -1 and not self._chunked and head is not None and head.done():
            self.eof = True  # a body delimited by the connection's end
            self._wake()
            return
        if not self.eof:
            self._fail(ConnectionCut("the connection closed before the answer was complete"))

    # Parsing

    def _feed_head(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _HEAD_LIMIT:
                raise ValueError("head too long")
            return b""
        lines = self._head[:end].decode("latin-1").split("\r\n")
        rest = self._head[end + 4 :]
        self._head = b""
        version, status = lines[0].split(" ", 2)[:2]
        self.status = int(status)
        if 100 <= self.status < 200 and self.status != 101:
            # 100 Continue, 103 Early Hints: informational, the final answer follows.
            return self._feed_head(rest)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if self._chunked:
            self._remaining = 0
        elif "content-length" in headers:
            self._remaining = int(headers["content-length"])
        elif self.status in (204, 304) or 100 <= self.status < 200:
            self._remaining = 0
        self.reusable = (
            version == "HTTP/1.1"
            and "close" not in headers.get("connection", "").lower()
            and (self._chunked or self._remaining >= 0)
        )
        if self._remaining == 0 and not self._chunked:
            self.eof = True
        self.head_done.set_result(None)
        return rest

    def _feed_chunked(self, data: bytes) -> None:
        pos, size = 0, len(data)
        while pos < size:
            state = self._cstate
            if state == _DATA:
                end = pos + self._chunk_left
                if end > size:
                    self.out.append(data[pos:] if pos else data)
                    self._chunk_left -= size - pos
                    return
                self.out.append(data[pos:end])
                pos, self._chunk_left, self._cstate = end, 0, _DATA_END
            elif state == _DATA_END:
                need = 2 - len(self._pending)
                self._pending += data[pos : pos + need]
                pos += need
                if len(self._pending) == 2:
                    if self._pending != b"\r\n":
                        raise ValueError("chunk not followed by CRLF")
                    self._pending, self._cstate = b"", _SIZE
            elif state == _DONE:
                self.reusable = False  # bytes after the end: do not trust this connection
                return
            else:
                newline = data.find(b"\n", pos)
                if newline < 0:
                    self._pending += data[pos:]
                    if len(self._pending) > _HEAD_LIMIT:
                        raise ValueError("chunk line too long")
                    return
                line = (self._pending + data[pos:newline]).rstrip(b"\r")
                pos, self._pending = newline + 1, b""
                if state == _SIZE:
                    length = int(line.split(b";", 1)[0], 16)
                    if length < 0:
                        raise ValueError("negative chunk size")
                    self._chunk_left = length
                    self._cstate = _DATA if length else _TRAILER
                elif not line:  # the empty line that ends the trailer
                    self._cstate = _DONE
                    self.eof = True

    # Waiting

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, error: HTTPStreamError) -> None:
        if self.error is None:
            self.error = error
        self.reusable = False
        if self.head_done is not None and not self.head_done.done():
            self.head_done.set_exception(error)
            self.head_done.exception()  # retrieved: the reader may be gone
        self._wake()
        if self.transport is not None and not self.closed:
            self.transport.close()

    def arm_timer(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_at(self.last_data + self.read_timeout, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.waiter is None or self.eof or self.error is not None:
            return
        due = self.last_data + self.read_timeout
        if self.loop.time() >= due - 0.001:
            self._fail(ReadTimeout(f"no data for {self.read_timeout:g} s"))
        else:
            self._timer = self.loop.call_at(due, self._on_timer)

    def start(self, request: bytes, read_timeout: float) -> None:
        """Send a request on this (fresh or idle) connection and expect its answer."""
        self.head_done = self.loop.create_future()
        self.received_any = False
        self.status, self.headers, self.out = 0, {}, []
        self._chunked, self._remaining, self._cstate = False, -1, _SIZE
        self._chunk_left, self._pending, self.eof = 0, b"", False
        self.read_timeout = read_timeout
        self.last_data = self.loop.time()
        self.transport.write(request)

    def release(self) -> None:
        """After the response: back to the pool when it was read whole, else closed."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.head_done = None
        pool = _pools.get(self.loop)
        idle = pool.setdefault(self.key, []) if pool is not None else None
        if (
            self.eof
            and self.reusable
            and self.error is None
            and not self.closed
            and idle is not None
            and len(idle) < _IDLE_PER_HOST
        ):
            idle.append(self)
        elif not self.closed and self.transport is not None:
            self.transport.close()

    def release_broken(self) -> None:
        self.reusable = False
        self.release()


class StreamingResponse:
    """A response whose body is read as it arrives."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = connection.status
        self.headers: Mapping[str, str] = connection.headers

    async def read(self) -> bytes:
        """The body bytes that arrived since the last read (waiting for some), b"" at its end."""
        conn = self._connection
        while True:
            out = conn.out
            if out:
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                if data:
                    return data
                continue
            if conn.error is not None:
                raise conn.error
            if conn.eof:
                return b""
            conn.waiter = conn.loop.create_future()
            conn.arm_timer()
            await conn.waiter

    async def read_all(self, limit: int = 1 << 20) -> bytes:
        """The rest of the body, at most `limit` bytes (an error page needs no more)."""
        parts: list[bytes] = []
        size = 0
        while size < limit:
            data = await self.read()
            if not data:
                break
            parts.append(data)
            size += len(data)
        return b"".join(parts)[:limit]

    def close(self) -> None:
        self._connection.release()

    async def aclose(self) -> None:
        """close(), awaitable, like the proxied stream's (conversations/modelservers/mistral.py)."""
        self.close()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, list[_Connection]]] = (
    weakref.WeakKeyDictionary()
)


async def open_stream(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
    connect_timeout: float,
    read_timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> StreamingResponse:
    """Send a request and return once the status line and headers have come. A kept-alive
    connection the server closed meanwhile is replaced by a new one, once."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectFailed(f"unsupported URL {parts.scheme}://{parts.hostname}")
    host = parts.hostname
    port = parts.port or (443 if secure else 80)
    request = _request_bytes(method, parts, host, headers, body)
    loop = asyncio.get_running_loop()
    key = (parts.scheme, host, port)
    idle = _pools.setdefault(loop, {}).setdefault(key, [])
    for _ in range(2):
        reused = False
        conn = None
        while idle:
            candidate = idle.pop()
            if not candidate.closed and not candidate.transport.is_closing():
                conn, reused = candidate, True
                break
        if conn is None:
            conn = await _connect(loop, key, secure, ssl_context, connect_timeout)
        conn.start(request, read_timeout)
        try:
            async with asyncio.timeout(read_timeout):
                await conn.head_done
        except TimeoutError:
            conn.release_broken()
            raise ReadTimeout(f"no answer within {read_timeout:g} s") from None
        except ConnectionCut:
            conn.release_broken()
            if reused and not conn.received_any:
                continue  # the server had closed this idle connection: try a new one
            raise
        except BaseException:
            conn.release_broken()
            raise
        return StreamingResponse(conn)
    raise ConnectionCut("the connection closed before the answer began")


async def _connect(
    loop: asyncio.AbstractEventLoop,
    key: tuple,
    secure: bool,
    ssl_context: ssl.SSLContext | None,
    connect_timeout: float,
) -> _Connection:
    _, host, port = key
    if secure and ssl_context is None:
        ssl_context = ssl.create_default_context()
    try:
        async with asyncio.timeout(connect_timeout):
            _, conn = await loop.create_connection(
                lambda: _Connection(loop, key),
                host,
                port,
                ssl=ssl_context if secure else None,
                server_hostname=host if secure else None,
            )
    except TimeoutError:
        raise ConnectFailed(f"no connection to {host}:{port} in {connect_timeout:g} s") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConnectFailed(f"could not connect to {host}:{port}: {exc.strerror or exc}") from None
    return conn


def _request_bytes(method, parts, host: str, headers: Mapping[str, str], body) -> bytes:
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if ":" in host:  # an IPv6 address keeps its brackets in the Host header
        host = f"[{host}]"
    authority = host if parts.port is None else f"{host}:{parts.port}"
    lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}", "Accept-Encoding: identity"]
    if not any(name.lower() == "user-agent" for name in headers):
        lines.append(f"User-Agent: {_USER_AGENT}")
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


async def aclose_connections() -> None:
    """Close this loop's idle connections (at shutdown, and in test teardown)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    for idle in (pool or {}).values():
        for conn in idle:
            if conn.transport is not None:
                conn.transport.close()
    await asyncio.sleep(0)
