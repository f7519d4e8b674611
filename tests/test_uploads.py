"""Uploading, serving and removing images over HTTP: CSRF, owner-only access (staff may
review), the headers a browser must get, the limits, and nothing left half-stored."""

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.db import IntegrityError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chatsite.body_limit import RequestBodyLimit
from conversations.images import prepare_image
from conversations.models import Attachment, Conversation
from conversations.uploads import attachment_create
from tests import imagefiles
from tests.helpers import message_create

pytestmark = pytest.mark.django_db

UPLOAD_URL = "/attachments/"


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def stored_files(media: Path) -> list[Path]:
    return [p for p in media.rglob("*") if p.is_file()]


def content(field) -> bytes:
    with field.open("rb") as f:
        return f.read()


def signed_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def post_image(client: Client, name: str, data: bytes, **extra):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(UPLOAD_URL, {"file": SimpleUploadedFile(name, data)}, **extra)


def stored(user, name="photo.jpg", data=None) -> Attachment:
    image = prepare_image(name=name, data=data or imagefiles.jpeg(), max_side=1540)
    return attachment_create(owner=user, image=image)


# Upload


def test_upload_stores_original_and_model_copy(user, media):
    original = imagefiles.jpeg((3000, 2000), orientation=6, gps=True)
    response = post_image(signed_in(user), "holiday.jpg", original)
    assert response.status_code == 201
    data = response.json()["attachment"]
    row = Attachment.objects.get()
    assert data == {
        "id": row.pk,
        "name": "holiday.jpg",
        "url": f"/attachments/{row.pk}/sent/",
        "original_url": f"/attachments/{row.pk}/original/",
        "width": 2000,
        "height": 3000,
        "sent_width": 1027,
        "sent_height": 1540,
        "sent_bytes": row.sent.size,
        "tokens": 37 * 55 + 55,
    }
    assert (row.owner, row.message, row.mime, row.sent_mime) == (
        user,
        None,
        "image/jpeg",
        "image/jpeg",
    )
    assert content(row.original) == original
    assert len(stored_files(media)) == 2
    # Random names, nothing a stranger could guess from the file's name or its id.
    assert "holiday" not in row.original.name + row.sent.name


def test_upload_needs_a_csrf_token(user):
    client = signed_in(user, enforce_csrf_checks=True)
    assert post_image(client, "a.png", imagefiles.png()).status_code == 403
    client.get("/")  # sets the CSRF cookie, as the chat page does
    token = client.cookies["csrftoken"].value
    response = post_image(client, "a.png", imagefiles.png(), HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201


def test_upload_needs_a_signed_in_user(media):
    response = post_image(Client(), "a.png", imagefiles.png())
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not Attachment.objects.exists() and not stored_files(media)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("drawing.svg", imagefiles.SVG, "drawing.svg: not an image we accept"),
        ("bomb.png", imagefiles.bomb(), "bomb.png: the image has too many pixels"),
        ("cut.jpg", imagefiles.jpeg((800, 600))[:3000], "cut.jpg: the image is damaged"),
    ],
)
def test_bad_upload_is_refused_with_the_reason_and_stores_nothing(user, media, name, data, message):
    response = post_image(signed_in(user), name, data)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)
    assert not Attachment.objects.exists() and not stored_files(media)


def test_upload_of_two_files_at_once_is_refused(user, media):
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = [SimpleUploadedFile(n, imagefiles.png()) for n in ("a.png", "b.png")]
    response = signed_in(user).post(UPLOAD_URL, {"file": files, "other": files[0]})
    assert response.status_code == 400
    assert not Attachment.objects.exists()


