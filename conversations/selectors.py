"""Reads. `access_*` functions fetch through the requesting user and raise not-found for
anyone else: they are the only road from a view, upload or frame to a conversation."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import (
    Case,
    Count,
    DecimalField,
    Exists,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from conversations import plain_sql
from conversations.models import (
    ApiCall,
    Attachment,
    Conversation,
    Document,
    DocumentPage,
    Message,
    Report,
)


class ConversationNotFound(Exception):
    """No such conversation for this user (missing and not-yours look the same)."""


def access_conversation(*, user, conversation_id: int) -> Conversation:
    try:
        return Conversation.objects.get(pk=conversation_id, owner=user)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise ConversationNotFound(conversation_id) from None


def access_conversation_for_question(*, user, conversation_id: int) -> tuple[Conversation, bool]:
    """The user's conversation, row-locked where the database can, and whether an answer
    is pending or streaming in it: the check before a question is stored."""
    found = conversations_for_questions([conversation_id]).get(conversation_id)
    if found is None or found[0].owner_id != user.pk:
        raise ConversationNotFound(conversation_id)
    return found


def conversations_for_questions(conversation_ids: list) -> dict[int, tuple[Conversation, bool]]:
    """The conversations with these ids, row-locked where the database can, each with
    whether an answer is pending or streaming in it; ids that are not valid keys are left
    out, and the caller checks the owner. One plain SQL query (conversations/plain_sql.py)
    because it runs for every question sent."""
    valid = sorted({i for i in conversation_ids if isinstance(i, int) and 0 < i < 1 << 63})
    if not valid:
        return {}
    active = ", ".join(["%s"] * len(Message.ACTIVE_STATUSES))
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    found = plain_sql.read_models(
        Conversation,
        extra=f"EXISTS (SELECT 1 FROM {plain_sql.quote(Message._meta.db_table)} m"  # noqa: S608
        f" WHERE m.conversation_id = t.id AND m.status IN ({active}))",
        where=f"t.id IN ({', '.join(['%s'] * len(valid))}) ORDER BY t.id{lock}",
        params=[*Message.ACTIVE_STATUSES, *valid],
    )
    return {row.pk: (row, bool(answering)) for row, (answering,) in found}


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


def conversation_page(
    *, user, before: tuple[datetime, int] | None, size: int
) -> tuple[list[Conversation], bool]:
    """One page of the user's conversations, newest first, after the (updated_at, id) of
    `before` (the last row of the previous page), and whether more follow: by keyset, so
    the thousandth page costs what the first does."""
    rows = conversation_list(user=user).only("id", "title", "updated_at")
    if before is not None:
        updated_at, pk = before
        rows = rows.filter(Q(updated_at__lt=updated_at) | Q(updated_at=updated_at, id__lt=pk))
    rows = list(rows[: size + 1])
    return rows[:size], len(rows) > size


def message_history(*, conversation_id: int, before_id: int | None = None) -> list[Message]:
    """The conversation's messages in order, optionally only those before a given message."""
    messages = Message.objects.filter(conversation_id=conversation_id)
    if before_id is not None:
        messages = messages.filter(id__lt=before_id)
    return with_images(list(messages.order_by("id")))


def message_window(
    *, conversation_id: int, before_id: int | None = None, limit: int
) -> tuple[list[Message], bool]:
    """The newest `limit` messages (before `before_id`, when given), in order, and whether
    earlier ones exist: a long conversation's page shows its end, and the rest on demand."""
    messages = Message.objects.filter(conversation_id=conversation_id)
    if before_id is not None:
        messages = messages.filter(id__lt=before_id)
    newest = list(messages.order_by("-id")[: limit + 1])
    earlier = len(newest) > limit
    return with_images(newest[:limit][::-1]), earlier


@dataclass(slots=True)
class PromptMessage:
    """A message as a model request reads it: role, text, parts and, on a question, its
    images in the order attached."""

    pk: int
    conversation_id: int
    role: str
    text: str
    parts: list
    images: list[Attachment] | None = None


