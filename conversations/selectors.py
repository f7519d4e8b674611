"""Reads. `access_*` functions fetch through the requesting user and raise not-found for
anyone else: they are the only road from a view, upload or frame to a conversation.

Just over 400 lines: every read of a user's own rows; the review panel's reads are in
review/reads.py, search in search.py, exports in exports.py."""

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import (
    Q,
    QuerySet,
)

from conversations import plain_sql
from conversations.models import (
    Attachment,
    Conversation,
    Document,
    DocumentPage,
    Message,
    Report,
    SavedSchema,
    ToolCall,
)
from conversations.tree import Tree, shown_leaf


class ConversationNotFound(Exception):
    """No such conversation for this user (missing and not-yours look the same)."""


def access_conversation(*, user, conversation_id: int) -> Conversation:
    try:
        return Conversation.objects.get(pk=conversation_id, owner=user)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise ConversationNotFound(conversation_id) from None


def access_conversation_for_question(
    *, user, conversation_id: int
) -> tuple[Conversation, bool, int | None]:
    """The user's conversation, row-locked where the database can, whether an answer is
    pending or streaming in it, and the message a new question follows: the check before a
    question is stored."""
    found = conversations_for_questions([conversation_id]).get(conversation_id)
    if found is None or found[0].owner_id != user.pk:
        raise ConversationNotFound(conversation_id)
    return found


def conversations_for_questions(
    conversation_ids: list,
) -> dict[int, tuple[Conversation, bool, int | None]]:
    """The conversations with these ids, row-locked where the database can, each with
    whether an answer is pending or streaming in it and the message a new question follows
    (the end of the branch shown: the one chosen, else the newest message); ids that are
    not valid keys are left out, and the caller checks the owner. One plain SQL query
    (conversations/plain_sql.py) because it runs for every question sent."""
    valid = sorted({i for i in conversation_ids if isinstance(i, int) and 0 < i < 1 << 63})
    if not valid:
        return {}
    active = ", ".join(["%s"] * len(Message.ACTIVE_STATUSES))
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    table = plain_sql.quote(Message._meta.db_table)
    found = plain_sql.read_models(
        Conversation,
        extra=f"EXISTS (SELECT 1 FROM {table} m"  # noqa: S608
        f" WHERE m.conversation_id = t.id AND m.status IN ({active})),"
        f" (SELECT MAX(n.id) FROM {table} n WHERE n.conversation_id = t.id)",
        where=f"t.id IN ({', '.join(['%s'] * len(valid))}) ORDER BY t.id{lock}",
        params=[*Message.ACTIVE_STATUSES, *valid],
    )
    return {
        row.pk: (row, bool(answering), row.shown_leaf_id or newest)
        for row, (answering, newest) in found
    }


def access_message(*, user, message_id: int) -> Message:
    """A message through its conversation's owner."""
    try:
        message = Message.objects.select_related("conversation").get(
            pk=message_id, conversation__owner=user
        )
    except (Message.DoesNotExist, ValueError, TypeError):
        raise ConversationNotFound(message_id) from None
    return with_images([message])[0]


def access_tool_call(*, user, call_id: int) -> ToolCall:
    """A tool call through its answer's conversation's owner."""
    try:
        return ToolCall.objects.select_related("message").get(
            pk=call_id, message__conversation__owner=user
        )
    except (ToolCall.DoesNotExist, ValueError, TypeError):
        raise ConversationNotFound(call_id) from None


def saved_schemas(*, user) -> list[SavedSchema]:
    return list(SavedSchema.objects.filter(owner=user).order_by("name"))


def access_saved_schema(*, user, schema_id: int) -> SavedSchema:
    try:
        return SavedSchema.objects.get(pk=schema_id, owner=user)
    except (SavedSchema.DoesNotExist, ValueError, TypeError):
        raise ConversationNotFound(schema_id) from None


def with_tool_calls(messages: list[Message]) -> list[Message]:
    """The answers among `messages` with their tool calls in order as `tool_call_list`:
    one query, and none when there is no answer."""
    answers = {m.pk: m for m in messages if m.role == Message.Role.ASSISTANT}
    if not answers:
        return messages
    for message in answers.values():
        message.tool_call_list = []
    for call in ToolCall.objects.filter(message_id__in=list(answers)).order_by(
        "message_id", "step", "position"
    ):
        answers[call.message_id].tool_call_list.append(call)
    return messages


def conversation_list(*, user) -> QuerySet[Conversation]:
    """The user's conversations, newest first; temporary chats are in no list."""
    return Conversation.objects.filter(owner=user, temporary=False).order_by("-updated_at", "-id")


_SIDEBAR_FIELDS = ("id", "title", "updated_at", "pinned_at", "archived_at")


def conversation_page(
    *, user, before: tuple[datetime, int] | None, size: int, archived: bool = False
) -> tuple[list[Conversation], bool]:
    """One page of the user's unpinned conversations that are not archived (or, with
    `archived`, of the archived ones), newest first, after the (updated_at, id) of
    `before` (the last row of the previous page), and whether more follow: by keyset, so
    the thousandth page costs what the first does."""
    rows = conversation_list(user=user).only(*_SIDEBAR_FIELDS)
    if archived:
        rows = rows.filter(archived_at__isnull=False)
    else:
        rows = rows.filter(archived_at__isnull=True, pinned_at__isnull=True)
    if before is not None:
        updated_at, pk = before
        rows = rows.filter(Q(updated_at__lt=updated_at) | Q(updated_at=updated_at, id__lt=pk))
    rows = list(rows[: size + 1])
    return rows[:size], len(rows) > size


