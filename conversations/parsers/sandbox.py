"""A pool of pre-started child processes that parse uploaded files, one call at a time
each, under limits the process that asks cannot enforce on itself.

Why processes: a parser is C code (PDFium, libjpeg, libheif, libxml2) fed a stranger's
bytes. In a thread of the web process, a decompression bomb grows the web process by
gigabytes and a pathological file holds a core for minutes with no way to stop it. A child
has an address-space limit (RLIMIT_AS, set by the child over what its imports already
mapped), a CPU-time limit renewed for each call (RLIMIT_CPU), and a wall-clock deadline
kept here: past it the child is killed and replaced. Whatever a file does, the caller gets
an answer within the deadline and the caller's memory stays where it was.

Why pre-started: a child imports Pillow, PDFium and lxml once (a few hundred ms), so an
image upload pays only the pipe (a few ms for a 4 MB photo), not the start.

The wire is a length-prefixed pickle each way over the child's stdin and stdout. The child
only ever sends plain values (bytes, str, numbers, tuples, lists, dicts, None), and they
are unpickled here by an unpickler that refuses every class: a child subverted by a file
cannot make this process build an object.
"""

import contextlib
import io
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from conversations.parsers.errors import REJECTIONS

_HEADER = struct.Struct("!Q")
# The folder `conversations` is in, so `python -m conversations.parsers.child` finds it
# whatever the parent's working directory.
_ROOT = Path(__file__).resolve().parents[2]


class LimitReached(Exception):
    """The file reached a limit of the sandbox: `limit` is "seconds" or "memory"."""

    def __init__(self, limit: str) -> None:
        super().__init__(limit)
        self.limit = limit


class ParserFailed(Exception):
    """The parser broke on the file in a way that is not a refusal (a crash, or an error
    of ours); the detail is for the log, not for people."""


class Sandbox:
    """Up to `workers` children, started when first needed (or by start()), each allowed
    `memory_bytes` of address space over its own start-up. A call waits for a free child,
    then has `seconds` of wall-clock time and of CPU time."""

    def __init__(self, *, workers: int, memory_bytes: int) -> None:
        self.workers = max(1, workers)
        self.memory_bytes = memory_bytes
        self._idle: list[_Child] = []
        self._count = 0
        self._free = threading.Condition()
        self._closed = False

    def start(self) -> None:
        """Start every child now, so the first upload does not wait for one."""
        while True:
            with self._free:
                if self._count >= self.workers or self._closed:
                    return
                self._count += 1
            self._give_back(self._new_child())

    def run(self, task: str, *args: Any, seconds: float) -> Any:
        """Run `task` (a name in child.TASKS) on `args` in a child and return its result.
        Raises the child's Rejected as is, LimitReached when the call ran out of time or
        memory, and ParserFailed when the child died or broke otherwise."""
        child = self._take()
        try:
            return child.call(task, args, seconds)
        finally:
            self._give_back(child)

    def close(self) -> None:
        """Stop every idle child (a busy one stops when its call ends)."""
        with self._free:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for child in idle:
            child.stop()

    def _take(self) -> "_Child":
        with self._free:
            while not self._idle and self._count >= self.workers:
                self._free.wait()
            while self._idle:
                child = self._idle.pop()
                if child.process.poll() is None:
                    return child
                child.stop()  # died while idle (killed by hand, or the OOM killer)
                self._count -= 1
            self._count += 1
        return self._new_child()

    def _new_child(self) -> "_Child":
        """A new child, counted already; the count is given back if it cannot start."""
        try:
            return _Child(self.memory_bytes)
        except OSError as err:  # no process could be made (out of pids, of memory)
            with self._free:
                self._count -= 1
                self._free.notify()
            raise ParserFailed(f"a parser process could not start: {err}") from None
        except BaseException:
            with self._free:
                self._count -= 1
                self._free.notify()
            raise

    def _give_back(self, child: "_Child") -> None:
        with self._free:
            replace = not child.alive and not self._closed
            if child.alive and not self._closed:
                self._idle.append(child)
            else:
                self._count -= 1
                child.stop()
            self._free.notify()
        if replace:
            # A child killed at a limit is replaced now, in the background, so the next
            # file does not wait for a start-up.
            threading.Thread(target=self._refill, name="parsers-refill", daemon=True).start()

    def _refill(self) -> None:
        with contextlib.suppress(ParserFailed):
            self.start()


class _Child:
    """One child process and its two pipes."""

    def __init__(self, memory_bytes: int) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "conversations.parsers.child", str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=_ROOT,
            close_fds=True,
        )
        self.alive = True
        # The child says it is ready (its imports done and its limits set) before its first
        # call, so a call's deadline never includes the start-up.
        if self._receive(deadline=time.monotonic() + 60) != ("ready",):
            self.stop()
            raise ParserFailed("a parser process did not start")

    def call(self, task: str, args: tuple, seconds: float) -> Any:
        payload = pickle.dumps((task, args, seconds), protocol=5)
        try:
            self.process.stdin.write(_HEADER.pack(len(payload)))
            self.process.stdin.write(payload)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            self.stop()
            raise ParserFailed("the parser process had died") from None
        reply = self._receive(deadline=time.monotonic() + seconds)
        kind = reply[0]
        if kind == "ok":
            return reply[1]
        if kind == "rejected":
            _, cls, code, message = reply
            raise REJECTIONS.get(cls, REJECTIONS["Rejected"])(code, message)
        if kind == "limit":  # the child ran out of memory and exits
            self.stop()
            raise LimitReached(reply[1])
        raise ParserFailed(str(reply[1]))

    def _receive(self, *, deadline: float) -> tuple:
        """The child's next message; kills the child past `deadline`, and says which limit
        a child that died had reached."""
        try:
            header = self._read(_HEADER.size, deadline)
            body = self._read(_HEADER.unpack(header)[0], deadline)
        except TimeoutError:
            self.stop()
            raise LimitReached("seconds") from None
        except EOFError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)  # it closed its end as it died
            returncode = self.stop()
            if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
                raise LimitReached("seconds") from None
            if returncode == -signal.SIGABRT:  # C code that cannot allocate aborts
                raise LimitReached("memory") from None
            raise ParserFailed(f"the parser process died (exit status {returncode})") from None
        return _PlainUnpickler(io.BytesIO(body)).load()

    def _read(self, size: int, deadline: float) -> bytes:
        fd = self.process.stdout.fileno()
        chunks: list[bytes] = []
        left = size
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def stop(self) -> int | None:
        """Kill the child (if it still runs) and reap it; its exit status."""
        self.alive = False
        if self.process.returncode is None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        return self.process.returncode


class _PlainUnpickler(pickle.Unpickler):
    """Builtin values only: any class or function in the stream is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a parser process sent an object ({module}.{name})")
