"""Reads. `access_*` functions fetch through the requesting user and raise not-found for
anyone else: they are the only road from a view, upload or frame to a conversation."""

from django.db.models import QuerySet

from .models import Attachment, Conversation, Message


class ConversationNotFound(Exception):
    """No such conversation for this user (missing and not-yours look the same)."""


def access_conversation(*, user, conversation_id: int) -> Conversation:
    try:
        return Conversation.objects.get(pk=conversation_id, owner=user)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise ConversationNotFound(conversation_id) from None


def access_message(*, user, message_id: int) -> Message:
    """A message through its conversation's owner."""
    try:
        return (
            Message.objects.select_related("conversation")
            .prefetch_related("attachments")
            .get(pk=message_id, conversation__owner=user)
        )
    except (Message.DoesNotExist, ValueError, TypeError):
        raise ConversationNotFound(message_id) from None


def conversation_list(*, user) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user).order_by("-updated_at", "-id")


def message_history(*, conversation_id: int, before_id: int | None = None) -> list[Message]:
    """The conversation's messages in order, optionally only those before a given message."""
    messages = Message.objects.filter(conversation_id=conversation_id)
    if before_id is not None:
        messages = messages.filter(id__lt=before_id)
    return list(messages.order_by("id").prefetch_related("attachments"))


def prompt_history(*, conversation_id: int, before_id: int) -> list[Message]:
    """The messages before an answer, for its model request: without their rendered HTML,
    which the request never uses and which is most of a long conversation's bytes."""
    return list(
        Message.objects.filter(conversation_id=conversation_id, id__lt=before_id)
        .defer("html")
        .order_by("id")
        .prefetch_related("attachments")  # a question's images go into the request
    )


def messages_since(*, conversation_id: int, since_id: int) -> list[Message]:
    """Messages from `since_id` on (inclusive), for a tab catching up after a reconnect."""
    return list(
        Message.objects.filter(conversation_id=conversation_id, id__gte=since_id)
        .order_by("id")
        .prefetch_related("attachments")
    )


def active_answers(*, conversation_id: int) -> list[Message]:
    """Answers still pending or streaming: what a tab that just opened must pick up."""
    return list(
        Message.objects.filter(
            conversation_id=conversation_id, status__in=Message.ACTIVE_STATUSES
        ).order_by("id")
    )


class AttachmentNotFound(Exception):
    """No such attachment for this user (missing and not-yours look the same)."""


def access_attachment(*, user, attachment_id: int, for_review: bool = False) -> Attachment:
    """An attachment through its owner; with `for_review`, staff reviewers may read any
    (they review transcripts in the admin). Anyone else gets not-found."""
    rows = Attachment.objects.all()
    if not (for_review and user.is_staff):
        rows = rows.filter(owner=user)
    try:
        return rows.get(pk=attachment_id)
    except (Attachment.DoesNotExist, ValueError, TypeError):
        raise AttachmentNotFound(attachment_id) from None
