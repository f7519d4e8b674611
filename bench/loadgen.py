"""The load generator, as its own process so its CPU is measured apart from the server's:

    python -m bench.loadgen spec.json result.json

The spec (written by bench/run.py) lists phases, run in order:

- `app`: real signed-in websocket clients against daphne. Each client owns a conversation
  and `tabs` sockets of its user, all subscribed to it first; the first tab sends `send`,
  `rounds` times in a row, client i starting at `stagger * i / clients` seconds. Every tab
  records time to first token (from the `send` to its first `delta`), the gaps between
  deltas, the total time (to the final `message` frame), frames, characters and `seq`
  continuity, and checks its text against what the upstream sent.
- `direct`: the limit. Same clients, rounds and stagger, but each POSTs the same kind of
  chat body (`stream: true`, history included) to the fake model server over a raw
  keep-alive socket and reads the SSE itself: time to first token is to the first read
  carrying content, gaps are between such reads.
- `idle`: opens many signed-in sockets (each subscribed, as an open tab is) and reports the
  server's memory before and after.
- `page`: repeated GETs of a page with a session cookie (or POSTs of given form bodies in
  turn, with a CSRF cookie and header).

For every phase, the window from the first request to the last answer's end is timed,
and the CPU seconds of the server, the fake upstream, this process and any other process
families named in the spec (postgres, redis-server) over that window are read from /proc.
"""

import asyncio
import bisect
import contextlib
import http.client
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench import procstat, wsclient
from bench.fake_upstream import answer_tokens, parse_model

_ACTIVE = ("pending", "streaming")
# Phase kinds that run the app's clients against a baseline relay, bench/<kind>_relay.py,
# which (a) also runs: the lean prototype, and the same on the app's own transport.
BASELINES = ("lean", "floor")
TIMELINE_STEP = 0.1


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Expected:
    """What the upstream sends for a model: its tokens, and where each one ends in the text,
    so a partial text can be counted in whole tokens."""

    def __init__(self, model: str) -> None:
        shape = parse_model(model)
        if shape is None:
            raise ValueError(f"{model!r} is not a bench-… model name")
        self.shape = shape
        self.tokens = answer_tokens(shape.tokens)
        self.text = "".join(self.tokens)
        self.ends = []
        total = 0
        for token in self.tokens:
            total += len(token)
            self.ends.append(total)

    def tokens_in(self, text: str) -> int:
        """Whole tokens of the expected text that `text` delivered (up to the first wrong
        character)."""
        if text == self.text:
            return len(self.tokens)
        same = len(os.path.commonprefix([text, self.text]))
        return bisect.bisect_right(self.ends, same)


@dataclass
class Measure:
    """Everything recorded over one phase, all times in seconds."""

    ttft: list[float] = field(default_factory=list)
    ttft_other_tabs: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)
    answers: int = 0  # answers asked for, times tabs
    complete: int = 0  # ended complete with the full text
    frames: int = 0
    chars: int = 0
    chars_expected: int = 0
    tokens_expected: int = 0
    tokens_delivered: int = 0
    seq_gaps: int = 0
    seq_duplicates: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    # Tokens delivered per TIMELINE_STEP since `t0`, for the rate with every stream active,
    # which lies between the last stream's first request and the first stream's last end.
    t0: float = 0.0
    timeline: list[int] = field(default_factory=list)
    first_sends: list[float] = field(default_factory=list)
    last_ends: list[float] = field(default_factory=list)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def deliver(self, now: float, tokens: int) -> None:
        slot = int((now - self.t0) / TIMELINE_STEP)
        if slot >= len(self.timeline):
            self.timeline.extend([0] * (slot + 1 - len(self.timeline)))
        self.timeline[slot] += tokens

    def timing(self) -> dict[str, Any]:
        return {
            "timeline_step_s": TIMELINE_STEP,
            "timeline": self.timeline,
            "all_active_from_s": max(self.first_sends) - self.t0 if self.first_sends else None,
            "all_active_until_s": min(self.last_ends) - self.t0 if self.last_ends else None,
        }


