"""Deleting several conversations, all of them, or one's whole account: what goes (rows,
files), what stays (another user's), and that every tab and socket is told at once."""

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.urls import reverse

from conversations.models import ApiCall, Conversation, Document, Message, ReviewAudit
from conversations.web.pages import BULK_DELETE_MAX
from tests.helpers import message_create

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def _conversation(owner, title="Chat", *, document=False):
    conversation = Conversation.objects.create(
        owner=owner, model="mistral-small-latest", title=title
    )
    question = message_create(conversation=conversation, role=Message.Role.USER, text="hello")
    message_create(conversation=conversation, role=Message.Role.ASSISTANT, text="hi")
    if document:
        row = Document(owner=owner, message=question, name="notes.txt", mime="text/plain", size=5)
        row.file.save("notes.txt", ContentFile(b"notes"))
    return conversation


def _file_of(conversation):
    document = Document.objects.get(message__conversation=conversation)
    return document.file.storage, document.file.name


def test_several_conversations_are_deleted_with_their_files(
    signed_in, user, django_capture_on_commit_callbacks
):
    first = _conversation(user, "One", document=True)
    second = _conversation(user, "Two")
    kept = _conversation(user, "Three")
    storage, name = _file_of(first)
    assert storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(
            reverse("conversations_delete"), {"conversation": [first.pk, second.pk]}, **JSON
        )
    assert response.json() == {"deleted": [first.pk, second.pk]}
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Three"]
    assert not Message.objects.exclude(conversation=kept).exists()
    assert not storage.exists(name)


def test_deleting_several_leaves_another_users_conversations(signed_in, other_user):
    theirs = _conversation(other_user, "Theirs", document=True)
    response = signed_in.post(
        reverse("conversations_delete"), {"conversation": [theirs.pk]}, **JSON
    )
    assert response.json() == {"deleted": []}
    assert Conversation.objects.filter(pk=theirs.pk).exists()
    storage, name = _file_of(theirs)
    assert storage.exists(name)


def test_delete_all_takes_archived_ones_too_and_only_the_users(signed_in, user, other_user):
    _conversation(user, "Open")
    archived = _conversation(user, "Archived")
    archived.archived_at = archived.created_at
    archived.save()
    theirs = _conversation(other_user, "Theirs")
    response = signed_in.post(reverse("conversations_delete"), {"all": "1"})
    assert response.status_code == 302
    assert list(Conversation.objects.values_list("pk", flat=True)) == [theirs.pk]


def test_bulk_delete_tells_every_tab_in_one_frame(
    signed_in, user, user_events, django_capture_on_commit_callbacks
):
    ids = [_conversation(user, f"C{i}").pk for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        signed_in.post(reverse("conversations_delete"), {"all": "1"}, **JSON)
    assert user_events() == {"type": "conversations.deleted", "conversations": ids}


def test_bulk_delete_refuses_nothing_chosen_or_bad_ids(signed_in, user):
    kept = _conversation(user)
    assert signed_in.post(reverse("conversations_delete"), {}, **JSON).status_code == 400
    response = signed_in.post(reverse("conversations_delete"), {"conversation": ["x"]}, **JSON)
    assert response.status_code == 400
    too_many = {"conversation": [kept.pk] * (BULK_DELETE_MAX + 1)}
    assert signed_in.post(reverse("conversations_delete"), too_many, **JSON).status_code == 400
    assert Conversation.objects.filter(pk=kept.pk).exists()


# The account


def test_account_deletion_asks_for_the_password(signed_in, user):
    _conversation(user)
    response = signed_in.post(reverse("account_delete"), {"password": "wrong"})
    assert response.status_code == 400
    assert b"That is not your password." in response.content
    assert get_user_model().objects.filter(pk=user.pk).exists()
    assert Conversation.objects.filter(owner=user).exists()


def test_account_deletion_removes_everything_and_closes_the_sockets(
    signed_in, user, other_user, user_events, django_capture_on_commit_callbacks
):
    mine = _conversation(user, document=True)
    storage, name = _file_of(mine)
    theirs = _conversation(other_user)
    ApiCall.objects.create(user=user, kind="chat", model="mistral-small-latest", status="complete")
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("account_delete"), {"password": "pw-for-tests-1"})
    assert response.status_code == 200
    assert b"Account deleted" in response.content
    assert not get_user_model().objects.filter(pk=user.pk).exists()
    assert list(Conversation.objects.values_list("pk", flat=True)) == [theirs.pk]
    assert not Document.objects.exists()
    assert not storage.exists(name)
    assert ApiCall.objects.get().user is None  # usage totals keep the call
    assert user_events() == {"type": "session.end"}
    # This browser is signed out.
    page = signed_in.get(reverse("chat"))
    assert page.status_code == 302 and page["Location"].startswith(reverse("login"))


def test_reviewer_with_audit_entries_cannot_delete_the_account(client, django_user_model, user):
    reviewer = django_user_model.objects.create_user(username="rev", password="pw-for-tests-3")
    ReviewAudit.objects.create(staff=reviewer, conversation=_conversation(user))
    client.force_login(reviewer)
    response = client.post(reverse("account_delete"), {"password": "pw-for-tests-3"})
    assert response.status_code == 400
    assert b"an administrator can deactivate it" in response.content
    assert django_user_model.objects.filter(pk=reviewer.pk).exists()


@pytest.mark.parametrize(
    ("method", "name"), [("post", "conversations_delete"), ("get", "account_delete")]
)
def test_deletion_pages_require_login(client, method, name):
    url = reverse(name)
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"