def prompt_history(*, conversation_id: int, before_id: int) -> list[PromptMessage]:
    """The messages before an answer, for its model request, with their images: one query,
    and a second only when a question has images.

    Plain SQL: this runs for every question sent, in the database thread the relay shares
    the GIL with, and building model instances and querysets for a 30-message conversation
    cost 1.3 ms against 0.1 ms for the same rows read plainly (docs/performance.md)."""
    return prompt_histories({conversation_id: before_id})[conversation_id]


def prompt_histories(before: dict[int, int]) -> dict[int, list[PromptMessage]]:
    """prompt_history for several answers at once, by conversation id (one answer each,
    `before` maps a conversation to its answer's id): the same two queries for all."""
    quote = plain_sql.quote
    parts_field = Message._meta.get_field("parts")
    ids = ", ".join(["%s"] * len(before))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.id, m.conversation_id, m.role, m.text, m.parts, EXISTS (SELECT 1 FROM "  # noqa: S608
            f"{quote(Attachment._meta.db_table)} a WHERE a.message_id = m.id) "
            f"FROM {quote(Message._meta.db_table)} m "
            f"WHERE m.conversation_id IN ({ids}) AND m.id < %s ORDER BY m.id",
            [*before, max(before.values())],
        )
        rows = cursor.fetchall()
    histories: dict[int, list[PromptMessage]] = {conversation_id: [] for conversation_id in before}
    with_images = []
    for pk, conversation_id, role, text, parts, has_images in rows:
        if pk >= before[conversation_id]:
            continue
        message = PromptMessage(
            pk,
            conversation_id,
            role,
            text,
            parts_field.from_db_value(parts, None, connection) if parts != "[]" else [],
        )
        if role == Message.Role.USER:
            message.images = []
            if has_images:
                with_images.append(message)
        histories[conversation_id].append(message)
    if with_images:
        by_id = {message.pk: message for message in with_images}
        attachments = Attachment.objects.filter(message_id__in=by_id).order_by(
            "message_id", "position", "id"
        )
        for attachment in attachments:
            by_id[attachment.message_id].images.append(attachment)
    return histories


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


def _reviewer(user) -> bool:
    """Staff who may view conversations: the admin shows them every transcript."""
    return user.is_staff and user.has_perm("conversations.view_conversation")


def _own_or_sent(user, *, for_review: bool) -> Q:
    """A file its owner may read; with `for_review`, a reviewer may also read one sent in
    a conversation, as its transcript shows it, but not one still in someone's composer
    (or removed from it) that no transcript holds."""
    if for_review and _reviewer(user):
        return Q(owner=user) | Q(message__isnull=False)
    return Q(owner=user)


def access_attachment(*, user, attachment_id: int, for_review: bool = False) -> Attachment:
    """An attachment through its owner; with `for_review`, reviewers may read any that was
    sent in a conversation. Anyone else gets not-found."""
    rows = Attachment.objects.filter(_own_or_sent(user, for_review=for_review))
    try:
        return rows.get(pk=attachment_id)
    except (Attachment.DoesNotExist, ValueError, TypeError):
        raise AttachmentNotFound(attachment_id) from None


class DocumentNotFound(Exception):
    """No such document for this user (missing and not-yours look the same)."""


def access_document(*, user, document_id: int, for_review: bool = False) -> Document:
    """A document through its owner; with `for_review`, reviewers may read any that was
    sent in a conversation, as for attachments. Anyone else gets not-found."""
    rows = Document.objects.filter(_own_or_sent(user, for_review=for_review))
    try:
        return rows.get(pk=document_id)
    except (Document.DoesNotExist, ValueError, TypeError):
        raise DocumentNotFound(document_id) from None


def document_ids_of(messages: list[Message] | list[PromptMessage]) -> list[int]:
    """The documents sent with these questions, oldest first (from their stored parts)."""
    return [
        part["document"]
        for message in messages
        if message.role == Message.Role.USER
        for part in message.parts or []
        if isinstance(part, dict) and part.get("type") == "document"
    ]


