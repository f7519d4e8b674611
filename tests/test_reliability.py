"""Answers survive their process: orphans are taken over by a sweep every process runs, Stop
holds when its message is lost, a shutdown drains, and a database that blinks loses no text.

In one test process; the faults with real processes (kill -9, SIGTERM, Redis and PostgreSQL
restarts) are in tests/test_faults.py.
"""

import asyncio
import logging
import threading

import pytest
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.db import OperationalError

from conversations.answers import RESTARTED_TEXT, message_stop_request
from conversations.live import broadcast, control, draining, generation, recovery, shutdown
from conversations.live.consumers import CLOSE_RESTARTING
from conversations.models import Conversation, Message
from tests.fake_mistral import Reply
from tests.helpers import amessage_create, frames_until, is_final, until
from tests.test_generation import answer_of, ask, send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def several_processes(monkeypatch, settings):
    """As with REDIS_URL: rows are touched as heartbeats and Stop goes through the rows too
    (the in-memory layer carries the group sends)."""
    monkeypatch.setattr(broadcast, "other_processes_listen", lambda: True)
    settings.CHAT_SAVE_INTERVAL = 0.05
    settings.CHAT_TAKEOVER_SECONDS = 0.6


async def subscribe(socket, conversation_id: int) -> None:
    await socket.send_json_to({"type": "subscribe", "conversation": conversation_id})
    await frames_until(socket, lambda f: f["type"] == "subscribed")


async def closed_with(socket) -> int:
    """The close code of a socket, after whatever frames came before (titles)."""
    while True:
        output = await socket.receive_output(2)
        if output["type"] == "websocket.close":
            return output["code"]


async def test_an_answer_whose_process_died_is_taken_over_and_its_tabs_told(
    several_processes, user, open_socket, fake_mistral
):
    socket = await open_socket(user)  # this process's sweep runs from here on
    conversation = await Conversation.objects.acreate(owner=user, model="mistral-small-latest")
    await amessage_create(conversation=conversation, role="user", text="hello?")
    # Written by another process that then died: its heartbeats stop now.
    orphan = await amessage_create(
        conversation=conversation,
        role="assistant",
        text="Half **an** ans",
        status="streaming",
        worker="specific.dead!x",
    )
    await subscribe(socket, conversation.pk)

    ended = await frames_until(socket, is_final, within=3)
    message = ended[-1]["message"]
    assert (message["id"], message["status"], message["text"]) == (
        orphan.pk,
        "interrupted",
        "Half **an** ans",
    )
    assert message["error_text"] == RESTARTED_TEXT
    assert "<strong>an</strong>" in message["html"]
    # The conversation takes a new question at once.
    fake_mistral.enqueue(Reply.tokens(["Here ", "again."]))
    final = answer_of(await ask(socket, "and now?", conversation.pk))
    assert (final["status"], final["text"]) == ("complete", "Here again.")


async def test_a_live_answer_is_never_taken_for_dead(
    several_processes, user, open_socket, fake_mistral
):
    gate = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["slow ", "but alive"], gate=gate))
    socket = await open_socket(user)
    await socket.send_to(text_data=send("take your time"))
    await frames_until(socket, lambda f: f["type"] == "delta")
    await asyncio.sleep(1.5)  # more than twice the take-over, no new text meanwhile

    gate.set()
    final = answer_of(await frames_until(socket, is_final))
    assert (final["status"], final["text"]) == ("complete", "slow but alive")


async def test_with_one_process_its_own_quiet_answer_is_left_running(
    user, open_socket, fake_mistral, settings
):
    settings.CHAT_TAKEOVER_SECONDS = 0.4
    gate = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["waiting ", "long"], gate=gate))
    socket = await open_socket(user)
    await socket.send_to(text_data=send("wait"))
    await frames_until(socket, lambda f: f["type"] == "delta")
    await asyncio.sleep(1.0)  # rows are not touched with one process: quiet, yet alive

    gate.set()
    final = answer_of(await frames_until(socket, is_final))
    assert final["status"] == "complete"


async def test_stop_pressed_elsewhere_holds_when_its_message_is_lost(
    several_processes, user, open_socket, fake_mistral, monkeypatch, caplog
):
    gate = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["never ", "finished"], gate=gate))
    socket = await open_socket(user)
    await socket.send_to(text_data=send("go on"))
    delta = (await frames_until(socket, lambda f: f["type"] == "delta"))[-1]
    row = await Message.objects.aget(pk=delta["message"])
    assert row.worker  # the address another process would send Stop to

    # A tab in another process presses Stop, and the channel layer drops the message.
    async def full(channel, message):
        raise ChannelFull(channel)

    monkeypatch.setattr(get_channel_layer(), "send", full)
    with caplog.at_level(logging.WARNING, logger="conversations.live.control"):
        await control.stop_elsewhere(row)

    final = answer_of(await frames_until(socket, is_final, within=3))
    assert (final["status"], final["text"]) == ("stopped", "never ")
    assert "Could not send stop" in caplog.text
    gate.set()


