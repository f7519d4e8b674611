"""Channel-layer events handled without Channels' hop to the database thread.

Channels 4.2+ runs `aclose_old_connections()` (a `sync_to_async` call, so a turn in the
database thread) before every handler of every event. Every database call of our consumers
goes through `database_sync_to_async`, which closes stale connections itself, in that thread,
around each call; the hop only made every frame from a tab wait its turn behind whatever the
database thread was doing before its handler could start (docs/performance.md: time to first
token halved through a group).

Part of the fast path (chatsite/fast_path/__init__.py): while it is off, or the start-up
check did not find Channels' dispatch as it was written for, events take Channels' own road.
"""

from typing import Any

from chatsite.fast_path import active

try:
    from channels.consumer import get_handler_name
except ImportError:  # the start-up check leaves this piece off; Channels' dispatch runs
    get_handler_name = None


class DirectDispatch:
    """Mixin for a Channels `AsyncConsumer` (before it in the bases): the same handler lookup
    as Channels' `dispatch`, without the hop."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        if not active.consumer_dispatch:
            await super().dispatch(message)  # type: ignore[misc]
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
