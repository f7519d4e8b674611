"""Questions with images, from the socket's `send` frame to the exact body the model server
gets: content parts, data URLs, which model sees them, and what is kept out of a request."""

import base64
import io

import orjson
import pytest
from asgiref.sync import sync_to_async
from PIL import Image

from conversations.images import prepare_image
from conversations.models import Attachment, Conversation, Message
from conversations.uploads import attachment_create
from tests import imagefiles
from tests.fake_mistral import Reply, _card
from tests.helpers import amessage_create, frames_until, is_final

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@sync_to_async
def upload(user, name: str = "photo.jpg", data: bytes | None = None) -> Attachment:
    image = prepare_image(name=name, data=data or imagefiles.jpeg(), max_side=1540)
    return attachment_create(owner=user, image=image)


def send(text: str, attachments: list[int], conversation: int | None = None) -> str:
    frame = {"type": "send", "conversation": conversation, "text": text}
    frame["attachments"] = attachments
    return orjson.dumps(frame).decode()


async def ask(socket, text, attachments, conversation=None) -> list[dict]:
    await socket.send_to(text_data=send(text, attachments, conversation))
    return await frames_until(socket, is_final)


def answer_of(frames: list[dict]) -> dict:
    return [f for f in frames if is_final(f)][-1]["message"]


def chat_requests(fake) -> list:
    return [
        r
        for r in fake.requests
        if r.path == "/v1/chat/completions" and r.json and r.json.get("stream")
    ]


def decoded(url: str) -> Image.Image:
    header, encoded = url.split(",", 1)
    im = Image.open(io.BytesIO(base64.b64decode(encoded)))
    im.load()
    return im


async def test_question_with_images_becomes_text_then_image_parts(user, open_socket, fake_mistral):
    photo = await upload(user, "street.jpg", imagefiles.jpeg((4000, 3000), gps=True))
    shot = await upload(user, "screen.png", imagefiles.png((800, 600)))
    socket = await open_socket(user)
    frames = await ask(socket, "What is in these?", [photo.pk, shot.pk])

    [request] = chat_requests(fake_mistral)
    body = request.json
    assert body["model"] == "mistral-small-latest"  # it can see: no switch
    [message] = body["messages"]
    content = message["content"]
    assert [part["type"] for part in content] == ["text", "image_url", "image_url"]
    assert content[0] == {"type": "text", "text": "What is in these?"}
    assert content[1]["image_url"].startswith("data:image/jpeg;base64,")
    assert content[2]["image_url"].startswith("data:image/png;base64,")
    first, second = decoded(content[1]["image_url"]), decoded(content[2]["image_url"])
    assert (first.format, first.size, second.format, second.size) == (
        "JPEG",
        (1540, 1155),
        "PNG",
        (800, 600),
    )
    # The fake decoded them too: sizes, and no metadata (the GPS position) left.
    assert [(i.mime, i.size, i.metadata) for i in request.images] == [
        ("image/jpeg", (1540, 1155), ()),
        ("image/png", (800, 600), ()),
    ]
    assert answer_of(frames)["status"] == "complete"

    question = next(f["message"] for f in frames if f["type"] == "message")
    assert [(a["id"], a["name"], a["sent_width"]) for a in question["attachments"]] == [
        (photo.pk, "street.jpg", 1540),
        (shot.pk, "screen.png", 800),
    ]
    linked = [a async for a in Attachment.objects.filter(message_id=question["id"])]
    assert [a.pk for a in linked] == [photo.pk, shot.pk]


async def test_images_alone_make_a_question(user, open_socket, fake_mistral):
    photo = await upload(user)
    socket = await open_socket(user)
    frames = await ask(socket, "", [photo.pk])
    assert answer_of(frames)["status"] == "complete"
    [request] = chat_requests(fake_mistral)
    assert [p["type"] for p in request.json["messages"][0]["content"]] == ["image_url"]


