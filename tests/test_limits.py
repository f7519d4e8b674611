"""The per-user limits at their default values: each refusal says why and when to try
again, stores nothing and asks no model server; rows another process wrote count too."""

import re
from datetime import timedelta

import orjson
import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from chatsite import settings as site_defaults
from conversations.limits import LimitReached
from conversations.models import Attachment, Conversation, Document, Message, Upload
from conversations.services import Question, questions_submit
from tests import imagefiles
from tests.fake_mistral import Reply
from tests.helpers import amessage_create, frames_until, is_final

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def default_limits(settings):
    """The limits as a fresh install has them (tests/conftest.py turns them off)."""
    for name in (
        "CHAT_QUESTIONS_PER_MINUTE",
        "CHAT_ANSWERS_AT_ONCE",
        "CHAT_CONVERSATIONS_PER_MINUTE",
        "CHAT_UPLOADS_PER_DAY",
        "CHAT_UPLOAD_BYTES_PER_DAY",
    ):
        value = getattr(site_defaults, name)
        assert value > 0, f"{name} is off by default"
        setattr(settings, name, value)
    return settings


def send(conversation, text: str) -> str:
    return orjson.dumps({"type": "send", "conversation": conversation, "text": text}).decode()


def wait_in(message: str) -> int:
    return int(re.search(r"Try again in (\d+) s", message).group(1))


@database_sync_to_async
def conversation_with_questions(user, count: int, *, age: timedelta = timedelta(0)):
    conversation = Conversation.objects.create(owner=user, model="mistral-small-latest")
    Message.objects.bulk_create(
        Message(conversation=conversation, role=Message.Role.USER, text=f"q{i}")
        for i in range(count)
    )
    if age:
        age_rows(conversation, age)
    return conversation


def age_rows(conversation, age: timedelta) -> None:
    then = timezone.now() - age
    Message.objects.filter(conversation=conversation).update(created_at=then)
    Conversation.objects.filter(pk=conversation.pk).update(created_at=then, updated_at=then)


def asked(fake_mistral, text: str) -> bool:
    return any(text in orjson.dumps(r.json).decode() for r in fake_mistral.requests if r.json)


async def test_questions_over_the_minute_limit_are_refused_until_the_window_passes(
    user, open_socket, fake_mistral, default_limits
):
    limit = default_limits.CHAT_QUESTIONS_PER_MINUTE
    conversation = await conversation_with_questions(user, limit)
    socket = await open_socket(user)

    await socket.send_to(text_data=send(conversation.pk, "one too many"))
    error = (await frames_until(socket, lambda f: f["type"] == "error"))[-1]

    assert error["code"] == "too_many_questions"
    assert f"{limit} questions in the last minute" in error["message"]
    assert 50 <= wait_in(error["message"]) <= 60
    assert await Message.objects.filter(conversation=conversation).acount() == limit
    assert not asked(fake_mistral, "one too many")

    await database_sync_to_async(age_rows)(conversation, timedelta(seconds=61))
    fake_mistral.enqueue(Reply.tokens(["fine"]))
    await socket.send_to(text_data=send(conversation.pk, "a minute later"))
    await frames_until(socket, is_final)
    assert asked(fake_mistral, "a minute later")


async def test_answers_running_in_other_processes_count_against_answers_at_once(
    user, open_socket, fake_mistral, default_limits
):
    limit = default_limits.CHAT_ANSWERS_AT_ONCE
    socket = await open_socket(user)  # after this process's start-up sweep of orphans
    running = []
    for _ in range(limit):  # rows as another process keeps them while it streams
        conversation = await conversation_with_questions(user, 1, age=timedelta(minutes=5))
        running.append(
            await amessage_create(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                status=Message.Status.STREAMING,
            )
        )
    idle = await conversation_with_questions(user, 1, age=timedelta(minutes=5))

    await socket.send_to(text_data=send(idle.pk, "a fourth answer"))
    error = (await frames_until(socket, lambda f: f["type"] == "error"))[-1]

    assert error["code"] == "too_many_answers"
    assert f"{limit} of your answers are being written" in error["message"]
    assert await Message.objects.filter(conversation=idle).acount() == 1
    assert not asked(fake_mistral, "a fourth answer")

    running[0].status = Message.Status.COMPLETE
    await running[0].asave(update_fields=["status"])
    fake_mistral.enqueue(Reply.tokens(["fine"]))
    await socket.send_to(text_data=send(idle.pk, "one ended"))
    await frames_until(socket, is_final)
    assert asked(fake_mistral, "one ended")


