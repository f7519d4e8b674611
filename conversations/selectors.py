"""Reads. `access_*` functions fetch through the requesting user and raise not-found for
anyone else: they are the only road from a view, upload or frame to a conversation."""

from collections import defaultdict

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
        message = Message.objects.select_related("conversation").get(
            pk=message_id, conversation__owner=user
        )
    except (Message.DoesNotExist, ValueError, TypeError):
        raise ConversationNotFound(message_id) from None
    return with_images([message])[0]


def conversation_list(*, user) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user).order_by("-updated_at", "-id")


def message_history(*, conversation_id: int, before_id: int | None = None) -> list[Message]:
    """The conversation's messages in order, optionally only those before a given message."""
    messages = Message.objects.filter(conversation_id=conversation_id)
    if before_id is not None:
        messages = messages.filter(id__lt=before_id)
    return with_images(list(messages.order_by("id")))


def prompt_history(*, conversation_id: int, before_id: int) -> list[Message]:
    """The messages before an answer, for its model request: only the fields the request
    uses (building every field of a long conversation's rows, rendered HTML and dates
    included, was most of the cost of sending a message)."""
    return with_images(
        list(
            Message.objects.filter(conversation_id=conversation_id, id__lt=before_id)
            .only("id", "conversation_id", "role", "text")
            .order_by("id")
        )
    )


def messages_since(*, conversation_id: int, since_id: int) -> list[Message]:
    """Messages from `since_id` on (inclusive), for a tab catching up after a reconnect."""
    messages = Message.objects.filter(conversation_id=conversation_id, id__gte=since_id)
    return with_images(list(messages.order_by("id")))


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


def with_images(messages: list[Message]) -> list[Message]:
    """Give each question its images (`message.images`, in the order attached), read in one
    query for all. Django's prefetch_related builds a queryset for every row, which cost
    more than reading the rows themselves on a long conversation."""
    questions = [m for m in messages if m.role == Message.Role.USER]
    by_message: defaultdict[int, list[Attachment]] = defaultdict(list)
    if questions:
        ids = [m.pk for m in questions]
        attachments = Attachment.objects.filter(
            message__conversation_id=questions[0].conversation_id,
            message_id__gte=min(ids),
            message_id__lte=max(ids),
        ).order_by("message_id", "position", "id")
        for attachment in attachments:
            by_message[attachment.message_id].append(attachment)
    for message in questions:
        message.images = by_message.get(message.pk, [])
    return messages
