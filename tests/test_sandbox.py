"""conversations/parsers/sandbox.py: the child processes uploaded files are parsed in. A
file that runs past its time or memory is stopped there and the pool goes on; a child that
dies is replaced; nothing of a child outlives its parent; and the parent builds no object a
child sends."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conversations.parsers.errors import DocumentRejected
from conversations.parsers.sandbox import LimitReached, Sandbox, _PlainUnpickler
from tests import hostilefiles
from tests.fault_processes import wait_for

LIMITS = (500, 3_000_000, 50_000_000)  # pages, characters, unpacked bytes
MB = 2**20


@pytest.fixture
def sandbox():
    pool = Sandbox(workers=1, memory_bytes=512 * MB)
    yield pool
    pool.close()


def pages_of(pool: Sandbox, data: bytes, seconds: float = 10) -> list[str]:
    from conversations.parsers.documents import DOCX, Limits

    return pool.run("document_pages", "f.docx", data, DOCX, Limits(*LIMITS), seconds=seconds)


def hello() -> bytes:
    return hostilefiles.docx(
        hostilefiles.document_xml(b"<w:p><w:r><w:t>Hello there.</w:t></w:r></w:p>")
    )


def test_a_call_past_its_seconds_is_stopped_and_the_pool_goes_on(sandbox):
    slow = hostilefiles.docx_markup_at_the_limit(20_000_000)
    started = time.monotonic()
    with pytest.raises(LimitReached) as caught:
        pages_of(sandbox, slow, seconds=0.2)
    assert caught.value.limit == "seconds"
    assert time.monotonic() - started < 2
    # The killed child is replaced at once, before any file asks for it.
    wait_for(lambda: len(sandbox._idle) == 1 and sandbox._idle[0].alive, "a new child", 10)
    assert pages_of(sandbox, hello()) == ["Hello there."]


def test_a_call_past_its_memory_is_stopped_and_the_pool_goes_on():
    pool = Sandbox(workers=1, memory_bytes=40 * MB)
    try:
        with pytest.raises(LimitReached) as caught:
            pool.run("image_prepare", "big.png", hostilefiles.png(7000, 7000), 1540, seconds=20)
        assert caught.value.limit == "memory"
        assert pages_of(pool, hello()) == ["Hello there."]
    finally:
        pool.close()


def test_a_refusal_comes_back_as_the_same_error(sandbox):
    with pytest.raises(DocumentRejected) as caught:
        pages_of(sandbox, hostilefiles.docx_billion_laughs())
    assert caught.value.code == "xml_entities"
    assert caught.value.message.startswith("f.docx: ")


def test_a_child_killed_while_idle_is_replaced(sandbox):
    assert pages_of(sandbox, hello()) == ["Hello there."]
    (child,) = sandbox._idle
    os.kill(child.process.pid, signal.SIGKILL)
    child.process.wait()
    assert pages_of(sandbox, hello()) == ["Hello there."]
    assert sandbox._count == 1


def test_the_parent_builds_no_object_a_child_sends():
    reply = pickle.dumps(("ok", Path("/etc/passwd")))
    with pytest.raises(pickle.UnpicklingError, match="sent an object"):
        _PlainUnpickler(__import__("io").BytesIO(reply)).load()
    plain = pickle.dumps(("ok", [b"png", "text", 3, None, {"a": (1.5,)}]))
    assert _PlainUnpickler(__import__("io").BytesIO(plain)).load()[1][4] == {"a": (1.5,)}


def test_children_end_with_their_parent_even_when_it_is_killed():
    """A parent that dies without cleaning up (SIGKILL, a crash) closes the children's
    pipe, and they end."""
    script = textwrap.dedent(
        """
        import os, sys
        from conversations.parsers.sandbox import Sandbox
        pool = Sandbox(workers=2, memory_bytes=256 * 2**20)
        pool.start()
        print(" ".join(str(c.process.pid) for c in pool._idle), flush=True)
        sys.stdin.read()
        """
    )
    with subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
        text=True,
    ) as parent:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_running(pid) for pid in pids)
        parent.kill()
    # Polled with a deadline: a process's end can only be watched by its parent, not here.
    wait_for(lambda: not any(_running(pid) for pid in pids), "the children's end", 10)


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not reaped by its adopter yet,
    is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
