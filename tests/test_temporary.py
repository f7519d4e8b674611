"""Temporary chats: started from a new chat's Temporary button, they are in no list,
search or export, cannot be shared, and end with the session they were started in: at
logout, or by `manage.py retention` once the session expired without one."""

import datetime
import io

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.retention import temporary_sweep
from tests.fake_mistral import Reply
from tests.helpers import frames_until, is_final, message_create

pytestmark = pytest.mark.django_db(transaction=True)


async def start(socket, *, temporary: bool) -> dict:
    frame = {"type": "send", "conversation": None, "text": "a secret", "temporary": temporary}
    await socket.send_to(text_data=orjson.dumps(frame).decode())
    frames = await frames_until(socket, is_final)
    return next(f["conversation"] for f in frames if f["type"] == "conversation")


async def test_a_temporary_chat_is_in_no_list_search_or_export(
    user, open_socket, fake_mistral, client
):
    fake_mistral.enqueue(Reply.tokens(["Kept quiet."]))
    fake_mistral.enqueue(Reply.tokens(["Secret"]))
    data = await start(await open_socket(user), temporary=True)
    assert data["temporary"] is True
    conversation = await Conversation.objects.aget(pk=data["id"])
    assert conversation.temporary and conversation.session_key

    await sync_to_async(client.force_login)(user)
    page = (await sync_to_async(client.get)(reverse("chat"))).content.decode()
    assert f'href="/c/{conversation.pk}/"' not in page  # not in the sidebar
    own = (await sync_to_async(client.get)(f"/c/{conversation.pk}/")).content.decode()
    assert "Temporary chat: not in your history" in own  # its own page says so
    search = await sync_to_async(client.get)(reverse("search"), {"q": "secret"})
    assert "a secret" not in search.content.decode()
    export = await sync_to_async(client.get)(reverse("export"), {"format": "json"})
    exported = orjson.loads(b"".join([c async for c in _chunks(export)]))
    assert exported["conversations"] == []
    share = await sync_to_async(client.post)(
        reverse("share_new", args=[conversation.pk]), HTTP_ACCEPT="application/json"
    )
    assert share.status_code == 400
    assert "cannot be shared" in share.json()["errors"]["message"][0]


async def _chunks(response):
    for chunk in response.streaming_content:
        yield chunk


def test_logging_out_ends_the_sessions_temporary_chats_only(client, user):
    client.force_login(user)
    key = client.session.session_key
    temporary = Conversation.objects.create(owner=user, model="m", temporary=True, session_key=key)
    message_create(conversation=temporary, role="user", text="gone soon")
    elsewhere = Conversation.objects.create(
        owner=user, model="m", temporary=True, session_key="another-session"
    )
    kept = Conversation.objects.create(owner=user, model="m", title="Kept")
    client.post(reverse("logout"))
    assert set(Conversation.objects.values_list("pk", flat=True)) == {elsewhere.pk, kept.pk}
    assert not Message.objects.filter(text="gone soon").exists()


def test_the_sweep_ends_temporary_chats_whose_session_expired(client, user):
    client.force_login(user)
    live_key = client.session.session_key
    live = Conversation.objects.create(owner=user, model="m", temporary=True, session_key=live_key)
    expired = Session.objects.create(
        session_key="x" * 32,
        session_data="",
        expire_date=timezone.now() - datetime.timedelta(minutes=1),
    )
    Conversation.objects.create(
        owner=user, model="m", temporary=True, session_key=expired.session_key
    )
    Conversation.objects.create(owner=user, model="m", temporary=True, session_key="gone")
    assert temporary_sweep(now=timezone.now()) == 2
    assert list(Conversation.objects.values_list("pk", flat=True)) == [live.pk]
    out = io.StringIO()
    call_command("retention", stdout=out)
    assert out.getvalue().startswith("Deleted 0 temporary chats whose session ended.")
    assert Conversation.objects.filter(pk=live.pk).exists()


async def test_a_normal_chat_is_not_temporary(user, open_socket, fake_mistral):
    fake_mistral.enqueue(Reply.tokens(["Hi."]))
    fake_mistral.enqueue(Reply.tokens(["Title"]))
    data = await start(await open_socket(user), temporary=False)
    conversation = await Conversation.objects.aget(pk=data["id"])
    assert not conversation.temporary and conversation.session_key == ""
