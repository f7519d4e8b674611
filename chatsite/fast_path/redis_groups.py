"""A channel-layer group's members, read from Redis where channels_redis keeps them.

Channels has no API to ask who is in a group, and a group send costs four Redis round trips
even when nobody is in it. Most frames have no tab in another process to go to, so
`conversations/live/broadcast.py` reads the group first (one round trip) and sends only when
someone elsewhere listens (docs/performance.md).

Part of the fast path (chatsite/fast_path/__init__.py): while it is off, or the start-up
check did not find the layer's internals below, `group_members` answers None and broadcast
sends as a plain group send would.
"""

import time
from typing import Any

from channels_redis.core import RedisChannelLayer

from chatsite.fast_path import active


async def group_members(layer: Any, group: str) -> list[str] | None:
    """The channels in a group, read as channels_redis 4 stores it (a sorted set of channel
    names `specific.<process prefix>!<id>`, scored by when they joined, which its own
    group_send reads the same way); None for any other layer, or with this piece off."""
    if not active.redis_groups or not isinstance(layer, RedisChannelLayer):
        return None
    connection = layer.connection(layer.consistent_hash(group))
    members = await connection.zrangebyscore(
        layer._group_key(group), min=int(time.time()) - layer.group_expiry, max="+inf"
    )
    return [member.decode() for member in members]
