"""A fast fake Mistral server for benchmarks, as its own process.

    python -m bench.fake_upstream --port 8801 --tokens 200 --interval-ms 10

Unlike tests/fake_mistral.py (strict, schema-validating, one thread), this one is built
never to be the bottleneck: raw `asyncio.Protocol`, just enough HTTP/1.1 (keep-alive,
Content-Length bodies, chunked responses), no validation, and every byte of a stream
encoded once per stream shape and cached. Each stream is a chain of `loop.call_at`
callbacks on an absolute schedule (no coroutine per stream, no drift).

The stream's shape comes from the request's model name, so the harness picks it per
conversation: `bench-<tokens>x<interval>ms`, optionally `-b<k>` (k tokens per write, each
still its own SSE event: a bursty upstream) and `-f<ms>ms` (delay before the first token).
Any other model gets the shape given on the command line.

The wire shape is the real one (../shared/mistral-wire.md §4): a first chunk with the
role and empty content, one chunk per token, the last content chunk with finish_reason and
usage, then `data: [DONE]`. Also served: `GET /v1/models` (a minimal list), non-streaming
POSTs (a short chat.completion: the app asks for a title after a first answer), and
`GET /bench/stats` (counters, so a run can check tokens received against tokens sent).
"""

import argparse
import asyncio
import contextlib
import random
import re
import signal
import sys
from dataclasses import dataclass
from functools import lru_cache

import orjson

CREATED = 1767225600
TITLE = "Benchmark conversation"

_MODEL_SHAPE = re.compile(
    r"bench-(?P<tokens>\d+)x(?P<interval>\d+(?:\.\d+)?)ms"
    r"(?:-b(?P<per_write>\d+))?(?:-f(?P<first>\d+(?:\.\d+)?)ms)?"
)


@dataclass(frozen=True, slots=True)
class Shape:
    """How one answer streams."""

    tokens: int = 200
    interval: float = 0.010  # seconds between writes
    per_write: int = 1  # tokens per write; more than one is a bursty upstream
    first_delay: float = 0.0  # seconds before the first token

    @property
    def model(self) -> str:
        name = f"bench-{self.tokens}x{_num(self.interval * 1000)}ms"
        if self.per_write != 1:
            name += f"-b{self.per_write}"
        if self.first_delay:
            name += f"-f{_num(self.first_delay * 1000)}ms"
        return name

    @property
    def writes(self) -> int:
        return -(-self.tokens // self.per_write)

    @property
    def seconds(self) -> float:
        """How long the upstream takes to send the whole answer."""
        return self.first_delay + max(0, self.writes - 1) * self.interval


def _num(value: float) -> str:
    return f"{value:g}"


def parse_model(model: str) -> Shape | None:
    """The shape a `bench-…` model name asks for; None for any other name."""
    match = _MODEL_SHAPE.fullmatch(model or "")
    if match is None:
        return None
    return Shape(
        tokens=max(1, int(match["tokens"])),
        interval=float(match["interval"]) / 1000,
        per_write=max(1, int(match["per_write"] or 1)),
        first_delay=float(match["first"] or 0) / 1000,
    )


def shape_for_model(model: str, default: Shape) -> Shape:
    return parse_model(model) or default


_WORDS = (
    "the", "relay", "forwards", "each", "token", "to", "every", "open", "tab", "as", "soon",
    "model", "server", "sends", "it", "and", "people", "read", "an", "answer", "while", "grows",
    "so", "a", "few", "milliseconds", "per", "hop", "add", "up", "quickly", "when", "thousands",
    "of", "streams", "share", "two", "cores", "database", "one", "event", "loop",
)  # fmt: skip


@lru_cache(maxsize=64)
def answer_tokens(n: int) -> tuple[str, ...]:
    """`n` non-empty tokens of a plausible markdown answer (paragraphs, a bullet list,
    bold and inline code, a fenced code block), the same for the same `n`."""
    rng = random.Random(n)
    tokens: list[str] = []
    blocks = ("paragraph", "list", "paragraph", "code", "paragraph")
    block = 0
    while len(tokens) < n:
        kind = blocks[block % len(blocks)]
        block += 1
        if kind == "paragraph":
            words = rng.randint(35, 70)
            tokens.append(rng.choice(_WORDS).capitalize())
            for i in range(words):
                if i % 17 == 9:
                    tokens.append(f" **{rng.choice(_WORDS)}**")
                elif i % 23 == 15:
                    tokens.append(f" `{rng.choice(_WORDS)}()`")
                else:
                    tokens.append(" " + rng.choice(_WORDS))
            tokens.extend((".", "\n\n"))
        elif kind == "list":
            for _ in range(rng.randint(3, 5)):
                tokens.append("- " + rng.choice(_WORDS).capitalize())
                tokens.extend(" " + rng.choice(_WORDS) for _ in range(rng.randint(5, 11)))
                tokens.append("\n")
            tokens.append("\n")
        else:
            tokens.extend(("```", "python", "\n", "def", " relay", "(frame", "):", "\n"))
            tokens.extend(("    return", " frame", ".text", "\n", "```", "\n\n"))
    return tuple(tokens[:n])


def answer_text(n: int) -> str:
    return "".join(answer_tokens(n))


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n"
    b"\r\n"
)