async def test_stop_for_an_answer_that_has_ended_changes_nothing(user, fake_mistral, open_socket):
    fake_mistral.enqueue(Reply.tokens(["done"]))
    socket = await open_socket(user)
    final = answer_of(await ask(socket, "quick"))

    assert not await database_sync_to_async(message_stop_request)(message_id=final["id"])
    row = await Message.objects.aget(pk=final["id"])
    assert (row.status, row.stop_requested) == ("complete", False)


async def test_shutdown_drains_then_keeps_the_rest_as_interrupted(
    user, open_socket, fake_mistral, async_client
):
    gate = threading.Event()
    quick, slow = await open_socket(user), await open_socket(user)
    fake_mistral.enqueue(Reply.tokens(["fin", "ishes ", "in ", "time"], interval=0.1))
    await quick.send_to(text_data=send("quick one"))
    await frames_until(quick, lambda f: f["type"] == "delta")
    fake_mistral.enqueue(Reply.tokens(["too ", "slow"], gate=gate))
    await slow.send_to(text_data=send("slow one"))
    slow_delta = (await frames_until(slow, lambda f: f["type"] == "delta"))[-1]
    messages_before = await Message.objects.acount()

    # A window the quick answer (0.4 s of tokens) fits in even on a loaded machine.
    drain = asyncio.create_task(shutdown.process_drain(3.0))
    await until(draining.draining)
    # The load balancer sends no new tab here.
    health = await async_client.get("/health")
    assert (health.status_code, health.json()["draining"]) == (503, True)
    # No new question while draining: the tab is told, and nothing is stored.
    await quick.send_to(text_data=send("one more?"))
    refused = await frames_until(quick, lambda f: f["type"] == "error")
    assert refused[-1]["code"] == "restarting"

    finished = answer_of(await frames_until(quick, is_final))
    assert (finished["status"], finished["text"]) == ("complete", "finishes in time")
    kept = answer_of(await frames_until(slow, is_final, within=6))
    assert (kept["id"], kept["status"], kept["text"]) == (
        slow_delta["message"],
        "interrupted",
        "too ",
    )
    assert kept["error_text"] == RESTARTED_TEXT
    await drain
    for socket in (quick, slow):
        assert await closed_with(socket) == CLOSE_RESTARTING
    row = await Message.objects.aget(pk=kept["id"])
    assert (row.status, row.text) == ("interrupted", "too ")
    assert await Message.objects.acount() == messages_before
    gate.set()


async def test_a_database_that_blinks_loses_no_text(
    user, open_socket, fake_mistral, monkeypatch, caplog
):
    fails = {"progress": 2, "ending": 2}
    save, store = generation.message_progress_save, generation._endings_stored

    def blinking_save(**kwargs):
        if fails["progress"]:
            fails["progress"] -= 1
            raise OperationalError("server closed the connection unexpectedly")
        return save(**kwargs)

    async def blinking_store(ending):
        if fails["ending"]:
            fails["ending"] -= 1
            raise OperationalError("the database system is starting up")
        return await store(ending)

    monkeypatch.setattr(generation, "message_progress_save", blinking_save)
    monkeypatch.setattr(generation, "_endings_stored", blinking_store)
    fake_mistral.enqueue(Reply.tokens([f"w{i} " for i in range(20)], interval=0.02))
    socket = await open_socket(user)
    with caplog.at_level(logging.WARNING, logger="conversations.live.generation"):
        final = answer_of(await ask(socket, "keep it all"))

    whole = "".join(f"w{i} " for i in range(20))
    assert (final["status"], final["text"]) == ("complete", whole)
    row = await Message.objects.aget(pk=final["id"])
    assert (row.status, row.text) == ("complete", whole)
    assert fails == {"progress": 0, "ending": 0}
    assert "trying again" in caplog.text


async def test_the_sweep_survives_a_database_error(user, open_socket, monkeypatch, settings):
    settings.CHAT_TAKEOVER_SECONDS = 0.4
    calls = []

    def broken(**kwargs):
        calls.append(kwargs)
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(recovery, "message_interrupt_orphans", broken)
    await open_socket(user)  # the first pass failed, yet the socket is open
    await until(lambda: len(calls) >= 3, within=3)  # and it kept sweeping
