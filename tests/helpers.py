"""Waiting on sockets and rows with a deadline, never a fixed sleep."""

import asyncio
import time

import orjson
import pytest
from channels.db import database_sync_to_async

from chatsite import fast_path


def require_fast_path(piece: str) -> None:
    """Skip a test of one piece of the fast path in a run where it is off
    (CHAT_FAST_PATH=false); the ASGI app decides that when it is built."""
    import chatsite.asgi  # noqa: F401

    if not getattr(fast_path.active, piece):
        pytest.skip(f"the fast path's {piece} is off in this run")


async def frames_until(communicator, predicate, *, within: float = 5.0) -> list[dict]:
    """Receive frames until one satisfies `predicate`; return all received, in order."""
    frames = []
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching frame within {within}s; got {frames!r}")
        frame = orjson.loads(await communicator.receive_from(timeout=remaining))
        frames.append(frame)
        if predicate(frame):
            return frames


def is_final(frame: dict) -> bool:
    """The `message` frame that ends an answer."""
    return (
        frame["type"] == "message"
        and frame["message"]["role"] == "assistant"
        and frame["message"]["status"] not in ("pending", "streaming")
    )


async def until(check, *, within: float = 5.0, interval: float = 0.01):
    """Poll a sync callable (run in a thread, for the ORM) until it returns a truthy value."""
    deadline = time.monotonic() + within
    while True:
        result = await database_sync_to_async(check)()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


def streamed_text(frames: list[dict], message_id: int) -> str:
    """The text a tab assembles from deltas, asserting seq runs without gaps or repeats."""
    deltas = [f for f in frames if f["type"] == "delta" and f["message"] == message_id]
    seqs = [f["seq"] for f in deltas]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True
    return "".join(f["text"] for f in deltas)


async def frames_during(communicator, seconds: float) -> list[dict]:
    """Every frame that arrives within the next `seconds` (to show that nothing more came)."""
    frames = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            frames.append(orjson.loads(await communicator.receive_from(timeout=remaining)))
        except TimeoutError:
            break
    return frames


def message_create(**fields):
    """A message row made as the app makes them: after the conversation's newest message
    (its parent), unless `parent` is given. Tests build conversations row by row."""
    from conversations.models import Message

    if "parent" not in fields and "parent_id" not in fields:
        conversation = fields["conversation"]
        fields["parent"] = Message.objects.filter(conversation=conversation).order_by("id").last()
    return Message.objects.create(**fields)


def link_in_order(conversation_id: int) -> None:
    """Give rows made with bulk_create their parents: each follows the one before it."""
    from conversations.models import Message

    previous = None
    for message in Message.objects.filter(conversation_id=conversation_id).order_by("id"):
        Message.objects.filter(pk=message.pk).update(parent=previous)
        previous = message


async def amessage_create(**fields):
    """message_create, awaited."""
    return await database_sync_to_async(message_create)(**fields)