async def test_model_that_cannot_see_hands_images_to_the_first_vision_model(
    user, open_socket, fake_mistral
):
    conversation = await Conversation.objects.acreate(owner=user, model="codestral-latest")
    photo = await upload(user)
    socket = await open_socket(user)
    frames = await ask(socket, "What is this?", [photo.pk], conversation.pk)

    # pixtral-large-latest, first in the list, is not offered; Mistral Medium is next.
    [request] = chat_requests(fake_mistral)
    assert request.json["model"] == "mistral-medium-latest"
    final = answer_of(frames)
    assert final["model"] == "mistral-medium-latest"
    assert (
        final["notice"] == "Answered by mistral-medium-latest: codestral-latest cannot see images."
    )
    row = await Message.objects.aget(pk=final["id"])
    assert (row.model, row.notice) == (final["model"], final["notice"])


async def test_server_still_serving_pixtral_gets_pixtral(user, open_socket, fake_mistral):
    fake_mistral.models.append(_card("pixtral-large-latest", "pixtral-large-2411", vision=True))
    conversation = await Conversation.objects.acreate(owner=user, model="codestral-latest")
    photo = await upload(user)
    socket = await open_socket(user)
    await ask(socket, "What is this?", [photo.pk], conversation.pk)
    assert chat_requests(fake_mistral)[0].json["model"] == "pixtral-large-latest"


async def test_no_vision_model_fails_the_answer_plainly(user, open_socket, fake_mistral, settings):
    settings.CHAT_VISION_MODELS = ["pixtral-large-latest"]
    conversation = await Conversation.objects.acreate(owner=user, model="codestral-latest")
    photo = await upload(user)
    socket = await open_socket(user)
    final = answer_of(await ask(socket, "What is this?", [photo.pk], conversation.pk))
    assert (final["status"], final["error_code"]) == ("failed", "no_vision_model")
    assert final["error_text"] == (
        "codestral-latest cannot see images, and the model server offers none of the models "
        "that can (pixtral-large-latest)."
    )
    assert chat_requests(fake_mistral) == []


async def test_retired_model_refreshes_the_model_list_and_says_so(user, open_socket, fake_mistral):
    fake_mistral.models.append(_card("pixtral-large-latest", "pixtral-large-2411", vision=True))
    conversation = await Conversation.objects.acreate(owner=user, model="codestral-latest")
    photo = await upload(user)
    fake_mistral.enqueue(Reply.invalid_model("pixtral-large-latest"))
    socket = await open_socket(user)
    final = answer_of(await ask(socket, "What is this?", [photo.pk], conversation.pk))

    assert (final["status"], final["error_code"]) == ("failed", "invalid_model")
    assert final["error_text"] == (
        "The model server does not offer pixtral-large-latest (any more). The list of models "
        "has been refreshed: choose another model, then retry."
    )
    paths = [(r.method, r.path) for r in fake_mistral.requests]
    assert paths[:3] == [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),  # the refresh
    ]


async def test_twenty_images_are_refused_and_nothing_is_stored(user, open_socket, fake_mistral):
    ids = [(await upload(user, f"p{i}.png", imagefiles.png((40, 40)))).pk for i in range(20)]
    socket = await open_socket(user)
    await socket.send_to(text_data=send("Compare them all", ids))
    error = (await frames_until(socket, lambda f: f["type"] == "error"))[-1]
    assert (error["code"], error["message"]) == (
        "too_many_images",
        "A message can carry at most 8 images; this one has 20.",
    )
    assert not await Conversation.objects.aexists()
    assert not await Message.objects.aexists()
    assert await Attachment.objects.filter(message__isnull=True).acount() == 20
    assert fake_mistral.requests == []


async def test_someone_elses_image_is_refused_and_nothing_is_stored(
    user, other_user, open_socket, fake_mistral
):
    theirs = await upload(other_user)
    conversation = await Conversation.objects.acreate(owner=user, model="mistral-small-latest")
    socket = await open_socket(user)
    await socket.send_to(text_data=send("Look", [theirs.pk], conversation.pk))
    error = (await frames_until(socket, lambda f: f["type"] == "error"))[-1]
    assert error["code"] == "invalid_attachment"
    assert not await Message.objects.aexists()
    assert (await Attachment.objects.aget(pk=theirs.pk)).message_id is None