class Resources:
    """CPU and memory readings of the processes a phase involves."""

    def __init__(self, spec: dict) -> None:
        self.pids = {"server": spec.get("server_pid"), "upstream": spec.get("upstream_pid")}
        self.families = spec.get("families", [])

    def read(self) -> dict[str, float]:
        out = {"loadgen": time.process_time()}
        for name, pid in self.pids.items():
            if pid:
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    out[name] = procstat.cpu_seconds(pid)
        for comm in self.families:
            out[comm] = procstat.family_cpu_seconds(comm)
        out["machine"] = procstat.machine_busy_seconds()
        return out

    def memory(self) -> dict[str, int]:
        pid = self.pids["server"]
        return procstat.memory_kb(pid) if pid else {}


def _cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per process over a window, and `others`: what the rest of the machine
    used meanwhile (another test run on the same cores shows up here)."""
    delta = {name: round(after[name] - before[name], 3) for name in after if name in before}
    machine = delta.pop("machine", None)
    if machine is not None:
        delta["others"] = round(max(0.0, machine - sum(delta.values())), 3)
    return delta


# The app path


@dataclass(slots=True)
class TabAnswer:
    sent_at: float
    sender: bool
    question_id: int | None = None
    answer_id: int | None = None
    first: float | None = None
    last: float = 0.0
    end: float | None = None
    frames: int = 0
    seq: int = 0
    chars: int = 0
    tokens: int = 0
    parts: list[str] = field(default_factory=list)
    status: str = ""
    final_text: str | None = None
    duration_ms: int | None = None
    error: str = ""


class Tab:
    """One socket of a client; its messages arrive through `on_message`."""

    def __init__(self, client: "AppClient", sender: bool) -> None:
        self.client = client
        self.sender = sender
        self.ws: wsclient.WebSocket | None = None
        self.answer: TabAnswer | None = None
        self.subscribed: asyncio.Future[None] | None = None

    def on_closed(self, _: asyncio.Future) -> None:
        """The server closed this socket: an answer it was receiving ends as an error."""
        answer = self.answer
        if answer is not None and answer.end is None and not answer.error:
            answer.error = f"socket_closed_{self.ws.close_code if self.ws else None}"
            self.client.tab_done()

    def on_message(self, opcode: int, text: str | bytes, now: float) -> None:
        frame = orjson.loads(text)
        kind = frame.get("type")
        answer = self.answer
        if kind == "delta":
            if answer is None or answer.end is not None:
                self.client.run.measure.error("delta_outside_answer")
                return
            if answer.answer_id is None:
                answer.answer_id = frame["message"]
            elif frame["message"] != answer.answer_id:
                self.client.run.measure.error("delta_for_other_message")
                return
            seq = frame["seq"]
            if seq != answer.seq + 1:
                if seq <= answer.seq:
                    self.client.run.measure.seq_duplicates += 1
                    return
                self.client.run.measure.seq_gaps += 1
            answer.seq = seq
            if answer.first is None:
                answer.first = now
            else:
                self.client.run.measure.gaps.append(now - answer.last)
            answer.last = now
            answer.frames += 1
            text = frame["text"]
            answer.parts.append(text)
            answer.chars += len(text)
            run = self.client.run
            tokens = bisect.bisect_right(run.expected.ends, answer.chars)
            if tokens > answer.tokens:
                run.measure.deliver(now, tokens - answer.tokens)
                answer.tokens = tokens
        elif kind == "message":
            message = frame["message"]
            if answer is None or answer.end is not None:
                return
            if message["role"] == "user":
                answer.question_id = message["id"]
            elif message["status"] in _ACTIVE:
                answer.answer_id = message["id"]
            elif message["id"] == answer.answer_id and not answer.error:
                answer.end = now
                answer.status = message["status"]
                answer.final_text = message["text"]
                answer.duration_ms = message.get("duration_ms")
                if message["status"] != "complete":
                    answer.error = f"status_{message['status']}_{message.get('error_code')}"
                self.client.tab_done()
        elif kind == "subscribed":
            if self.subscribed is not None and not self.subscribed.done():
                self.subscribed.set_result(None)
        elif kind == "error":
            code = frame.get("code", "?")
            if self.subscribed is not None and not self.subscribed.done():
                self.subscribed.set_exception(RuntimeError(f"subscribe refused: {code}"))
            elif answer is not None and answer.end is None and not answer.error:
                answer.error = f"error_frame_{code}"
                answer.end = now
                self.client.tab_done()
            else:
                self.client.run.measure.error(f"error_frame_{code}")


class AppClient:
    def __init__(self, run: "AppRun", index: int, cookie: str, conversation: int) -> None:
        self.run = run
        self.index = index
        self.cookie = cookie
        self.conversation = conversation
        self.tabs = [Tab(self, sender=i == 0) for i in range(run.tabs)]
        self.pending = 0
        self.done: asyncio.Future[None] | None = None

    def tab_done(self) -> None:
        self.pending -= 1
        if self.pending <= 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def open(self) -> None:
        for tab in self.tabs:
            tab.ws = await self.run.connect(self.cookie, tab.on_message)
            tab.ws.closed.add_done_callback(tab.on_closed)
            tab.subscribed = asyncio.get_running_loop().create_future()
            tab.ws.send_text(
                orjson.dumps({"type": "subscribe", "conversation": self.conversation}).decode()
            )
            async with asyncio.timeout(30):
                await tab.subscribed

    async def ask(self, round_no: int) -> None:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        self.pending = len(self.tabs)
        frame = orjson.dumps(
            {
                "type": "send",
                "conversation": self.conversation,
                "text": f"Question {round_no} from client {self.index}: how fast is the relay?",
            }
        ).decode()
        sent_at = time.perf_counter()
        for tab in self.tabs:
            tab.answer = TabAnswer(sent_at=sent_at, sender=tab.sender)
            if tab.ws.transport is None:  # closed by the server in an earlier round
                tab.answer.error = f"socket_closed_{tab.ws.close_code}"
                self.pending -= 1
        if round_no == 0:
            self.run.measure.first_sends.append(sent_at)
        if self.tabs[0].ws.transport is not None:
            self.tabs[0].ws.send_text(frame)
            try:
                async with asyncio.timeout(self.run.answer_timeout):
                    await self.done
            except TimeoutError:
                pass
        else:
            for tab in self.tabs:
                tab.answer.error = tab.answer.error or "sender_socket_closed"
        for tab in self.tabs:
            self.run.record(tab)
            tab.answer = None

    async def close(self) -> None:
        await asyncio.gather(
            *(tab.ws.close(timeout=5) for tab in self.tabs if tab.ws is not None),
            return_exceptions=True,
        )


class AppRun:
    def __init__(self, spec: dict, phase: dict) -> None:
        self.host = spec["host"]
        self.port = spec["port"]
        self.origin = f"http://{self.host}:{self.port}"
        self.tabs = phase.get("tabs", 1)
        self.rounds = phase.get("rounds", 1)
        self.stagger = phase.get("stagger", 0.0)
        self.think = phase.get("think", 0.0)
        self.answer_timeout = phase.get("answer_timeout", 120.0)
        self.connect_limit = asyncio.Semaphore(phase.get("connect_concurrency", 32))
        self.expected = Expected(phase["model"])
        self.measure = Measure()
        self.clients = [
            AppClient(self, i, c["cookie"], c["conversation"])
            for i, c in enumerate(phase["clients"])
        ]

    async def connect(self, cookie: str, on_message) -> wsclient.WebSocket:
        async with self.connect_limit:
            return await wsclient.connect(
                self.host,
                self.port,
                "/ws/chat/",
                origin=self.origin,
                cookie=cookie,
                on_message=on_message,
                timeout=30,
            )

    def record(self, tab: Tab) -> None:
        a = tab.answer
        m = self.measure
        m.answers += 1
        text = "".join(a.parts)
        m.frames += a.frames
        m.chars += len(text)
        m.chars_expected += len(self.expected.text)
        m.tokens_expected += len(self.expected.tokens)
        m.tokens_delivered += self.expected.tokens_in(text)
        if a.first is not None:
            (m.ttft if tab.sender else m.ttft_other_tabs).append(a.first - a.sent_at)
        error = a.error
        if a.end is None:
            closed = tab.ws is None or tab.ws.transport is None
            error = error or (f"socket_closed_{tab.ws.close_code}" if closed else "timeout")
        elif not error and text != self.expected.text:
            error = "text_mismatch"
        elif not error and a.final_text != self.expected.text:
            error = "final_text_mismatch"
        if error:
            m.error(error)
        else:
            m.complete += 1
            m.totals.append(a.end - a.sent_at)
        if tab.sender:
            m.records.append(
                {
                    "question": a.question_id,
                    "answer": a.answer_id,
                    "total_ms": round((a.end - a.sent_at) * 1000, 3) if a.end else None,
                    "duration_ms": a.duration_ms,
                    "ok": not error,
                }
            )

    async def open_all(self) -> None:
        """Connect and subscribe every tab; a client that cannot is left out, and its
        answers count as errors."""
        results = await asyncio.gather(*(c.open() for c in self.clients), return_exceptions=True)
        connected = []
        for client, result in zip(self.clients, results, strict=True):
            if isinstance(result, BaseException):
                lost = self.rounds * len(client.tabs)
                kind = f"connect_{type(result).__name__}"
                self.measure.answers += lost
                self.measure.errors[kind] = self.measure.errors.get(kind, 0) + lost
                await client.close()
            else:
                connected.append(client)
        if not connected:
            raise RuntimeError(f"no client could connect: {results[0]!r}")
        self.clients = connected

    async def run_client(self, client: AppClient, offset: float) -> None:
        if offset:
            await asyncio.sleep(offset)
        for round_no in range(self.rounds):
            await client.ask(round_no)
            if self.think:
                await asyncio.sleep(self.think)
        self.measure.last_ends.append(time.perf_counter())

    async def run(self) -> None:
        n = len(self.clients)
        await asyncio.gather(
            *(self.run_client(c, self.stagger * i / n) for i, c in enumerate(self.clients))
        )

    async def close_all(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)


# The direct path


class DirectStream(asyncio.Protocol):
    """One keep-alive connection to the model server, reading SSE as a lean client would."""

    def __init__(self, measure: "Measure | None" = None, ends: list[int] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.measure = measure
        self.ends = ends or []
        self._reset()

    def _reset(self) -> None:
        self.done: asyncio.Future[None] | None = None
        self.head = b""
        self.in_body = False
        self.raw = b""  # undecoded chunked body
        self.sse = b""  # decoded body not yet split into events
        self.parts: list[str] = []
        self.chars = 0
        self.tokens = 0
        self.first: float | None = None
        self.last = 0.0
        self.reads = 0
        self.saw_done = False
        self.end: float | None = None
        self.error = ""
        self.gaps: list[float] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)
        if self.done is not None and not self.done.done():
            self.error = self.error or "connection_lost"
            self.done.set_result(None)

    def request(self, *, host: str, port: int, body: bytes) -> asyncio.Future[None]:
        self._reset()
        self.done = asyncio.get_running_loop().create_future()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: text/event-stream\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer bench\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        return self.done

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.head[: self.head.find(b"\r\n")].split(b" ", 2)
            if status[1] != b"200":
                self._finish(f"http_{status[1].decode()}", now)
                return
            data = self.head[end + 4 :]
            self.in_body = True
        self.raw += data
        body, ended = self._dechunk()
        got = False
        if body:
            self.sse += body
            cut = self.sse.rfind(b"\n\n")
            if cut >= 0:
                events, self.sse = self.sse[:cut], self.sse[cut + 2 :]
                for event in events.split(b"\n\n"):
                    payload = event[6:] if event.startswith(b"data: ") else b""
                    if not payload:
                        continue
                    if payload == b"[DONE]":
                        self.saw_done = True
                        self.end = now
                        continue
                    choice = orjson.loads(payload)["choices"][0]
                    content = choice["delta"].get("content")
                    if content:
                        self.parts.append(content)
                        self.chars += len(content)
                        got = True
        if got:
            if self.measure is not None:
                tokens = bisect.bisect_right(self.ends, self.chars)
                if tokens > self.tokens:
                    self.measure.deliver(now, tokens - self.tokens)
                    self.tokens = tokens
            self.reads += 1
            if self.first is None:
                self.first = now
            else:
                self.gaps.append(now - self.last)
            self.last = now
        if ended:
            self._finish("" if self.saw_done else "no_done", now)

    def _dechunk(self) -> tuple[bytes, bool]:
        out = []
        raw = self.raw
        pos = 0
        ended = False
        while True:
            line_end = raw.find(b"\r\n", pos)
            if line_end < 0:
                break
            size = int(raw[pos:line_end].split(b";", 1)[0], 16)
            if size == 0:
                if len(raw) >= line_end + 4:
                    pos = line_end + 4
                    ended = True
                break
            if len(raw) < line_end + 2 + size + 2:
                break
            out.append(raw[line_end + 2 : line_end + 2 + size])
            pos = line_end + 2 + size + 2
        self.raw = raw[pos:]
        return b"".join(out), ended

    def _finish(self, error: str, now: float) -> None:
        self.error = error
        if self.end is None:
            self.end = now
        self.in_body = False
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


class DirectRun:
    def __init__(self, spec: dict, phase: dict) -> None:
        self.host = spec["host"]
        self.port = spec["upstream_port"]
        self.model = phase["model"]
        self.clients = len(phase["clients"])
        self.rounds = phase.get("rounds", 1)
        self.stagger = phase.get("stagger", 0.0)
        self.think = phase.get("think", 0.0)
        self.answer_timeout = phase.get("answer_timeout", 120.0)
        self.expected = Expected(self.model)
        self.measure = Measure()
        self.streams: list[DirectStream] = []

    async def open_all(self) -> None:
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(64)

        async def one() -> DirectStream:
            async with limit:
                _, stream = await loop.create_connection(
                    lambda: DirectStream(self.measure, self.expected.ends), self.host, self.port
                )
                return stream

        self.streams = list(await asyncio.gather(*(one() for _ in range(self.clients))))

    async def run_client(self, index: int, stream: DirectStream, offset: float) -> None:
        if offset:
            await asyncio.sleep(offset)
        history: list[dict[str, str]] = []
        m = self.measure
        for round_no in range(self.rounds):
            question = f"Question {round_no} from client {index}: how fast is the relay?"
            messages = [*history, {"role": "user", "content": question}]
            body = orjson.dumps({"model": self.model, "messages": messages, "stream": True})
            sent_at = time.perf_counter()
            if round_no == 0:
                m.first_sends.append(sent_at)
            if stream.transport is None:
                m.answers += 1
                m.error("connection_lost")
                continue
            done = stream.request(host=self.host, port=self.port, body=body)
            try:
                async with asyncio.timeout(self.answer_timeout):
                    await done
            except TimeoutError:
                stream.error = "timeout"
            text = "".join(stream.parts)
            m.answers += 1
            m.frames += stream.reads
            m.chars += len(text)
            m.chars_expected += len(self.expected.text)
            m.tokens_expected += len(self.expected.tokens)
            m.tokens_delivered += self.expected.tokens_in(text)
            m.gaps.extend(stream.gaps)
            if stream.first is not None:
                m.ttft.append(stream.first - sent_at)
            error = stream.error or ("" if text == self.expected.text else "text_mismatch")
            if error:
                m.error(error)
            else:
                m.complete += 1
                m.totals.append(stream.end - sent_at)
            history += [
                {"role": "user", "content": question},
                {"role": "assistant", "content": text},
            ]
            if self.think:
                await asyncio.sleep(self.think)
        m.last_ends.append(time.perf_counter())

    async def run(self) -> None:
        n = len(self.streams)
        await asyncio.gather(
            *(self.run_client(i, s, self.stagger * i / n) for i, s in enumerate(self.streams))
        )

    async def close_all(self) -> None:
        for stream in self.streams:
            if stream.transport is not None:
                stream.transport.close()


async def upstream_stats(host: str, port: int) -> dict[str, int]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET /bench/stats HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        return orjson.loads(await reader.readexactly(length))
    finally:
        writer.close()


async def streaming_phase(spec: dict, phase: dict) -> dict[str, Any]:
    kind = phase["kind"]
    if kind in BASELINES:  # the same clients against a baseline relay, its CPU as the server's
        relay = spec["relays"][kind]
        spec = {**spec, "port": relay["port"], "server_pid": relay["pid"]}
    run = DirectRun(spec, phase) if kind == "direct" else AppRun(spec, phase)
    resources = Resources(spec)
    idle = None
    try:
        if phase.get("measure_idle"):
            idle = {
                "sockets": len(phase["clients"]) * phase.get("tabs", 1),
                "errors": {},
                "streamed": True,  # the sockets stream before they close
            }
            idle["server_memory_kb"] = {"before": resources.memory()}
            opening = time.perf_counter()
        await run.open_all()
        if idle is not None:
            # The sockets are open and subscribed, nothing sent yet: an idle site's memory.
            idle["open_s"] = time.perf_counter() - opening
            idle["open"] = idle["sockets"]
            await asyncio.sleep(phase.get("idle_settle", 1.0))
            idle["server_memory_kb"]["after"] = resources.memory()
        print(f"::start {phase.get('name', kind)}", file=sys.stderr, flush=True)
        memory_before = resources.memory()
        upstream_before = await upstream_stats(spec["host"], spec["upstream_port"])
        cpu_before = resources.read()
        started = run.measure.t0 = time.perf_counter()
        await run.run()
        window = time.perf_counter() - started
        cpu_after = resources.read()
        upstream_after = await upstream_stats(spec["host"], spec["upstream_port"])
        memory_after = resources.memory()
    finally:
        await run.close_all()
    if idle is not None:
        await asyncio.sleep(phase.get("idle_settle", 1.0))
        idle["server_memory_kb"]["after_close"] = resources.memory()
    m = run.measure
    return {
        "idle": idle,
        "name": phase.get("name", kind),
        "kind": kind,
        "model": phase["model"],
        "clients": len(phase["clients"]),
        "tabs": 1 if kind == "direct" else phase.get("tabs", 1),
        "rounds": phase.get("rounds", 1),
        "stagger": phase.get("stagger", 0.0),
        "window_s": window,
        "cpu_s": _cpu_delta(cpu_before, cpu_after),
        "server_memory_kb": {"before": memory_before, "after": memory_after},
        "upstream": {k: upstream_after[k] - upstream_before.get(k, 0) for k in upstream_after},
        "ttft_s": m.ttft,
        "ttft_other_tabs_s": m.ttft_other_tabs,
        "gaps_s": m.gaps,
        "totals_s": m.totals,
        "answers": m.answers,
        "complete": m.complete,
        "frames": m.frames,
        "chars": m.chars,
        "chars_expected": m.chars_expected,
        "tokens_expected": m.tokens_expected,
        "tokens_delivered": m.tokens_delivered,
        "seq_gaps": m.seq_gaps,
        "seq_duplicates": m.seq_duplicates,
        "errors": m.errors,
        "records": m.records,
        **m.timing(),
    }


async def idle_phase(spec: dict, phase: dict) -> dict[str, Any]:
    """Open signed-in sockets, each subscribed to its conversation, and do nothing."""
    resources = Resources(spec)
    origin = f"http://{spec['host']}:{spec['port']}"
    limit = asyncio.Semaphore(phase.get("connect_concurrency", 32))
    sockets: list[wsclient.WebSocket] = []
    errors: dict[str, int] = {}

    async def one(client: dict) -> None:
        async with limit:
            try:
                ws = await wsclient.connect(
                    spec["host"], spec["port"], "/ws/chat/", origin=origin, cookie=client["cookie"]
                )
                sockets.append(ws)
                ws.send_text(
                    orjson.dumps(
                        {"type": "subscribe", "conversation": client["conversation"]}
                    ).decode()
                )
                async with asyncio.timeout(30):
                    _, text, _ = await ws.recv()
                if orjson.loads(text).get("type") != "subscribed":
                    errors["not_subscribed"] = errors.get("not_subscribed", 0) + 1
            except (
                OSError,
                TimeoutError,
                wsclient.HandshakeError,
                wsclient.ConnectionClosed,
            ) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    before = resources.memory()
    cpu_before = resources.read()
    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in phase["clients"]))
    opened = time.perf_counter() - started
    await asyncio.sleep(phase.get("idle_settle", 1.0))
    after = resources.memory()
    cpu_after = resources.read()
    open_count = sum(1 for ws in sockets if ws.transport is not None)
    await asyncio.gather(*(ws.close(timeout=5) for ws in sockets), return_exceptions=True)
    await asyncio.sleep(phase.get("idle_settle", 1.0))
    closed = resources.memory()
    return {
        "name": phase.get("name", "idle"),
        "kind": "idle",
        "sockets": len(phase["clients"]),
        "open": open_count,
        "open_s": opened,
        "errors": errors,
        "server_memory_kb": {"before": before, "after": after, "after_close": closed},
        "cpu_s": _cpu_delta(cpu_before, cpu_after),
    }


def _page_requests(
    host: str, port: int, path: str, headers: dict, count: int, bodies: list[str]
) -> tuple:
    """`count` GETs of `path`, or POSTs of `bodies` in turn (form-encoded) when given."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    times, sizes, statuses = [], [], []
    try:
        for n in range(count):
            started = time.perf_counter()
            if bodies:
                conn.request("POST", path, body=bodies[n % len(bodies)], headers=headers)
            else:
                conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            times.append(time.perf_counter() - started)
            sizes.append(len(body))
            statuses.append(response.status)
    finally:
        conn.close()
    return times, sizes, statuses