def test_nine_images_in_one_upload_are_refused_naming_the_limit(user, media):
    """Under one field name, only the last was kept before, without a word."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = [SimpleUploadedFile(f"p{i}.png", imagefiles.png()) for i in range(9)]
    response = signed_in(user).post(UPLOAD_URL, {"file": files})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "too_many_files",
        "message": "Upload one image at a time: this request has 9 files.",
    }
    assert not Attachment.objects.exists() and not stored_files(media)


def test_failed_row_write_removes_the_files_already_written(user, media, monkeypatch):
    def broken_save(*args, **kwargs):
        raise IntegrityError("the database refused")

    monkeypatch.setattr(Attachment, "save", broken_save)
    image = prepare_image(name="a.png", data=imagefiles.png(), max_side=1540)
    with pytest.raises(IntegrityError):
        attachment_create(owner=user, image=image)
    assert not stored_files(media)


def test_upload_deletes_the_users_images_left_unsent_for_a_day(
    user, other_user, media, django_capture_on_commit_callbacks
):
    old, recent, others = stored(user), stored(user), stored(other_user)
    day_ago = timezone.now() - timedelta(days=1, minutes=1)
    Attachment.objects.filter(pk__in=[old.pk, others.pk]).update(created_at=day_ago)
    with django_capture_on_commit_callbacks(execute=True):
        assert post_image(signed_in(user), "new.png", imagefiles.png()).status_code == 201
    assert set(Attachment.objects.values_list("pk", flat=True)) == {
        recent.pk,
        others.pk,
        Attachment.objects.latest("id").pk,
    }
    assert not Path(old.original.path).exists() and not Path(old.sent.path).exists()


# The HTTP body limit, before Django reads a byte of the body


async def test_body_over_the_limit_is_refused_from_its_content_length(settings):
    from chatsite.asgi import application

    limit = settings.MAX_REQUEST_BODY_BYTES
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.post(
            UPLOAD_URL,
            content=b"x" * (limit + 1),
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "The upload is too large; the limit is 11 MB."


async def test_body_without_length_is_cut_once_over_the_limit():
    seen = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                return

    chunks = iter([b"a" * 60, b"b" * 60, b"c" * 60])

    async def receive():
        return {"type": "http.request", "body": next(chunks), "more_body": True}

    async def send(message):
        raise AssertionError("nothing is sent for a cut body")

    await RequestBodyLimit(app, limit=100)({"type": "http", "headers": []}, receive, send)
    assert seen == ["http.request", "http.disconnect"]


# Serving


def test_owner_gets_the_model_copy_inline_with_safe_headers(user):
    attachment = stored(user, name="cat.jpg")
    response = signed_in(user).get(reverse("attachment_file", args=[attachment.pk, "sent"]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["Content-Disposition"] == 'inline; filename="cat.jpg"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "private" in response["Cache-Control"]
    assert b"".join(response.streaming_content) == content(attachment.sent)


def test_original_is_offered_as_a_download(user):
    original = imagefiles.heic()
    attachment = stored(user, name="IMG_1.HEIC", data=original)
    response = signed_in(user).get(reverse("attachment_file", args=[attachment.pk, "original"]))
    assert response["Content-Type"] == "image/heic"
    assert response["Content-Disposition"] == 'attachment; filename="IMG_1.HEIC"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == original


def test_someone_elses_image_is_not_found(user, other_user):
    attachment = stored(user)
    client = signed_in(other_user)
    for kind in ("sent", "original"):
        url = reverse("attachment_file", args=[attachment.pk, kind])
        assert client.get(url).status_code == 404


@pytest.fixture
def reviewer(django_user_model, review_seed):
    from django.contrib.auth.models import Group

    staff = django_user_model.objects.create_user(username="rev", password="x", is_staff=True)
    staff.groups.add(Group.objects.get(name="Reviewer"))
    return staff


def sent(attachment: Attachment) -> Attachment:
    conversation = Conversation.objects.create(owner=attachment.owner, model="m")
    attachment.message = message_create(conversation=conversation, role="user", text="")
    attachment.save()
    return attachment


def test_staff_reviewer_may_see_an_image_sent_in_a_conversation(user, reviewer):
    attachment = sent(stored(user))
    for kind, field in (("sent", attachment.sent), ("original", attachment.original)):
        response = signed_in(reviewer).get(reverse("attachment_file", args=[attachment.pk, kind]))
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == content(field)


def test_staff_reviewer_may_not_see_an_image_never_sent(user, reviewer):
    """Still in its owner's composer, or removed from it: no transcript shows it."""
    attachment = stored(user)
    for kind in ("sent", "original"):
        url = reverse("attachment_file", args=[attachment.pk, kind])
        assert signed_in(reviewer).get(url).status_code == 404


def test_staff_without_the_reviewer_permission_may_not_see_sent_images(user, django_user_model):
    attachment = sent(stored(user))
    staff = django_user_model.objects.create_user(username="ops", password="x", is_staff=True)
    url = reverse("attachment_file", args=[attachment.pk, "sent"])
    assert signed_in(staff).get(url).status_code == 404


def test_anonymous_gets_no_image(user):
    attachment = stored(user)
    response = Client().get(reverse("attachment_file", args=[attachment.pk, "sent"]))
    assert response.status_code == 302


def test_unknown_kind_is_not_found(user):
    attachment = stored(user)
    assert signed_in(user).get(f"/attachments/{attachment.pk}/thumb/").status_code == 404


def test_files_are_not_at_a_public_path(user, media):
    attachment = stored(user)
    assert Client().get("/media/" + attachment.sent.name).status_code == 404
    assert signed_in(user).get("/media/" + attachment.sent.name).status_code == 404


# Removing before sending


def test_removing_an_unsent_image_deletes_row_and_files(user, django_capture_on_commit_callbacks):
    attachment = stored(user)
    paths = [Path(attachment.original.path), Path(attachment.sent.path)]
    url = reverse("attachment_remove", args=[attachment.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in(user).post(url)
    assert response.json() == {"deleted": attachment.pk}
    assert not Attachment.objects.exists()
    assert not any(p.exists() for p in paths)


def test_removing_someone_elses_image_is_not_found(user, other_user):
    attachment = stored(user)
    url = reverse("attachment_remove", args=[attachment.pk])
    assert signed_in(other_user).post(url).status_code == 404
    assert Attachment.objects.filter(pk=attachment.pk).exists()


def test_a_sent_image_stays_with_its_message(user):
    attachment = stored(user)
    conversation = Conversation.objects.create(owner=user, model="m")
    attachment.message = message_create(conversation=conversation, role="user", text="?")
    attachment.save()
    response = signed_in(user).post(reverse("attachment_remove", args=[attachment.pk]))
    assert response.status_code == 400
    assert Attachment.objects.filter(pk=attachment.pk).exists()


def test_deleting_a_conversation_deletes_its_images_files(user, django_capture_on_commit_callbacks):
    attachment = stored(user)
    conversation = Conversation.objects.create(owner=user, model="m")
    attachment.message = message_create(conversation=conversation, role="user", text="?")
    attachment.save()
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in(user).post(reverse("conversation_delete", args=[conversation.pk]))
    assert response.status_code == 302
    assert not Path(attachment.sent.path).exists()
    assert not Path(attachment.original.path).exists()