async def test_retry_needs_room_among_running_answers(
    user, open_socket, fake_mistral, default_limits
):
    socket = await open_socket(user)  # after this process's start-up sweep of orphans
    conversation = await conversation_with_questions(user, 1, age=timedelta(minutes=5))
    failed = await amessage_create(
        conversation=conversation, role=Message.Role.ASSISTANT, status=Message.Status.FAILED
    )
    for _ in range(default_limits.CHAT_ANSWERS_AT_ONCE):
        other = await conversation_with_questions(user, 1, age=timedelta(minutes=5))
        await amessage_create(
            conversation=other, role=Message.Role.ASSISTANT, status=Message.Status.PENDING
        )

    await socket.send_to(text_data=orjson.dumps({"type": "retry", "message": failed.pk}).decode())
    error = (await frames_until(socket, lambda f: f["type"] == "error"))[-1]

    assert error["code"] == "too_many_answers"
    await failed.arefresh_from_db()
    assert failed.status == Message.Status.FAILED
    assert fake_mistral.requests == []


async def test_new_conversations_over_the_minute_limit_are_refused(
    user, open_socket, fake_mistral, default_limits
):
    limit = default_limits.CHAT_CONVERSATIONS_PER_MINUTE
    for _ in range(limit):
        await database_sync_to_async(Conversation.objects.create)(owner=user, model="m")
    socket = await open_socket(user)

    await socket.send_to(text_data=send(None, "yet another chat"))
    error = (await frames_until(socket, lambda f: f["type"] == "error"))[-1]

    assert error["code"] == "too_many_conversations"
    assert f"started {limit} conversations in the last minute" in error["message"]
    assert 50 <= wait_in(error["message"]) <= 60
    assert await Conversation.objects.acount() == limit
    assert not asked(fake_mistral, "yet another chat")


def test_questions_sent_together_count_against_each_other(user, settings):
    """Questions of one batch (conversations/trips.py) see the ones before them."""
    settings.CHAT_QUESTIONS_PER_MINUTE = 2
    conversations = [Conversation.objects.create(owner=user, model="m") for _ in range(3)]
    results = questions_submit(
        [Question(user=user, conversation_id=c.pk, model="m", text="hi") for c in conversations]
    )
    assert [type(r).__name__ for r in results] == ["Submitted", "Submitted", "LimitReached"]
    assert isinstance(results[2], LimitReached)
    assert not Message.objects.filter(conversation=conversations[2]).exists()


# Uploads


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def seed_uploads(user, count: int, size: int = 1000, age: timedelta = timedelta(hours=1)):
    Upload.objects.bulk_create(Upload(user=user, kind="image", size=size) for _ in range(count))
    Upload.objects.filter(user=user).update(created_at=timezone.now() - age)


def test_uploads_over_the_daily_count_are_refused_until_a_day_has_passed(
    user, media, default_limits
):
    limit = default_limits.CHAT_UPLOADS_PER_DAY
    seed_uploads(user, limit)
    client = signed_in(user)

    response = client.post(
        "/attachments/", {"file": SimpleUploadedFile("a.jpg", imagefiles.jpeg())}
    )

    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "too_many_uploads"
    assert f"uploaded {limit} files in the last 24 hours" in error["message"]
    assert "Try again in 23 h" in error["message"]
    assert 82_000 < int(response["Retry-After"]) <= 82_800
    assert Upload.objects.count() == limit
    assert not Attachment.objects.exists()
    assert not list(media.rglob("*.*"))

    Upload.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    response = client.post(
        "/attachments/", {"file": SimpleUploadedFile("a.jpg", imagefiles.jpeg())}
    )
    assert response.status_code == 201


def test_uploads_over_the_daily_bytes_are_refused_for_documents_too(user, media, default_limits):
    allowance = default_limits.CHAT_UPLOAD_BYTES_PER_DAY
    seed_uploads(user, 1, size=allowance - 100)
    client = signed_in(user)

    response = client.post(
        "/documents/", {"file": SimpleUploadedFile("notes.txt", b"x" * 200, "text/plain")}
    )

    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "upload_quota"
    assert "Try again in 23 h" in error["message"]
    assert not Document.objects.exists()

    small = client.post(
        "/documents/", {"file": SimpleUploadedFile("notes.txt", b"x" * 50, "text/plain")}
    )
    assert small.status_code == 201


def test_a_refused_file_still_counts_as_an_upload(user, media, default_limits):
    response = signed_in(user).post(
        "/attachments/", {"file": SimpleUploadedFile("a.jpg", b"not an image")}
    )
    assert response.status_code == 400
    assert Upload.objects.get().size == len(b"not an image")
