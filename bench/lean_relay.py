"""The lean relay: the best-case prototype of `shared/PERFORMANCE-NOTES.md`, as a baseline.

    .venv/bin/daphne -p 8802 bench.lean_relay:application   # LEAN_UPSTREAM=http://127.0.0.1:8801

The issue's targets were set against a relay built from our stack's parts with nothing else
to do: daphne and a Channels consumer (without Channels' thread hop before each handler),
httpx with several small clients, raw reads parsed in bulk with orjson, one frame per read.
It measured 46–52 µs of CPU per token on the machine of 2026-11, and the app "must beat" it.
Machines differ by a factor of two in these figures (docs/performance.md), so scenario (a)
runs this relay under the same load in the same run. `bench/floor_relay.py` is the same
relay on the app's own transport, the floor below which no feature can go.

No sign-in, no database, no rendering, one tab per conversation. It speaks just enough of
the app's socket protocol for the load generator: `subscribe` is answered `subscribed`; a
`send` gets the question and answer `message` frames, a `delta` per upstream read and the
finished answer.
"""

import itertools
import os
import time
from collections.abc import AsyncIterator

import django
import httpx
import orjson
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

if not settings.configured:
    settings.configure(CHANNEL_LAYERS={})
    django.setup()

UPSTREAM = os.environ.get("LEAN_UPSTREAM", "http://127.0.0.1:8801")
MODEL = os.environ.get("LEAN_MODEL", "bench-200x10ms")

_ids = itertools.count(1)


def message_frame(id_: int, role: str, status: str, text: str, **more: int) -> bytes:
    message = {"id": id_, "role": role, "status": status, "text": text, **more}
    return orjson.dumps({"type": "message", "message": message})


def sse_texts(pending: bytes, raw: bytes) -> tuple[bytes, str]:
    """(what is left of an unfinished event, the text of the complete ones) after a read."""
    events, _, pending = (pending + raw).rpartition(b"\n\n")
    texts = []
    for event in events.split(b"\n\n"):
        data = event.removeprefix(b"data: ")
        if data and data != b"[DONE]":
            choices = orjson.loads(data)["choices"]
            if choices and (text := choices[0]["delta"].get("content")):
                texts.append(text)
    return pending, "".join(texts)


def request_body(question: str) -> dict:
    return {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": question}]}


class LeanRelay(AsyncWebsocketConsumer):
    async def dispatch(self, message: dict) -> None:
        # Without Channels' `aclose_old_connections` hop before each handler.
        await getattr(self, message["type"].replace(".", "_"))(message)

    async def websocket_disconnect(self, message: dict) -> None:
        # Without Channels' closing of stale database connections: there is no database.
        raise StopConsumer

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        frame = orjson.loads(text_data)
        if frame["type"] == "subscribe":
            await self.write(orjson.dumps({"type": "subscribed"}))
        elif frame["type"] == "send":
            await self.answer(frame["text"])

    async def write(self, frame: bytes) -> None:
        await self.send(frame.decode())

    async def reads(self, question: str) -> AsyncIterator[bytes]:
        """The raw body of the model's streamed answer, read to its end (so the connection
        is reused)."""
        body = request_body(question)
        async with _client().stream("POST", "/v1/chat/completions", json=body) as response:
            async for raw in response.aiter_raw():
                yield raw

    async def answer(self, question: str) -> None:
        started = time.monotonic()
        question_id, answer_id = next(_ids), next(_ids)
        await self.write(message_frame(question_id, "user", "complete", question))
        await self.write(message_frame(answer_id, "assistant", "streaming", ""))
        parts: list[str] = []
        pending = b""
        async for raw in self.reads(question):
            pending, text = sse_texts(pending, raw)
            if text:
                parts.append(text)
                delta = {"type": "delta", "message": answer_id, "seq": len(parts), "text": text}
                await self.write(orjson.dumps(delta))
        ms = round((time.monotonic() - started) * 1000)
        text = "".join(parts)
        await self.write(message_frame(answer_id, "assistant", "complete", text, duration_ms=ms))


# Several small clients round-robin: one large pool degrades with many streams (the notes).
_pool: list[httpx.AsyncClient] = []
_turns = itertools.count()


def _client() -> httpx.AsyncClient:
    if not _pool:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=8)
        _pool.extend(
            httpx.AsyncClient(base_url=UPSTREAM, timeout=30, limits=limits) for _ in range(32)
        )
    return _pool[next(_turns) % len(_pool)]


async def close_clients() -> None:
    for client in _pool:
        await client.aclose()
    _pool.clear()


application = LeanRelay.as_asgi()
