"""A process's start and graceful stop, whatever server runs it (chatsite/process.py hooks
them into daphne).

Stop, on SIGTERM or SIGINT, as every deploy and restart sends it: the process takes no new
question (a tab that sends one is told to send it again in a moment, and reconnects to
another process), lets its running answers finish for up to CHAT_DRAIN_SECONDS, then ends
the rest as interrupted with all their text, sends every tab the answer's final frame, and
closes every socket with 4012 ("this server restarts"), on which browsers reconnect.
"""

import asyncio
import logging

from conversations.live import consumers, draining, generation, recovery
from conversations.tools import mcp_servers

logger = logging.getLogger(__name__)

# How long at most the interrupted answers' endings may take to be stored, after the drain.
ENDINGS_SECONDS = 10.0


async def process_start() -> None:
    """Before the first socket: answers left running by a process that died are marked."""
    await recovery.keeper_start()


async def process_drain(window: float) -> None:
    """Everything a process does between SIGTERM and its exit; see the module's docstring."""
    draining.drain_begin()
    running = generation.running_tasks()
    logger.warning(
        "Shutting down: %d answers running, waiting up to %.0f s for them", len(running), window
    )
    if running:  # no new one starts while draining
        await asyncio.wait(running, timeout=window)
    tasks = generation.generations_interrupt()
    if tasks:
        logger.warning(
            "Shutting down: %d answers did not end in time, kept as interrupted", len(tasks)
        )
        await asyncio.wait(tasks, timeout=ENDINGS_SECONDS)
    await consumers.tabs_close(consumers.CLOSE_RESTARTING)
    await mcp_servers.connections_close()
