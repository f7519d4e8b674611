"""Delivers frames to every open tab.

Tabs in this process get each frame directly from the generation, encoded once; the
channel layer carries it only to other processes (with REDIS_URL set), because a group
send per delta through the layer costs more than the rest of the relay together (see
docs/performance.md). User events (sidebar changes, session end) are rare and always go
through the layer, so sync views in any process can send them.
"""

import logging
import time
import uuid
from collections import defaultdict
from typing import Any, Protocol

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer
from redis.exceptions import RedisError

from chatsite.fast_path import redis_groups
from conversations.live.protocol import encode

logger = logging.getLogger(__name__)

# What a channel layer raises when it cannot take a message (full, or Redis unreachable).
LAYER_ERRORS = (ChannelFull, RedisError, OSError)

# Tells this process's own frames apart when they come back through the channel layer.
PROCESS_ID = uuid.uuid4().hex


class Tab(Protocol):
    async def send_frame(self, data: bytes) -> None: ...


_watchers: defaultdict[int, set[Tab]] = defaultdict(set)


def conversation_group(conversation_id: int) -> str:
    return f"conversation.{conversation_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def other_processes_listen() -> bool:
    """Only a shared layer (Redis) can reach another process."""
    return not isinstance(get_channel_layer(), InMemoryChannelLayer)


def watch(conversation_id: int, tab: Tab) -> None:
    _watchers[conversation_id].add(tab)


def unwatch(conversation_id: int, tab: Tab) -> None:
    tabs = _watchers.get(conversation_id)
    if tabs is not None:
        tabs.discard(tab)
        if not tabs:
            del _watchers[conversation_id]


async def conversation_publish(conversation_id: int, *frames: dict[str, Any]) -> None:
    """Send frames, in order, to every tab watching the conversation, in this and other
    processes. A frame the channel layer drops is not an error: the row is the truth, and
    a tab that misses a frame sees the gap in `seq` and asks for the state again."""
    encoded = [encode(frame) for frame in frames]
    tabs = _watchers.get(conversation_id)
    if tabs:
        for tab in tuple(tabs):
            for data in encoded:
                await tab.send_frame(data)
    if not other_processes_listen():
        return
    layer = get_channel_layer()
    # Deltas trust a lookup up to a second old; the rare frames (a question, an answer
    # beginning or ending) look again, so a tab elsewhere that has just subscribed gets
    # them: one read of the group's members costs less than a group send to nobody.
    # Frames published together share one look (a question and its answer: one Redis
    # round trip less before the model request).
    max_age = ELSEWHERE_CHECK_SECONDS if frames[0]["type"] == "delta" else 0.0
    try:
        if not await _watched_elsewhere(layer, conversation_id, max_age):
            return
        for data in encoded:
            await layer.group_send(
                conversation_group(conversation_id),
                {"type": "relay.frame", "origin": PROCESS_ID, "text": data.decode()},
            )
    except LAYER_ERRORS as err:
        logger.warning("Channel layer dropped a frame of conversation %s: %r", conversation_id, err)


# Whether a tab in another process watches a conversation, and when that was looked up.
# A group send costs four Redis round trips, and most frames have nobody elsewhere to go
# to; for deltas the group's members are read again at most every ELSEWHERE_CHECK_SECONDS,
# and at once when a tab elsewhere asks for an answer's live state.
ELSEWHERE_CHECK_SECONDS = 1.0
_elsewhere: dict[int, tuple[float, bool]] = {}


def forget_elsewhere(conversation_id: int) -> None:
    """A tab in another process has just started watching: look the group up again."""
    _elsewhere.pop(conversation_id, None)


async def _watched_elsewhere(layer: Any, conversation_id: int, max_age: float) -> bool:
    now = time.monotonic()
    known = _elsewhere.get(conversation_id)
    if known is not None and now - known[0] < max_age:
        return known[1]
    members = await redis_groups.group_members(layer, conversation_group(conversation_id))
    if members is None:
        return True  # a layer we cannot look into, or fast path off: send as a group send would
    own = f"specific.{layer.client_prefix}!"
    watched = any(not member.startswith(own) for member in members)
    if len(_elsewhere) > 10_000:
        _elsewhere.clear()
    _elsewhere[conversation_id] = (now, watched)
    return watched


async def user_publish(user_id: int, frame: dict[str, Any]) -> None:
    """Send a frame to every socket of a user (sidebar events)."""
    await get_channel_layer().group_send(
        user_group(user_id), {"type": "relay.frame", "origin": "", "text": encode(frame).decode()}
    )


async def user_sessions_end(user_id: int) -> None:
    """Close every socket of a user: logout, password change, deactivation."""
    await get_channel_layer().group_send(user_group(user_id), {"type": "session.end"})


user_publish_sync = async_to_sync(user_publish)
user_sessions_end_sync = async_to_sync(user_sessions_end)
