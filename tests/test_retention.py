"""Retention: `manage.py retention` deletes conversations inactive for longer than
CHAT_RETENTION_DAYS with everything they hold (rows and files), keeps the ones a reviewer
still needs, and leaves the usage totals whole."""

import datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from conversations import search
from conversations.models import (
    ApiCall,
    Attachment,
    Conversation,
    Document,
    DocumentPage,
    Message,
    Report,
    Share,
    ToolCall,
)
from tests.helpers import message_create
from tests.test_shares import _attach

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def conversation_aged(user, title: str, days: int, **fields) -> Conversation:
    conversation = Conversation.objects.create(owner=user, title=title, model="m", **fields)
    question = message_create(conversation=conversation, role="user", text=f"{title}?")
    answer = message_create(conversation=conversation, role="assistant", text="An answer.")
    conversation.question, conversation.answer = question, answer
    when = timezone.now() - datetime.timedelta(days=days)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=when)
    return conversation


def search_entries(conversation_id: int, message_ids: list[int]) -> int:
    """What the search index still holds of a conversation: on SQLite, rows of its FTS5
    tables; on PostgreSQL the vectors live on the rows themselves."""
    if connection.vendor != "sqlite":
        marks = ", ".join(["%s"] * len(message_ids))
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM conversations_message "  # noqa: S608
                f"WHERE search_vector IS NOT NULL AND id IN ({marks})",
                message_ids,
            )
            messages = cursor.fetchone()[0]
        return messages + Conversation.objects.filter(pk=conversation_id).count()
    with connection.cursor() as cursor:
        marks = ", ".join(["%s"] * len(message_ids))
        cursor.execute(
            f"SELECT count(*) FROM {search.MESSAGE_FTS} WHERE rowid IN ({marks})",  # noqa: S608
            message_ids,
        )
        messages = cursor.fetchone()[0]
        cursor.execute(
            f"SELECT count(*) FROM {search.TITLE_FTS} WHERE rowid = %s",  # noqa: S608
            [conversation_id],
        )
        return messages + cursor.fetchone()[0]


def run(**options) -> str:
    out = StringIO()
    call_command("retention", stdout=out, **options)
    return out.getvalue()


def test_old_conversations_go_with_everything_they_hold(user, media):
    old = conversation_aged(user, "Old", days=100)
    image = _attach(user, old.question)
    files = [media / image.original.name, media / image.sent.name]
    document = Document.objects.create(
        owner=user,
        message=old.question,
        name="a.txt",
        file="documents/a.txt",
        mime="text/plain",
        size=1,
        status="ready",
    )
    (media / "documents").mkdir()
    (media / "documents/a.txt").write_text("x")
    DocumentPage.objects.create(document=document, number=1, text="x", source="text")
    ToolCall.objects.create(message=old.answer, step=1, call_id="abcdefghi", name="t")
    Share.objects.create(conversation=old, message_ids=[old.question.pk])
    ApiCall.objects.create(kind="chat", model="m", user=user, conversation=old, status="complete")
    recent = conversation_aged(user, "Recent", days=5)
    indexed = (old.pk, [old.question.pk, old.answer.pk])
    assert search_entries(*indexed) == 3  # its title and both messages

    assert run(days=30) == (
        "Deleted 0 temporary chats whose session ended.\n"
        "Deleted 1 conversation inactive for more than 30 days; kept 0 waiting for a reviewer.\n"
    )
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Recent"]
    assert not Message.objects.filter(conversation_id=old.pk).exists()
    for model in (Attachment, Document, DocumentPage, ToolCall, Share):
        assert not model.objects.exists(), model
    assert not any(path.exists() for path in files)
    assert not (media / "documents/a.txt").exists()
    assert search_entries(*indexed) == 0
    [call] = ApiCall.objects.all()  # the usage stays, for the totals
    assert call.conversation_id is None and call.user_id == user.pk
    assert recent.messages.count() == 2


def test_what_a_reviewer_still_needs_stays_until_reviewed(user, other_user):
    reported = conversation_aged(user, "Reported", days=100)
    Report.objects.create(message=reported.answer, user=user, reason="wrong")
    conversation_aged(user, "Escalated", days=100, review_status="escalated")
    done = conversation_aged(user, "Reviewed", days=100, review_status="reviewed")
    Report.objects.create(message=done.answer, user=user)

    assert "Would delete 1 conversation" in run(days=30, dry_run=True)
    assert Conversation.objects.count() == 3  # a dry run deletes nothing
    assert "Deleted 1 conversation inactive for more than 30 days; kept 2" in run(days=30)
    assert set(Conversation.objects.values_list("title", flat=True)) == {"Reported", "Escalated"}


def test_without_a_retention_setting_nothing_is_deleted(user, settings):
    settings.CHAT_RETENTION_DAYS = 0
    conversation_aged(user, "Ancient", days=5000)
    assert run().endswith("CHAT_RETENTION_DAYS is 0: conversations are kept for ever.\n")
    assert Conversation.objects.count() == 1
    settings.CHAT_RETENTION_DAYS = 365
    assert "Deleted 1 conversation" in run()
