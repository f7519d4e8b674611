"""The floor: bench/lean_relay.py on the app's own transport, with nothing else to do.

    .venv/bin/daphne -p 8803 bench.floor_relay:application   # LEAN_UPSTREAM=http://127.0.0.1:8801

The same relay as the lean one, but reading the model server with
`conversations/modelservers/http_stream.py` and writing frames the way the app does
(`chatsite/fast_path/daphne_frames.py` on Twisted writes sent at once,
`chatsite/fast_path/twisted_writes.py`, as far as the start-up check and `CHAT_FAST_PATH`,
read from the environment as the app reads it, let them run).
What it costs per token is the transport alone (daphne, the event loop, a read and a write
per token, SSE and JSON); the app's CPU above it is what sign-in, persistence, rendering,
fan-out and its bookkeeping cost.
"""

from collections.abc import AsyncIterator

import environ
import orjson

from bench import lean_relay
from chatsite import fast_path
from chatsite.fast_path.daphne_frames import EXTENSION, DirectFrames
from conversations.modelservers import http_stream

fast_path.install(enabled=environ.Env().bool("CHAT_FAST_PATH", default=True))


class FloorRelay(lean_relay.LeanRelay):
    async def connect(self) -> None:
        # Looked up once, as the app does (chatsite/fast_path/daphne_frames.py; only under
        # daphne).
        self.direct = self.scope.get("extensions", {}).get(EXTENSION)
        await self.accept()

    async def write(self, frame: bytes) -> None:
        if self.direct is None or not self.direct(frame):
            await self.send(frame.decode())

    async def reads(self, question: str) -> AsyncIterator[bytes]:
        response = await http_stream.open_stream(
            "POST",
            f"{lean_relay.UPSTREAM}/v1/chat/completions",
            headers={"content-type": "application/json"},
            body=orjson.dumps(lean_relay.request_body(question)),
            connect_timeout=10,
            read_timeout=30,
        )
        try:
            while raw := await response.read():
                yield raw
        finally:
            response.close()


application = FloorRelay.as_asgi()
if fast_path.active.daphne_frames:
    application = DirectFrames(application)
