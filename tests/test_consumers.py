"""The socket protocol's edges: who may connect, and what a bad frame gets back."""

import asyncio
import threading

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chatsite.asgi import application
from conversations.models import Conversation, Message
from tests.helpers import amessage_create, frames_until, is_final, require_fast_path

pytestmark = pytest.mark.django_db(transaction=True)


async def error_for(socket, raw: str) -> dict:
    await socket.send_to(text_data=raw)
    return (await frames_until(socket, lambda f: f["type"] == "error"))[-1]


async def test_anonymous_socket_is_closed_as_unauthenticated():
    communicator = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
    )
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}


async def test_socket_from_foreign_origin_is_refused(user):
    communicator = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[(b"origin", b"http://evil.example"), (b"host", b"127.0.0.1")],
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_malformed_json_gets_error_and_socket_stays_usable(user, open_socket, fake_mistral):
    socket = await open_socket(user)
    assert (await error_for(socket, "{not json"))["code"] == "bad_json"
    assert (await error_for(socket, "[1, 2]"))["code"] == "bad_json"
    await socket.send_to(
        text_data=orjson.dumps({"type": "send", "conversation": None, "text": "hi"}).decode()
    )
    frames = await frames_until(socket, lambda f: f["type"] == "message")
    assert frames[0]["type"] == "conversation"


async def test_frames_are_handled_while_the_database_thread_is_busy(user, open_socket):
    """A frame's handler starts at once, not after the database thread's queue: only its
    own database calls wait for that thread."""
    require_fast_path("consumer_dispatch")  # Channels' own dispatch waits for that thread
    socket = await open_socket(user)
    release = threading.Event()
    busy = asyncio.ensure_future(database_sync_to_async(release.wait)())
    try:
        assert (await error_for(socket, "{not json"))["code"] == "bad_json"
    finally:
        release.set()
        await busy


async def test_unknown_frame_type_gets_error(user, open_socket):
    socket = await open_socket(user)
    error = await error_for(socket, '{"type": "launch"}')
    assert error["code"] == "unknown_type"
    assert "launch" in error["message"]


async def test_wrongly_typed_field_gets_invalid(user, open_socket):
    socket = await open_socket(user)
    error = await error_for(socket, '{"type": "subscribe", "conversation": "12"}')
    assert error["code"] == "invalid"


async def test_empty_message_is_refused_and_nothing_stored(user, open_socket):
    socket = await open_socket(user)
    error = await error_for(socket, '{"type": "send", "conversation": null, "text": "  \\n "}')
    assert error["code"] == "empty_message"
    assert not await Conversation.objects.aexists()
    assert not await Message.objects.aexists()


async def test_oversized_message_is_refused_with_the_limit(user, open_socket, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    socket = await open_socket(user)
    frame = orjson.dumps({"type": "send", "conversation": None, "text": "x" * 101}).decode()
    error = await error_for(socket, frame)
    assert error["code"] == "too_long"
    assert "100" in error["message"]
    assert not await Message.objects.aexists()


async def test_oversized_frame_is_refused_before_parsing(user, open_socket):
    socket = await open_socket(user)
    error = await error_for(socket, '{"type": "send", "text": "' + "x" * 300_000 + '"}')
    assert error["code"] == "frame_too_large"


async def test_send_to_someone_elses_conversation_is_not_found(user, other_user, open_socket):
    theirs = await Conversation.objects.acreate(owner=other_user, model="m")
    socket = await open_socket(user)
    mine = await error_for(
        socket, orjson.dumps({"type": "send", "conversation": theirs.pk, "text": "hi"}).decode()
    )
    missing = await error_for(
        socket, orjson.dumps({"type": "send", "conversation": 999_999, "text": "hi"}).decode()
    )
    beyond_the_database = await error_for(  # past a 64-bit signed integer column
        socket, orjson.dumps({"type": "send", "conversation": 2**64 - 1, "text": "hi"}).decode()
    )
    assert mine == missing == beyond_the_database
    assert mine["code"] == "not_found"
    assert not await Message.objects.aexists()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "subscribe", "conversation": "THEIRS"},
        {"type": "stop", "conversation": "THEIRS"},
        {"type": "retry", "message": "THEIR_MESSAGE"},
        {"type": "resync", "message": "THEIR_MESSAGE"},
    ],
)
async def test_other_users_ids_are_not_found_for_every_frame(frame, user, other_user, open_socket):
    theirs = await Conversation.objects.acreate(owner=other_user, model="m")
    message = await amessage_create(
        conversation=theirs, role="assistant", text="secret", status="failed"
    )
    frame = {
        k: theirs.pk if v == "THEIRS" else message.pk if v == "THEIR_MESSAGE" else v
        for k, v in frame.items()
    }
    socket = await open_socket(user)
    error = await error_for(socket, orjson.dumps(frame).decode())
    assert error["code"] == "not_found"
    assert "secret" not in orjson.dumps(error).decode()
    await message.arefresh_from_db()
    assert message.text == "secret"
    assert message.status == "failed"


async def test_new_conversation_with_a_model_no_server_offers_is_refused(
    user, open_socket, fake_mistral
):
    socket = await open_socket(user)
    for model in ("mistral-huge-latest", "mistral-embed", "lab/llama3.2:1b", "x" * 400):
        frame = {"type": "send", "conversation": None, "text": "hi", "model": model}
        error = await error_for(socket, orjson.dumps(frame).decode())
        assert error["code"] == "unknown_model"
        assert model[:20] in error["message"]
    assert not await Conversation.objects.aexists()
    assert not await Message.objects.aexists()
    assert not [r for r in fake_mistral.requests if r.path.endswith("/chat/completions")]


async def test_new_conversation_with_a_listed_model_or_alias_is_accepted(
    user, open_socket, fake_mistral
):
    socket = await open_socket(user)
    for model in ("mistral-large-latest", "mistral-medium-3"):
        frame = {"type": "send", "conversation": None, "text": "hi", "model": model}
        await socket.send_to(text_data=orjson.dumps(frame).decode())
        frames = await frames_until(socket, lambda f: f["type"] in ("conversation", "error"))
        assert frames[-1]["type"] == "conversation"
        assert frames[-1]["conversation"]["model"] == model
        await frames_until(socket, is_final)
