"""Several processes behind a load balancer share a Redis channel layer: frames reach tabs
in other processes, and Stop and resync reach the process that runs the answer.

One test process plays both sides: the "other process" is a raw channel in the group, or a
consumer told that the answer is not running locally.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import uuid

import orjson
import pytest
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

from chatsite.fast_path import redis_groups
from conversations.live import broadcast, consumers, control, generation
from conversations.live.frames import message_data
from conversations.models import Conversation, Message
from tests.fake_mistral import Reply
from tests.helpers import frames_until, is_final, require_fast_path

pytestmark = pytest.mark.django_db(transaction=True)

REDIS = ("127.0.0.1", 6379)


def redis_running() -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(REDIS) == 0


@pytest.fixture
async def redis_layer(settings):
    if not redis_running():
        pytest.skip("needs Redis on 127.0.0.1:6379 (the scale-out path)")
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [f"redis://{REDIS[0]}:{REDIS[1]}/15"],
                "prefix": f"test-{uuid.uuid4().hex[:8]}",
            },
        }
    }
    layer = get_channel_layer()
    yield layer
    # Everything using the layer stops before its connections close (a title being made
    # after an answer publishes through it too).
    tasks = [g.task for g in generation._running.values() if g.task] + list(generation._background)
    if control._control is not None:
        tasks.append(control._control[2])
    for task in tasks:
        task.cancel()
    # Bounded: a cancelled Redis read can hang on its socket (seen once in CI).
    await asyncio.wait(tasks, timeout=2) if tasks else None
    async with asyncio.timeout(5):
        await layer.close_pools()


def another_process_layer(layer):
    """A second channel layer on the same Redis, as another daphne process would have:
    its channel names carry its own prefix."""
    return type(layer)(hosts=layer.hosts, prefix=layer.prefix)


def send(text: str) -> str:
    return orjson.dumps({"type": "send", "conversation": None, "text": text}).decode()


async def test_frames_reach_tabs_in_other_processes(redis_layer, user, open_socket, fake_mistral):
    fake_mistral.enqueue(Reply.tokens(["far ", "away"]))
    conversation = await Conversation.objects.acreate(owner=user, model="m")
    other_process = another_process_layer(redis_layer)
    elsewhere = await other_process.new_channel()
    await other_process.group_add(broadcast.conversation_group(conversation.pk), elsewhere)
    tab = await open_socket(user)
    await tab.send_to(
        text_data=orjson.dumps(
            {"type": "send", "conversation": conversation.pk, "text": "hello over there"}
        ).decode()
    )
    await frames_until(tab, is_final)

    frames = []
    while not frames or not is_final(frames[-1]):
        event = await other_process.receive(elsewhere)
        assert event["type"] == "relay.frame"
        frames.append(orjson.loads(event["text"]))
    assert [f["message"]["role"] for f in frames if f["type"] == "message"][:2] == [
        "user",
        "assistant",
    ]
    assert "".join(f["text"] for f in frames if f["type"] == "delta") == "far away"
    assert frames[-1]["message"]["text"] == "far away"
    await other_process.close_pools()


async def test_deltas_stay_off_redis_when_no_other_process_watches(
    redis_layer, user, open_socket, fake_mistral, monkeypatch
):
    """One process with Redis: its own tabs get every frame directly, and with no tab in
    another process nothing goes through the layer, not even the rare frames."""
    require_fast_path("redis_groups")
    sent = []
    group_send = redis_layer.group_send

    async def counting_group_send(group, message):
        if group.startswith("conversation."):  # not the sidebar's user group
            sent.append(orjson.loads(message["text"])["type"])
        await group_send(group, message)

    monkeypatch.setattr(redis_layer, "group_send", counting_group_send)
    fake_mistral.enqueue(Reply.tokens([f"t{i} " for i in range(30)], interval=0.005))
    tab = await open_socket(user)
    await tab.send_to(text_data=send("only here"))
    frames = await frames_until(tab, is_final)

    assert len([f for f in frames if f["type"] == "delta"]) > 1
    assert [f["message"]["role"] for f in frames if f["type"] == "message"][:2] == [
        "user",
        "assistant",
    ]
    assert sent == []


async def test_a_question_and_its_answer_share_one_look_at_other_processes(
    redis_layer, user, open_socket, fake_mistral, monkeypatch
):
    """Whether a tab elsewhere watches is read from Redis before each rare frame; the
    question's and its empty answer's frames go out together, after one read."""
    require_fast_path("redis_groups")
    looks = []
    group_members = redis_groups.group_members

    async def counted(layer, group):
        looks.append(group)
        return await group_members(layer, group)

    monkeypatch.setattr(redis_groups, "group_members", counted)
    fake_mistral.enqueue(Reply.tokens(["one ", "two"]))
    tab = await open_socket(user)
    await tab.send_to(text_data=send("how many looks?"))
    frames = await frames_until(tab, is_final)

    assert [f["message"]["role"] for f in frames if f["type"] == "message"] == [
        "user",
        "assistant",
        "assistant",
    ]
    assert len(looks) == 2  # the question with its answer; the answer's end


async def test_stop_from_another_process_reaches_the_running_answer(
    redis_layer, user, open_socket, fake_mistral, monkeypatch
):
    gate = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["partial ", "never"], gate=gate))
    tab = await open_socket(user)
    await tab.send_to(text_data=send("stop me from afar"))
    first = await frames_until(tab, lambda f: f["type"] == "delta")
    conversation_id = first[0]["conversation"]["id"]
    answer = await Message.objects.aget(pk=first[-1]["message"])
    assert answer.worker == await control.worker_channel()

    # The tab that presses Stop lives in a process where the answer is not running.
    monkeypatch.setattr(consumers, "generation_stop", lambda conversation_id: False)
    monkeypatch.setattr(consumers, "running", lambda conversation_id: None)
    await tab.send_to(
        text_data=orjson.dumps({"type": "stop", "conversation": conversation_id}).decode()
    )
    final = (await frames_until(tab, is_final))[-1]["message"]
    gate.set()

    assert (final["status"], final["text"]) == ("stopped", "partial ")


async def test_tab_in_another_process_gets_the_live_state(
    redis_layer, user, open_socket, fake_mistral, monkeypatch
):
    gate = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["live ", "text"], gate=gate))
    tab = await open_socket(user)
    await tab.send_to(text_data=send("where are we"))
    first = await frames_until(tab, lambda f: f["type"] == "delta")
    conversation_id = first[0]["conversation"]["id"]

    # A tab served by another process only has the row as last saved...
    monkeypatch.setattr(consumers, "live_message_data", message_data)
    monkeypatch.setattr(consumers, "running", lambda conversation_id: None)
    other = await open_socket(user)
    await other.send_to(
        text_data=orjson.dumps({"type": "subscribe", "conversation": conversation_id}).decode()
    )
    frames = await frames_until(other, lambda f: f["type"] == "message")
    gate.set()

    # ...and the running process sends it the live text and seq right after.
    [saved] = frames[0]["messages"]
    live = frames[-1]["message"]
    assert saved["seq"] == 0
    assert (live["id"], live["text"], live["seq"], live["status"]) == (
        saved["id"],
        "live ",
        1,
        "streaming",
    )


def site_channel_layers(redis_url: str) -> dict:
    """CHANNEL_LAYERS as the site's settings build them for `redis_url`."""
    code = "import json, django; django.setup(); from django.conf import settings; "
    code += "print(json.dumps(settings.CHANNEL_LAYERS))"
    done = subprocess.run(  # noqa: S603 (fixed arguments)
        [sys.executable, "-c", code],
        env={**os.environ, "REDIS_URL": redis_url, "DJANGO_SETTINGS_MODULE": "chatsite.settings"},
        capture_output=True,
        check=True,
    )
    return json.loads(done.stdout)