async def test_an_image_cannot_be_sent_twice(user, open_socket, fake_mistral):
    photo = await upload(user)
    socket = await open_socket(user)
    frames = await ask(socket, "First", [photo.pk])
    conversation = answer_of(frames)["conversation"]
    await socket.send_to(text_data=send("Again", [photo.pk], conversation))
    error = (await frames_until(socket, lambda f: f["type"] == "error"))[-1]
    assert error["code"] == "invalid_attachment"
    assert await Message.objects.acount() == 2


async def test_history_keeps_the_newest_eight_images_and_the_older_text(
    user, open_socket, fake_mistral
):
    conversation = await Conversation.objects.acreate(owner=user, model="mistral-small-latest")
    older = []
    for turn in range(3):
        question = await amessage_create(
            conversation=conversation, role="user", text=f"turn {turn}"
        )
        for i in range(4):
            attachment = await upload(user, f"t{turn}-{i}.png", imagefiles.png((32 + i, 32)))
            attachment.message = question
            await attachment.asave()
            older.append(attachment.pk)
        await amessage_create(conversation=conversation, role="assistant", text="ok")
    socket = await open_socket(user)
    newest = await upload(user, "now.png", imagefiles.png((50, 50)))
    final = answer_of(await ask(socket, "and this one?", [newest.pk], conversation.pk))

    [request] = chat_requests(fake_mistral)
    users = [m for m in request.json["messages"] if m["role"] == "user"]
    assert users[0]["content"] == "turn 0"  # its 4 images left out, its text kept
    counts = [
        sum(p["type"] == "image_url" for p in m["content"]) if isinstance(m["content"], list) else 0
        for m in users
    ]
    assert counts == [0, 3, 4, 1]
    assert len(request.images) == 8
    assert final["notice"] == "5 earlier images left out: a request carries at most 8."


async def test_retry_sends_the_images_again(user, open_socket, fake_mistral):
    photo = await upload(user)
    fake_mistral.enqueue(Reply.server_error(400))
    socket = await open_socket(user)
    failed = answer_of(await ask(socket, "What is it?", [photo.pk]))
    assert failed["status"] == "failed"
    await socket.send_to(
        text_data=orjson.dumps({"type": "retry", "message": failed["id"]}).decode()
    )
    assert answer_of(await frames_until(socket, is_final))["status"] == "complete"
    retried = chat_requests(fake_mistral)[-1]
    assert [i.size for i in retried.images] == [(640, 480)]


async def test_reconnecting_tab_gets_the_question_with_its_images(user, open_socket, fake_mistral):
    photo = await upload(user, "cat.jpg")
    socket = await open_socket(user)
    frames = await ask(socket, "A cat?", [photo.pk])
    question = next(f["message"] for f in frames if f["type"] == "message")
    other = await open_socket(user)
    await other.send_to(
        text_data=orjson.dumps(
            {"type": "subscribe", "conversation": question["conversation"], "since": question["id"]}
        ).decode()
    )
    subscribed = (await frames_until(other, lambda f: f["type"] == "subscribed"))[-1]
    again = subscribed["messages"][0]
    assert again["attachments"] == question["attachments"]
    assert again["attachments"][0]["url"] == f"/attachments/{photo.pk}/sent/"


async def test_page_shows_the_images_and_the_size_sent(user, open_socket, fake_mistral):
    from django.test import AsyncClient

    photo = await upload(user, "big.jpg", imagefiles.jpeg((4000, 3000)))
    socket = await open_socket(user)
    frames = await ask(socket, "Big?", [photo.pk])
    client = AsyncClient()
    await client.aforce_login(user)
    page = await client.get(f"/c/{answer_of(frames)['conversation']}/")
    html = page.content.decode()
    assert f'src="/attachments/{photo.pk}/sent/"' in html
    assert f"sent as 1540×1155, {round(photo.sent_bytes / 1000):,} KB, ~2,352 tokens" in html
