"""Answers left running by a process that died: marked interrupted, their text kept, so a
conversation never stays locked behind an answer nobody writes."""

import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings

from conversations.answers import message_interrupt_orphans
from conversations.live import broadcast

logger = logging.getLogger(__name__)

_recovered = False


async def ensure_recovered() -> None:
    """Once per process, before its first generation. With one process (the in-memory
    layer) every running row is an orphan; with several, only rows no live process has
    touched for a few save intervals."""
    global _recovered
    if _recovered:
        return
    _recovered = True
    quiet_for = (
        timedelta(seconds=settings.CHAT_SAVE_INTERVAL * 3 + 5)
        if broadcast.other_processes_listen()
        else timedelta(0)
    )
    count = await database_sync_to_async(message_interrupt_orphans)(quiet_for=quiet_for)
    if count:
        logger.warning("Marked %d answers left running by a stopped process as interrupted", count)