async def test_an_idle_socket_outlives_the_redis_clients_read_timeout():
    """redis-py 8 gives up on a read after 5 s by default, as long as the layer's blocking
    pop waits for a message: every idle socket then closed with 1011 every few seconds.
    With the site's settings a receive on a quiet channel keeps waiting."""
    if not redis_running():
        pytest.skip("needs Redis on 127.0.0.1:6379 (the scale-out path)")
    config = site_channel_layers(f"redis://{REDIS[0]}:{REDIS[1]}/15")["default"]["CONFIG"]
    layer = RedisChannelLayer(**{**config, "prefix": f"test-{uuid.uuid4().hex[:8]}"})
    channel = await layer.new_channel()
    waiting = asyncio.create_task(layer.receive(channel))
    try:
        await asyncio.sleep(layer.brpop_timeout + 1.5)
        assert not waiting.done()
        await layer.send(channel, {"type": "still.here"})
        assert (await asyncio.wait_for(waiting, 5))["type"] == "still.here"
    finally:
        waiting.cancel()
        await layer.close_pools()


async def test_a_crowd_of_sockets_arriving_at_once_gets_redis_connections():
    """redis-py 8 refuses a 101st connection at once ("Too many connections") rather than
    waiting; a crowd of tabs connecting or leaving together needs more."""
    if not redis_running():
        pytest.skip("needs Redis on 127.0.0.1:6379 (the scale-out path)")
    config = site_channel_layers(f"redis://{REDIS[0]}:{REDIS[1]}/15")["default"]["CONFIG"]
    layer = RedisChannelLayer(**{**config, "prefix": f"test-{uuid.uuid4().hex[:8]}"})
    try:
        channels = [f"specific.crowd!{i}" for i in range(300)]
        await asyncio.gather(*(layer.group_add("crowd", channel) for channel in channels))
        await asyncio.gather(*(layer.group_discard("crowd", channel) for channel in channels))
    finally:
        await layer.close_pools()
