"""Requests between processes about a running answer, beside the fan-out that carries its
frames: a tab served by one process can Stop an answer running in another, or ask it for
the answer's live state. Each process reads its own channel on the channel layer (the
address stored on the answer's row as `worker`); with one process there is none.
"""

import asyncio
import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from conversations.answers import message_stop_request
from conversations.live import broadcast, generation
from conversations.live.frames import message_data
from conversations.live.protocol import encode
from conversations.models import Message

logger = logging.getLogger(__name__)

# (loop, channel name, task serving it), see worker_channel().
_control: tuple[asyncio.AbstractEventLoop, str, asyncio.Task] | None = None


async def worker_channel() -> str:
    """This process's address for Stop and resync requests from tabs in other processes,
    served by a task reading it; "" when there is only one process."""
    global _control
    if not broadcast.other_processes_listen():
        return ""
    loop = asyncio.get_running_loop()
    if _control is None or _control[0] is not loop or _control[2].done():
        layer = get_channel_layer()
        # The prefix every consumer uses: see channels_redis receive().
        channel = await layer.new_channel()
        _control = (loop, channel, asyncio.create_task(_serve(layer, channel)))
    return _control[1]


async def _serve(layer: Any, channel: str) -> None:
    while True:
        try:
            request = await layer.receive(channel)
        except broadcast.LAYER_ERRORS as err:
            logger.warning("Reading this process's control channel failed: %r", err)
            await asyncio.sleep(1)
            continue
        gen = generation.running(request["conversation"])
        if gen is None or gen.message_id != request["message"]:
            continue
        if request["type"] == "generation.stop":
            generation.generation_stop(gen.conversation_id)
        elif request["type"] == "generation.state":
            broadcast.forget_elsewhere(gen.conversation_id)  # its next delta goes there too
            frame = {"type": "message", "message": {**request["row"], **gen.live_state()}}
            with contextlib.suppress(*broadcast.LAYER_ERRORS):  # the tab will ask again
                await layer.send(
                    request["reply_to"],
                    {"type": "relay.frame", "origin": "", "text": encode(frame).decode()},
                )


async def stop_elsewhere(message: Message) -> None:
    """Stop an answer running in another process: recorded on its row, which that process
    reads at its next save (so Stop holds when the message below is lost), and sent to it
    at once."""
    if await database_sync_to_async(message_stop_request)(message_id=message.pk):
        await remote_request(message, "stop")


async def remote_request(message: Message, kind: str, *, reply_to: str = "") -> None:
    """Ask the process running an answer elsewhere to stop it ("stop"), or to send its
    live state to a tab's channel ("state"). A request the channel layer cannot take is
    logged: a Stop still holds through the row's flag, a tab asks for the state again."""
    if not message.worker:
        return
    request: dict[str, Any] = {
        "type": f"generation.{kind}",
        "conversation": message.conversation_id,
        "message": message.pk,
    }
    if kind == "state":
        request.update(reply_to=reply_to, row=message_data(message))
    try:
        await get_channel_layer().send(message.worker, request)
    except broadcast.LAYER_ERRORS as err:
        logger.warning(
            "Could not send %s for answer %s to its process: %r%s",
            kind,
            message.pk,
            err,
            "; it stops at its next save" if kind == "stop" else "",
        )