async def page_phase(spec: dict, phase: dict) -> dict[str, Any]:
    resources = Resources(spec)
    headers = {"Cookie": phase["cookie"], **phase.get("headers", {})}
    args = (spec["host"], spec["port"], phase["path"], headers)
    bodies = phase.get("bodies", [])
    await asyncio.to_thread(_page_requests, *args, phase.get("warmup", 3), bodies)
    cpu_before = resources.read()
    started = time.perf_counter()
    times, sizes, statuses = await asyncio.to_thread(
        _page_requests, *args, phase["requests"], bodies
    )
    window = time.perf_counter() - started
    cpu_after = resources.read()
    return {
        "name": phase.get("name", "page"),
        "kind": "page",
        "method": "POST" if bodies else "GET",
        "path": phase["path"],
        "requests": len(times),
        "times_s": times,
        "bytes": sizes[-1] if sizes else 0,
        "statuses": sorted(set(statuses)),
        "window_s": window,
        "cpu_s": _cpu_delta(cpu_before, cpu_after),
    }


async def main_async(spec: dict) -> dict[str, Any]:
    results = []
    for phase in spec["phases"]:
        kind = phase["kind"]
        if kind in ("app", "direct", *BASELINES):
            result = await streaming_phase(spec, phase)
        elif kind == "idle":
            result = await idle_phase(spec, phase)
        elif kind == "page":
            result = await page_phase(spec, phase)
        else:
            raise ValueError(f"unknown phase kind {kind!r}")
        results.append(result)
        print(_progress(result), file=sys.stderr, flush=True)
        if phase.get("pause"):
            await asyncio.sleep(phase["pause"])
    return {"phases": results}


def _progress(result: dict) -> str:
    if result["kind"] in ("app", "direct", *BASELINES):
        return (
            f"  {result['name']}: {result['complete']}/{result['answers']} complete, "
            f"{result['tokens_delivered']} tokens in {result['window_s']:.1f} s, "
            f"errors {result['errors'] or 'none'}"
        )
    if result["kind"] == "idle":
        return f"  {result['name']}: {result['open']}/{result['sockets']} open"
    return f"  {result['name']}: {result['requests']} requests"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.exit("usage: python -m bench.loadgen SPEC.json RESULT.json")
    raise_fd_limit()
    with open(argv[0], "rb") as f:
        spec = orjson.loads(f.read())
    result = asyncio.run(main_async(spec))
    with open(argv[1] + ".tmp", "wb") as f:
        f.write(orjson.dumps(result))
    os.replace(argv[1] + ".tmp", argv[1])


if __name__ == "__main__":
    main()