@dataclass(frozen=True, slots=True)
class Script:
    """Every byte of one stream shape, encoded once: the head (status, headers and the
    role chunk), then one entry per write (the last one ends the body)."""

    shape: Shape
    head: bytes
    writes: tuple[bytes, ...]


@lru_cache(maxsize=64)
def script_for(model: str, shape: Shape) -> Script:
    def event(content: str, finish_reason: str | None = None, usage: dict | None = None) -> bytes:
        chunk: dict = {
            "id": "cmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [
                {"index": 0, "delta": {"content": content}, "finish_reason": finish_reason}
            ],
        }
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    role = {
        "id": "cmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        ],
    }
    tokens = answer_tokens(shape.tokens)
    # Usage is fixed per shape (prompt size is not measured here); the client only relays it.
    usage = {
        "prompt_tokens": 20,
        "completion_tokens": len(tokens),
        "total_tokens": 20 + len(tokens),
    }
    events = [event(text) for text in tokens[:-1]]
    events.append(event(tokens[-1], "stop", usage))
    writes = []
    for start in range(0, len(events), shape.per_write):
        writes.append(_chunked(b"".join(events[start : start + shape.per_write])))
    writes[-1] += _chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    return Script(shape, _HEAD + _chunked(b"data: " + orjson.dumps(role) + b"\n\n"), tuple(writes))


def _json_response(status: int, body: object, *, close: bool = False) -> bytes:
    payload = orjson.dumps(body)
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n"
    )
    if close:
        head += "connection: close\r\n"
    return head.encode() + b"\r\n" + payload


@dataclass
class Counters:
    streams: int = 0  # streaming answers begun
    completed: int = 0  # streaming answers sent to their end
    tokens: int = 0  # tokens written, over all streams
    completions: int = 0  # non-streaming answers
    connections: int = 0
    open_connections: int = 0


class UpstreamServer:
    def __init__(self, default: Shape) -> None:
        self.default = default
        self.counters = Counters()

    def protocol(self) -> "_Connection":
        return _Connection(self)


_MAX_HEAD = 64 * 1024


