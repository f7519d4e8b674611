"""Uploaded files parsed in this process's sandbox (parsers/sandbox.py), sized and limited
by the settings: CHAT_PARSE_WORKERS children, CHAT_PARSE_MEMORY_MB each, CHAT_PARSE_SECONDS
per file. A limit reached, or a parser broken by a file, becomes a refusal that names the
file and the limit, of the kind the caller reads (document or image)."""

import atexit
import logging
import threading
from typing import Any

from django.conf import settings

from conversations.parsers.errors import Rejected
from conversations.parsers.sandbox import LimitReached, ParserFailed, Sandbox

logger = logging.getLogger(__name__)

_sandbox: Sandbox | None = None
_lock = threading.Lock()


def sandbox() -> Sandbox:
    """This process's sandbox, made again when its settings changed (tests change them)."""
    global _sandbox
    workers, memory = settings.CHAT_PARSE_WORKERS, settings.CHAT_PARSE_MEMORY_MB * 2**20
    with _lock:
        if _sandbox is None or (_sandbox.workers, _sandbox.memory_bytes) != (workers, memory):
            if _sandbox is not None:
                _sandbox.close()
            _sandbox = Sandbox(workers=workers, memory_bytes=memory)
        return _sandbox


@atexit.register
def _close() -> None:
    """The children end with this process: at once, rather than when they see the pipe
    close, so nothing outlives it."""
    if _sandbox is not None:
        _sandbox.close()


def sandbox_start() -> None:
    """Start the sandbox's children in a thread of their own: at a process's start, so the
    first upload does not wait for them, and without holding the start-up."""

    def start() -> None:
        try:
            sandbox().start()
        except Exception:
            logger.exception("The parsers' processes did not start; they start at first use")

    threading.Thread(target=start, name="parsers-start", daemon=True).start()


def parse(
    task: str, *args: Any, name: str, rejected: type[Rejected], seconds: float | None = None
) -> Any:
    """Run a parser task (parsers/child.TASKS) on a file called `name`, with at most
    `seconds` (CHAT_PARSE_SECONDS when not given). Raises `rejected` naming the file and
    the limit it reached, or the parser's own refusal."""
    limit = settings.CHAT_PARSE_SECONDS
    try:
        return sandbox().run(task, *args, seconds=limit if seconds is None else seconds)
    except LimitReached as err:
        if err.limit == "seconds":
            raise rejected(
                "too_slow",
                f"{name}: reading it took longer than {limit:g} seconds, the limit; it was "
                "stopped.",
            ) from None
        raise rejected(
            "too_much_memory",
            f"{name}: reading it needed more than {settings.CHAT_PARSE_MEMORY_MB:,} MB of "
            "memory, the limit; it was stopped.",
        ) from None
    except ParserFailed as err:
        logger.error("A parser broke on an upload (%s): %s", task, err)
        raise rejected(
            "unreadable", f"{name}: the file could not be read; the reader broke on it."
        ) from None
