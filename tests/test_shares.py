"""Share links: a read-only snapshot of the branch shown, up to the message chosen, that
anyone with the link reads without an account until its owner revokes it; it names the
owner and carries files only when asked, is never indexed, and leads nowhere else."""

import io

import pytest
from django.urls import reverse
from PIL import Image

from conversations.models import Attachment, Conversation
from conversations.rendering import Citations, render_markdown
from tests.helpers import message_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def chat(user):
    conversation = Conversation.objects.create(owner=user, title="Trip plans", model="m")
    messages = [
        message_create(conversation=conversation, role="user", text="Where to go?"),
        message_create(
            conversation=conversation,
            role="assistant",
            text="Try **Lyon**.",
            html=render_markdown("Try **Lyon**."),
        ),
        message_create(conversation=conversation, role="user", text="And after?"),
        message_create(
            conversation=conversation,
            role="assistant",
            text="Then Annecy.",
            html=render_markdown("Then Annecy."),
        ),
    ]
    return conversation, messages


def create(client, conversation, **fields):
    url = reverse("share_new", args=[conversation.pk])
    return client.post(url, fields, HTTP_ACCEPT="application/json")


def test_a_link_shows_the_branch_up_to_the_message_chosen_to_anyone(client, user, chat):
    conversation, messages = chat
    client.force_login(user)
    response = create(client, conversation, message=messages[1].pk)
    assert response.status_code == 201
    share = response.json()["share"]
    assert share["messages"] == 2 and share["revoked"] is False
    assert share["url"].startswith("http://testserver/s/")
    token = share["url"].rsplit("/", 2)[-2]
    assert len(token) >= 40  # unguessable

    client.logout()  # viewers need no account
    page = client.get(f"/s/{token}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Where to go?" in html and "<strong>Lyon</strong>" in html
    assert "And after?" not in html and "Annecy" not in html  # after the message chosen
    assert "Trip plans" in html
    assert page["X-Robots-Tag"] == "noindex, nofollow"
    assert '<meta name="robots" content="noindex, nofollow">' in html
    assert page["Cache-Control"] == "no-store"
    assert page["Referrer-Policy"] == "no-referrer"
    # Nothing else of the owner: no name, no sidebar, no link into the app.
    assert user.get_username() not in html
    assert "/c/" not in html and "conv-list" not in html


def test_the_snapshot_holds_what_was_shared_whatever_happens_after(client, user, chat):
    conversation, messages = chat
    client.force_login(user)
    token = create(client, conversation).json()["share"]["url"].rsplit("/", 2)[-2]
    message_create(conversation=conversation, role="user", text="A later question")
    html = client.get(f"/s/{token}/").content.decode()
    assert "Then Annecy." in html and "A later question" not in html


def test_the_owners_name_only_when_chosen(client, user, chat):
    conversation, _ = chat
    client.force_login(user)
    url = create(client, conversation, show_name="on").json()["share"]["url"]
    assert f"Shared by {user.get_username()}" in client.get(url).content.decode()


def test_a_revoked_link_is_a_404_at_once(client, user, chat):
    conversation, _ = chat
    client.force_login(user)
    share = create(client, conversation).json()["share"]
    assert client.get(share["url"]).status_code == 200
    response = client.post(share["revoke_url"], HTTP_ACCEPT="application/json")
    assert response.json()["share"]["revoked"] is True
    assert client.get(share["url"]).status_code == 404
    assert client.get("/s/" + "x" * 43 + "/").status_code == 404
    listed = client.get(reverse("shares")).content.decode()
    assert "Revoked" in listed


def test_another_user_can_neither_share_nor_revoke(client, user, other_user, chat):
    conversation, _ = chat
    client.force_login(user)
    share = create(client, conversation).json()["share"]
    client.force_login(other_user)
    assert create(client, conversation).status_code == 404
    assert client.post(share["revoke_url"]).status_code == 404
    assert client.get(share["url"]).status_code == 200  # still live
    assert "Trip plans" not in client.get(reverse("shares")).content.decode()


def test_a_message_of_another_conversation_cannot_be_shared(client, user, chat):
    conversation, _ = chat
    other = Conversation.objects.create(owner=user, title="Other", model="m")
    elsewhere = message_create(conversation=other, role="user", text="secret")
    client.force_login(user)
    response = create(client, conversation, message=elsewhere.pk)
    assert response.status_code == 400
    assert response.json()["errors"]["message"] == ["This message is not in the conversation."]
    assert create(client, conversation, message="abc").status_code == 400


def test_files_only_when_included_and_only_the_snapshots(client, user, chat, settings):
    conversation, messages = chat
    image = _attach(user, messages[0])
    answer = messages[1]
    document_url = reverse("document_page", args=[5, 2])
    citations = Citations(((5, "guide.pdf", 9),), lambda d, p: document_url)
    answer.html = render_markdown("See [guide.pdf, p. 2].", citations)
    answer.save()
    client.force_login(user)
    bare = create(client, conversation, message=answer.pk).json()["share"]["url"]
    with_files = create(client, conversation, message=answer.pk, include_files="on").json()
    with_files = with_files["share"]["url"]
    client.logout()

    html = client.get(bare).content.decode()
    assert "/images/" not in html
    assert document_url not in html and "[guide.pdf, p. 2]" in html  # the text, unlinked
    assert client.get(f"{bare}images/{image.pk}/").status_code == 404

    html = client.get(with_files).content.decode()
    assert f"{with_files[len('http://testserver') :]}images/{image.pk}/" in html
    response = client.get(f"{with_files}images/{image.pk}/")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    assert f'href="{document_url}"' not in html  # the viewer's own links only
    assert f'href="{with_files[len("http://testserver") :]}documents/5/pages/2/"' in html
    # An image of the owner's that the snapshot does not hold stays private.
    other = _attach(user, messages[2])
    assert client.get(f"{with_files}images/{other.pk}/").status_code == 404


def test_the_shared_links_page_needs_an_account(client):
    response = client.get(reverse("shares"))
    assert response.status_code == 302


def _attach(user, message) -> Attachment:
    from django.core.files.base import ContentFile

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, "PNG")
    data = buffer.getvalue()
    return Attachment.objects.create(
        owner=user,
        message=message,
        name="red.png",
        original=ContentFile(data, "red.png"),
        mime="image/png",
        width=4,
        height=4,
        sent=ContentFile(data, "red.png"),
        sent_mime="image/png",
        sent_width=4,
        sent_height=4,
        sent_bytes=len(data),
        tokens=1,
    )