def conversations_pinned(*, user) -> list[Conversation]:
    """The user's pinned conversations, the newest pin first: all of them, above the pages
    of the rest."""
    rows = Conversation.objects.filter(
        owner=user, pinned_at__isnull=False, archived_at=None, temporary=False
    )
    return list(rows.only(*_SIDEBAR_FIELDS).order_by("-pinned_at", "-id"))


def message_history(*, conversation_id: int, before_id: int | None = None) -> list[Message]:
    """The conversation's messages in order, optionally only those before a given message."""
    messages = Message.objects.filter(conversation_id=conversation_id)
    if before_id is not None:
        messages = messages.filter(id__lt=before_id)
    return with_images(list(messages.order_by("id")))


def message_window(
    *, path: "ShownPath", before_id: int | None = None, limit: int
) -> tuple[list[Message], bool]:
    """The newest `limit` messages of the shown branch (before `before_id`, when given), in
    order, each with its siblings, and whether earlier ones exist: a long conversation's
    page shows its end, and the rest on demand."""
    ids = path.ids
    if before_id is not None:
        ids = ids[: bisect.bisect_left(ids, before_id)]
    window = ids[-limit:] if limit else []
    messages = list(Message.objects.filter(pk__in=window).order_by("id")) if window else []
    return with_siblings(with_images(messages), path.tree), len(ids) > len(window)


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


def prompt_history(*, conversation_id: int, leaf_id: int) -> list[PromptMessage]:
    """The path of messages from the conversation's first question down to `leaf_id` (the
    question being answered, or an answer being continued), for a model request, with
    their images: one query, and a second only when a question has images. Nothing from
    other branches.

    Plain SQL: this runs for every question sent, in the database thread the relay shares
    the GIL with, and building model instances and querysets for a 30-message conversation
    cost 1.3 ms against 0.1 ms for the same rows read plainly (docs/performance.md)."""
    return prompt_histories({conversation_id: leaf_id})[conversation_id]


def prompt_histories(leaves: dict[int, int]) -> dict[int, list[PromptMessage]]:
    """prompt_history for several answers at once, by conversation id (`leaves` maps a
    conversation to the last message of its path): the same two queries for all."""
    quote = plain_sql.quote
    parts_field = Message._meta.get_field("parts")
    ids = ", ".join(["%s"] * len(leaves))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.id, m.parent_id, m.conversation_id, m.role, m.text, m.parts, EXISTS ("  # noqa: S608
            f"SELECT 1 FROM {quote(Attachment._meta.db_table)} a WHERE a.message_id = m.id) "
            f"FROM {quote(Message._meta.db_table)} m "
            f"WHERE m.conversation_id IN ({ids}) AND m.id <= %s ORDER BY m.id",
            [*leaves, max(leaves.values())],
        )
        rows = {row[0]: row for row in cursor.fetchall()}
    histories: dict[int, list[PromptMessage]] = {}
    with_images = []
    for conversation_id, leaf in leaves.items():
        path = []
        node = leaf if leaf in rows and rows[leaf][2] == conversation_id else None
        while node is not None:
            pk, parent, _, role, text, parts, has_images = rows[node]
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
            path.append(message)
            node = parent
        histories[conversation_id] = path[::-1]
    if with_images:
        by_id = {message.pk: message for message in with_images}
        attachments = Attachment.objects.filter(message_id__in=by_id).order_by(
            "message_id", "position", "id"
        )
        for attachment in attachments:
            by_id[attachment.message_id].images.append(attachment)
    return histories


def conversation_tree(*, conversation_id: int) -> Tree:
    """The conversation's shape: every message's id and parent, in one query of two
    integer columns."""
    pairs = Message.objects.filter(conversation_id=conversation_id).order_by("id")
    return Tree.of(list(pairs.values_list("id", "parent_id")))


@dataclass(frozen=True, slots=True)
class ShownPath:
    """The branch a conversation shows: its tree, the ids from the first question to the
    leaf, and that leaf."""

    tree: Tree
    ids: list[int]

    @property
    def leaf(self) -> int | None:
        return self.ids[-1] if self.ids else None


def shown_path(conversation: Conversation) -> ShownPath:
    """The branch the conversation shows (the one last chosen, else the newest message's)."""
    tree = conversation_tree(conversation_id=conversation.pk)
    leaf = shown_leaf(tree, conversation.shown_leaf_id)
    return ShownPath(tree, tree.path_to(leaf) if leaf is not None else [])


def with_siblings(messages: list[Message], tree: Tree) -> list[Message]:
    """Give each message its siblings' ids (`message.siblings`, itself included, oldest
    first): what the thread's "‹ 2/3 ›" shows and switches between."""
    for message in messages:
        message.siblings = list(tree.siblings(message.pk)) if message.pk in tree else [message.pk]
    return messages


@dataclass(frozen=True, slots=True)
class Since:
    messages: list[Message]
    reload: bool  # `since` is not on the branch shown: the tab must show the whole branch


def messages_since(*, conversation: Conversation, since_id: int) -> Since:
    """The shown branch's messages from `since_id` on (inclusive), for a tab catching up
    after a reconnect; when the tab's newest message is not on that branch any more (it
    was switched meanwhile), the tab reloads the thread instead."""
    path = shown_path(conversation)
    if since_id not in path.ids:
        return Since([], reload=True)
    ids = path.ids[path.ids.index(since_id) :]
    messages = list(Message.objects.filter(pk__in=ids).order_by("id"))
    return Since(with_siblings(with_images(messages), path.tree), reload=False)


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


def reported_message_ids(*, user, conversation_id: int) -> set[int]:
    """The answers of a conversation its user has reported, to show them as reported."""
    return set(
        Report.objects.filter(user=user, message__conversation_id=conversation_id).values_list(
            "message_id", flat=True
        )
    )