class _Connection(asyncio.Protocol):
    def __init__(self, server: UpstreamServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a stream is being written; later requests wait in the buffer
        self.close_after = False
        self.timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.counters.connections += 1
        self.server.counters.open_connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.counters.open_connections -= 1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._serve_buffered()

    def _serve_buffered(self) -> None:
        while not self.busy and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_HEAD:
                    self.transport.close()
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            try:
                method, path, _ = lines[0].split(" ", 2)
            except ValueError:
                self.transport.write(_json_response(400, {"detail": "Bad request"}, close=True))
                self.transport.close()
                return
            length = 0
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    close = value.strip().lower() == "close"
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.close_after = close
            self._respond(method, path.split("?", 1)[0], body)

    def _respond(self, method: str, path: str, body: bytes) -> None:
        if path == "/v1/chat/completions" and method == "POST":
            try:
                request = orjson.loads(body)
                model = str(request.get("model") or "")
            except (orjson.JSONDecodeError, AttributeError):
                self._reply(_json_response(400, {"detail": "JSON decode error"}))
                return
            if request.get("stream"):
                self._stream(script_for(model, shape_for_model(model, self.server.default)))
            else:
                self._complete(model)
        elif path == "/v1/models" and method == "GET":
            self._reply(_json_response(200, _models(self.server.default)))
        elif path == "/bench/stats" and method == "GET":
            self._reply(_json_response(200, vars(self.server.counters)))
        else:
            self._reply(_json_response(404, {"detail": "Not Found"}))

    def _reply(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if self.close_after:
            self.transport.close()

    def _complete(self, model: str) -> None:
        self.server.counters.completions += 1
        text = TITLE
        if (shape := parse_model(model)) is not None:
            text = answer_text(shape.tokens)
        body = {
            "id": "cmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "tool_calls": None},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23},
        }
        self._reply(_json_response(200, body))

    def _stream(self, script: Script) -> None:
        assert self.transport is not None
        self.server.counters.streams += 1
        self.busy = True
        self.transport.write(script.head)
        state = _StreamState(script, self.loop.time() + script.shape.first_delay)
        if script.shape.first_delay:
            self.timer = self.loop.call_at(state.start, self._write_next, state)
        else:
            self._write_next(state)

    def _write_next(self, state: "_StreamState") -> None:
        self.timer = None
        if self.transport is None:
            return
        script = state.script
        self.transport.write(script.writes[state.index])
        shape = script.shape
        state.index += 1
        counters = self.server.counters
        if state.index < len(script.writes):
            counters.tokens += shape.per_write
            if shape.interval:
                when = state.start + state.index * shape.interval
                self.timer = self.loop.call_at(when, self._write_next, state)
            else:
                self.timer = self.loop.call_soon(self._write_next, state)  # type: ignore[assignment]
            return
        counters.tokens += shape.tokens - (len(script.writes) - 1) * shape.per_write
        counters.completed += 1
        self.busy = False
        if self.close_after:
            self.transport.close()
        elif self.buffer:
            self._serve_buffered()


@dataclass(slots=True)
class _StreamState:
    script: Script
    start: float  # loop time of the first token's write
    index: int = 0


def _models(default: Shape) -> dict:
    ids = dict.fromkeys(("mistral-small-latest", "ministral-8b-latest", default.model))
    return {
        "object": "list",
        "data": [
            {
                "id": model_id,
                "object": "model",
                "created": CREATED,
                "owned_by": "bench",
                "name": model_id,
                "description": "",
                "max_context_length": 32768,
                "aliases": [],
                "capabilities": {"completion_chat": True, "vision": False},
                "deprecation": None,
                "type": "base",
            }
            for model_id in ids
        ],
    }


async def serve(
    *, host: str = "127.0.0.1", port: int = 0, default: Shape | None = None, backlog: int = 4096
) -> tuple[asyncio.Server, UpstreamServer]:
    """Start serving on the running loop; the port is `server.sockets[0].getsockname()[1]`."""
    upstream = UpstreamServer(default or Shape())
    server = await asyncio.get_running_loop().create_server(
        upstream.protocol, host, port, backlog=backlog, reuse_address=True
    )
    return server, upstream


async def _main(args: argparse.Namespace) -> None:
    default = Shape(
        tokens=args.tokens,
        interval=args.interval_ms / 1000,
        per_write=args.per_write,
        first_delay=args.first_token_ms / 1000,
    )
    server, _ = await serve(host=args.host, port=args.port, default=default)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per answer")
    parser.add_argument("--interval-ms", type=float, default=10.0, help="ms between writes")
    parser.add_argument("--per-write", type=int, default=1, help="tokens per write (bursty)")
    parser.add_argument("--first-token-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
