"""Answers whose process died (kill -9, a crash, a lost machine): found by every other
process, at start-up and every few seconds, and marked interrupted with the text last
saved, so a conversation never stays locked behind an answer nobody writes. Tabs watching
them are told at once, in whichever process they are.

A running answer's row is its heartbeat: with several processes, its generation touches it
every CHAT_SAVE_INTERVAL even without new text (generation._flush_while_running). A row
quiet for longer than the take-over allows has no live owner. With one process there is no
other owner: at start-up every running row is an orphan, later every quiet one that does
not run here.
"""

import asyncio
import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings

from conversations.answers import message_interrupt_orphans
from conversations.live import broadcast, generation
from conversations.live.frames import message_data
from conversations.rendering import render_markdown

logger = logging.getLogger(__name__)

# This process's sweep and the event set once its first pass is over.
_keeper: tuple[asyncio.Task, asyncio.Event] | None = None


def sweep_timing() -> tuple[float, float]:
    """(quiet_for, period) in seconds: a dead process's answers are marked at most
    quiet_for + period after its last heartbeat, which CHAT_TAKEOVER_SECONDS bounds; quiet
    for at least three save intervals, so a live answer is never taken for dead."""
    takeover = settings.CHAT_TAKEOVER_SECONDS
    period = max(0.2, takeover / 4)
    return max(takeover - period, settings.CHAT_SAVE_INTERVAL * 3), period


async def keeper_start() -> None:
    """Start this process's sweep, once per event loop, and return after its first pass.
    Called at start-up under daphne (chatsite/lifecycle.py) and, for servers without a
    start-up hook, by each socket as it connects (then it is already running)."""
    global _keeper
    loop = asyncio.get_running_loop()
    if _keeper is None or _keeper[0].done() or _keeper[0].get_loop() is not loop:
        swept = asyncio.Event()
        _keeper = (loop.create_task(_keep(swept)), swept)
    await _keeper[1].wait()


async def _keep(swept: asyncio.Event) -> None:
    quiet_for, period = sweep_timing()
    # One process at start-up: nothing can be running anywhere yet.
    first_quiet = quiet_for if broadcast.other_processes_listen() else 0.0
    try:
        await _sweep_logged(first_quiet)
    finally:
        swept.set()
    while True:
        await asyncio.sleep(period)
        await _sweep_logged(quiet_for)


async def _sweep_logged(quiet_for: float) -> None:
    try:
        await sweep(quiet_for=quiet_for)
    except Exception as err:  # the database blinking: the next pass tries again
        logger.warning("Looking for answers of stopped processes failed: %r", err)


async def sweep(*, quiet_for: float) -> int:
    """Mark the answers quiet for `quiet_for` seconds, not running here, as interrupted,
    and tell their tabs. Returns how many were marked by this call."""
    rows = await database_sync_to_async(message_interrupt_orphans)(
        quiet_for=timedelta(seconds=quiet_for),
        running_here=generation.running_message_ids(),
    )
    for row in rows:
        data = message_data(row)
        if row.text and not row.html:
            data["html"] = render_markdown(row.text)
        await broadcast.conversation_publish(
            row.conversation_id, {"type": "message", "message": data}
        )
    if rows:
        logger.warning(
            "Marked %d answers left running by a stopped process as interrupted: %s",
            len(rows),
            ", ".join(str(row.pk) for row in rows),
        )
    return len(rows)
