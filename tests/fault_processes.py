"""What tests/test_faults.py starts and breaks: daphne processes of one site, a private
redis-server and a throwaway PostgreSQL cluster it can restart, and a websocket client that
behaves as the browser's socket does (it reconnects on any close and subscribes with
`since`).

Every process here is started by a context manager that stops it in its `finally`, so a
failing test leaves nothing running. Waits poll with a deadline.
"""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import websockets

from tests.e2e.conftest import ROOT, _free_port

DAPHNE = str(Path(sys.executable).parent / "daphne")
ACTIVE = ("pending", "streaming")


def unavailable(reason: str) -> None:
    """Skip, except under CI, where the PostgreSQL + Redis run must run every test."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"under CI this test must run: {reason}")
    pytest.skip(reason)


def wait_for(condition: Callable[[], Any], what: str, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.05)  # polling with a deadline
    return result


def _stop(process: subprocess.Popen, within: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(within)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(10)


# Redis


@dataclass
class RedisServer:
    """A redis-server of the test's own on a free port, keeping nothing on disk, which the
    test may restart: never the machine's shared one."""

    folder: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("needs redis-server on PATH (apt-get install redis-server)")
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 (fixed arguments)
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(self._answers, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(self.folder / 'redis.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    server = RedisServer(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# PostgreSQL


@dataclass
class PostgresCluster:
    """A throwaway cluster from initdb in a temporary folder, on a free port, trust auth;
    run as the `postgres` user when this process is root (initdb and postgres refuse root)."""

    folder: Path
    port: int = field(default_factory=_free_port)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        if os.geteuid() == 0:
            command = ("runuser", "-u", "postgres", "--", *command)
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)  # noqa: S603
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")

    def create(self) -> None:
        self._run("initdb", "-D", str(self.folder / "data"), "-U", "postgres", "--auth=trust", "-N")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        log = str(self.folder / "postgres.log")
        self._run(
            "pg_ctl", "-D", str(self.folder / "data"), "-o", options, "-l", log, "-w", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Skips (fails under CI) when the cluster cannot be made: no initdb, or no user to run
    it as. pytest's temporary folders are private to root, so this one is made apart."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        unavailable("needs PostgreSQL's initdb and pg_ctl on PATH")
    folder = Path(tempfile.mkdtemp(prefix="chat-faults-pg-"))
    cluster = PostgresCluster(folder)
    try:
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                unavailable("as root, needs runuser to run initdb as the postgres user")
            try:
                shutil.chown(folder, user="postgres")
            except LookupError:
                unavailable("as root, needs a `postgres` user to run initdb as")
        cluster.create()
        cluster.start()
        try:
            yield cluster
        finally:
            with contextlib.suppress(RuntimeError):  # already stopped by a failed restart
                cluster.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# The site


# Run in `manage.py shell`: a user, a signed-in session, and conversations with titles (so
# no title request takes a reply queued on the fake model server).
_SEED = """
import json
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from conversations.models import Conversation

user = get_user_model().objects.create_user("faults", password="a-long-test-password-7")
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
# The model backend: axes comes first in AUTHENTICATION_BACKENDS and signs no one in.
session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
ids = [
    Conversation.objects.create(owner=user, title=f"Faults {i}", model="mistral-small-latest").pk
    for i in range(COUNT)
]
print(json.dumps({"cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}", "ids": ids}))
"""


@dataclass
class Site:
    """One site's database and settings: a migrated database with a signed-in user and
    conversations; its processes are started with `daphne`."""

    env: dict[str, str]
    folder: Path
    cookie: str = ""
    conversations: list[int] = field(default_factory=list)

    @property
    def database(self) -> str:
        return self.env["DATABASE_URL"]

    def prepare(self, conversations: int) -> None:
        subprocess.run(  # noqa: S603 (fixed arguments)
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=self.env,
            check=True,
            timeout=120,
        )
        seeded = subprocess.run(  # noqa: S603 (fixed arguments)
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                _SEED.replace("COUNT", str(conversations)),
            ],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        seed = json.loads(seeded.stdout.strip().splitlines()[-1])
        self.cookie, self.conversations = seed["cookie"], seed["ids"]

    def conversation(self) -> int:
        """A conversation no test has used yet."""
        return self.conversations.pop()


def site_env(*, folder: Path, database: str, redis_url: str, model_url: str, **extra: str):
    return {
        **os.environ,
        "DATA_DIR": str(folder),
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "MISTRAL_BASE_URL": model_url,
        "MISTRAL_API_KEY": "test-key",
        "MISTRAL_MAX_RETRIES": "0",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "PYTHONUNBUFFERED": "1",
        # One user asks and stops a hundred times a minute here: the per-user limits
        # (tests/test_limits.py proves them) are off.
        "CHAT_QUESTIONS_PER_MINUTE": "0",
        "CHAT_ANSWERS_AT_ONCE": "0",
        "CHAT_CONVERSATIONS_PER_MINUTE": "0",
        **extra,
    }


@dataclass
class Daphne:
    """One daphne process of the site, started as deploy/chat@.service starts it."""

    name: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 (fixed arguments)
                [DAPHNE, "--proxy-headers", "-b", "127.0.0.1", "-p", str(self.port)]
                + ["chatsite.asgi:application"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_serving(self) -> None:
        wait_for(lambda: self.health() == 200, f"{self.name} serving /health", within=30)

    def health(self) -> int:
        """The status of GET /health, 0 when nothing answers."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.text()}")
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:  # noqa: S310
                return response.status
        except urllib.error.HTTPError as err:
            return err.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def daphnes(env: dict[str, str], folder: Path, *names: str) -> Iterator[list[Daphne]]:
    """The site's processes, started together and each waited for; all stopped after."""
    processes = [Daphne(name, env, folder / f"daphne-{name}.log") for name in names]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.wait_serving()
        yield processes
    finally:
        for process in processes:
            process.stop()


# Rows


async def answer_row(database: str, message_id: int) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(database) as connection:
        cursor = await connection.execute(
            "SELECT status, text, error_code FROM conversations_message WHERE id = %s",
            (message_id,),
        )
        status, text, error_code = await cursor.fetchone()
    return {"status": status, "text": text, "error_code": error_code}


async def active_answers(database: str) -> list[int]:
    """Answers left pending or streaming, in the whole site."""
    async with await psycopg.AsyncConnection.connect(database) as connection:
        cursor = await connection.execute(
            "SELECT id FROM conversations_message WHERE status IN ('pending', 'streaming')"
        )
        return [row[0] for row in await cursor.fetchall()]


# The browser's socket


class Tab:
    """One browser tab's socket to one daphne process, signed in with the session cookie.
    Frames are read in the background into `frames`; `texts` holds each answer's text as
    its deltas built it while it streamed, applied by `seq` as the page applies them (its
    ending is `ending()`). With `reconnect`, a
    closed socket is opened again after the page's backoff and subscribed with `since`."""

    def __init__(self, url: str, cookie: str, *, reconnect: bool = False) -> None:
        self.url = url.replace("http://", "ws://") + "/ws/chat/"
        self.cookie = cookie
        self.reconnect = reconnect
        self.frames: list[dict[str, Any]] = []
        self.texts: dict[int, str] = {}
        self.seqs: dict[int, int] = {}
        self.close_codes: list[int | None] = []
        self.connects = 0
        self.watching: int | None = None
        self._socket: Any = None
        self._reader: asyncio.Task | None = None
        self._changed = asyncio.Event()

    async def open(self) -> "Tab":
        await self._connect()
        self._reader = asyncio.create_task(self._read())
        return self

    async def close(self) -> None:
        self.reconnect = False
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close()

    async def _connect(self) -> None:
        self._socket = await websockets.connect(
            self.url,
            # The page's own origin, port included: the site checks all three.
            origin=urlsplit(self.url)._replace(scheme="http", path="").geturl(),
            additional_headers={"Cookie": self.cookie},
            open_timeout=5,
            max_size=None,
        )
        self.connects += 1

    async def _read(self) -> None:
        delay = 0.5
        while True:
            try:
                async for text in self._socket:
                    self._receive(json.loads(text))
            except websockets.ConnectionClosed:
                pass
            self.close_codes.append(self._socket.close_code)
            self._notify()
            if not self.reconnect or self._socket.close_code == 4401:
                return
            while True:  # as static/js/socket.js: 0.5 s doubling to 10 s
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                try:
                    await self._connect()
                    break
                except (OSError, websockets.InvalidHandshake, TimeoutError):
                    continue
            delay = 0.5
            if self.watching is not None:  # its answer, `subscribed`, is read by this loop
                since = self.newest()
                frame = {"type": "subscribe", "conversation": self.watching}
                await self.send(frame if since is None else {**frame, "since": since})

    def _receive(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        kind = frame["type"]
        if kind == "delta":
            message = frame["message"]
            if frame["seq"] == self.seqs.get(message, 0) + 1:
                self.texts[message] = self.texts.get(message, "") + frame["text"]
                self.seqs[message] = frame["seq"]
            elif frame["seq"] > self.seqs.get(message, 0) + 1:
                asyncio.get_running_loop().create_task(
                    self.send({"type": "resync", "message": message})
                )
        elif kind in ("message", "subscribed"):
            messages = [frame["message"]] if kind == "message" else frame["messages"]
            for message in messages:  # a live state: the text so far and its seq
                if message["role"] == "assistant" and message["status"] in ACTIVE:
                    self.texts[message["id"]] = message["text"]
                    self.seqs[message["id"]] = message.get("seq") or 0
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def newest(self) -> int | None:
        ids = [m["id"] for f in self.frames if f["type"] == "message" for m in [f["message"]]]
        ids += [m["id"] for f in self.frames if f["type"] == "subscribed" for m in f["messages"]]
        return max(ids, default=None)

    async def send(self, frame: dict[str, Any]) -> None:
        await self._socket.send(json.dumps(frame))

    async def subscribe(self, conversation: int, since: int | None = None) -> None:
        self.watching = conversation
        frame: dict[str, Any] = {"type": "subscribe", "conversation": conversation}
        if since is not None:
            frame["since"] = since
        seen = len(self.frames)
        await self.send(frame)
        await self.until(
            lambda: any(f["type"] == "subscribed" for f in self.frames[seen:]), "subscribed"
        )

    async def ask(self, conversation: int, text: str) -> int:
        """Send a question; returns its answer's id."""
        self.watching = conversation
        seen = len(self.frames)
        await self.send({"type": "send", "conversation": conversation, "text": text})

        def answer() -> int | None:
            for f in self.frames[seen:]:
                if f["type"] == "error":
                    raise AssertionError(f"the question was refused: {f}")
                if f["type"] == "message" and f["message"]["role"] == "assistant":
                    return f["message"]["id"]
            return None

        return await self.until(answer, "the answer's first frame")

    async def until(self, condition: Callable[[], Any], what: str, within: float = 10.0) -> Any:
        """Wait for frames until `condition()` holds (polled on each frame), with a deadline."""
        deadline = time.monotonic() + within
        while not (result := condition()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"not within {within} s: {what}; frames: {self.frames[-5:]}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return result

    def ending(self, message_id: int) -> dict[str, Any] | None:
        """The `message` frame that ended an answer, if one came."""
        for f in self.frames:
            if f["type"] == "message":
                candidates = [f["message"]]
            elif f["type"] == "subscribed":
                candidates = f["messages"]
            else:
                continue
            for m in candidates:
                if m["id"] == message_id and m["status"] not in ACTIVE:
                    return m
        return None

    async def ended(self, message_id: int, within: float = 10.0) -> dict[str, Any]:
        return await self.until(
            lambda: self.ending(message_id), f"the ending of answer {message_id}", within
        )