def documents_with_pages(*, document_ids: list[int]) -> list[Document]:
    """Ready documents in the order of `document_ids`, each with its pages in order as
    `page_list`: two queries whatever their number."""
    ready = Document.objects.filter(pk__in=document_ids, status=Document.Status.READY)
    found = {d.pk: d for d in ready}
    for document in found.values():
        document.page_list = []
    pages = DocumentPage.objects.filter(document_id__in=list(found)).order_by(
        "document_id", "number"
    )
    for page in pages:
        found[page.document_id].page_list.append(page)
    return [found[pk] for pk in dict.fromkeys(document_ids) if pk in found]


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


# Review (the admin)


def review_queue() -> QuerySet[Conversation]:
    """Every conversation with what the review list shows: message count, tokens, cost and
    whether an answer was reported, each a subquery of the one SELECT, so a page costs the
    same few queries whatever its size. Reported conversations not yet reviewed come first
    (`review_priority` 0), then the most recently active."""
    per_conversation = {"conversation": OuterRef("pk")}
    calls = ApiCall.objects.filter(**per_conversation).order_by().values("conversation")
    count = (
        Message.objects.filter(**per_conversation)
        .order_by()
        .values("conversation")
        .annotate(n=Count("id"))
        .values("n")
    )
    tokens = calls.annotate(t=Sum("prompt_tokens") + Sum("completion_tokens")).values("t")
    cost = calls.annotate(c=Sum("cost_usd")).values("c")
    money = DecimalField(max_digits=14, decimal_places=8)
    return Conversation.objects.select_related("owner").annotate(
        message_count=Coalesce(Subquery(count, output_field=IntegerField()), 0),
        tokens=Coalesce(Subquery(tokens, output_field=IntegerField()), 0),
        cost=Coalesce(Subquery(cost, output_field=money), Value(Decimal(0)), output_field=money),
        reported=Exists(Report.objects.filter(message__conversation=OuterRef("pk"))),
        review_priority=review_priority(),
    )


def review_priority() -> Case:
    """0 for a conversation with a reported answer and a review not finished, else 1: an
    expression, so the admin can order by it even where review_queue() was not used."""
    return Case(
        When(
            Exists(Report.objects.filter(message__conversation=OuterRef("pk")))
            & ~Q(review_status=Conversation.ReviewStatus.REVIEWED),
            then=Value(0),
        ),
        default=Value(1),
        output_field=IntegerField(),
    )


def reported_message_ids(*, user, conversation_id: int) -> set[int]:
    """The answers of a conversation its user has reported, to show them as reported."""
    return set(
        Report.objects.filter(user=user, message__conversation_id=conversation_id).values_list(
            "message_id", flat=True
        )
    )


def review_transcript(*, conversation_id: int) -> list[Message]:
    """A conversation's messages for a reviewer: each with its images, its documents
    (`review_documents`), its reports (`review_reports`) and the API calls that produced it
    (`review_calls`), in five queries whatever its length."""
    messages = message_history(conversation_id=conversation_id)
    reports: defaultdict[int, list[Report]] = defaultdict(list)
    for report in Report.objects.filter(message__conversation_id=conversation_id).select_related(
        "user"
    ):
        reports[report.message_id].append(report)
    calls: defaultdict[int, list[ApiCall]] = defaultdict(list)
    for call in ApiCall.objects.filter(message__conversation_id=conversation_id).order_by("id"):
        calls[call.message_id].append(call)
    documents: defaultdict[int, list[Document]] = defaultdict(list)
    for document in Document.objects.filter(message__conversation_id=conversation_id).order_by(
        "message_id", "position", "id"
    ):
        documents[document.message_id].append(document)
    for message in messages:
        message.review_documents = documents.get(message.pk, [])
        message.review_reports = reports.get(message.pk, [])
        message.review_calls = calls.get(message.pk, [])
    return messages
