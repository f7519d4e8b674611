"""Writes. Each is a sync function, atomic where it touches several rows; async callers
await it through `database_sync_to_async` and broadcast only after it returns (committed).

Over 500 lines: it is every write a user's action makes on their own rows (questions, the
conversation's settings, tools, schemas, pins, deletions, reports); the writes with a life
of their own live beside it (branches.py, answers.py, uploads.py, shares.py, imports.py)."""

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from conversations import limits, plain_sql
from conversations.limits import LimitReached
from conversations.models import (
    Attachment,
    Conversation,
    Document,
    Message,
    Report,
    ReviewAudit,
    SavedSchema,
    ToolCall,
)
from conversations.selectors import (
    ConversationNotFound,
    PromptMessage,
    access_conversation_for_question,
    access_message,
    conversations_for_questions,
    prompt_histories,
    prompt_history,
)


class AnswerInProgress(Exception):
    """The conversation already has an answer streaming; one at a time."""


class AttachmentsRejected(Exception):
    """Images or documents a message cannot be sent with; `code` is stable, `message` for
    people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Mistral takes at most 8 images per request (docs: studio/conversations/vision).
MAX_IMAGES_PER_MESSAGE = 8
# Documents a message may carry (each is read into pages before it can be sent).
MAX_DOCUMENTS_PER_MESSAGE = 10


@dataclass(frozen=True, slots=True)
class Submitted:
    """A question stored with its empty answer, and what the model request needs."""

    conversation: Conversation
    created: bool  # the question started a new conversation
    question: Message
    answer: Message
    history: list[PromptMessage]  # the conversation up to the answer


def check_attachments(*, owner, attachment_ids: list[int]) -> list[Attachment]:
    """The owner's unsent attachments with these ids, in the order given, or
    AttachmentsRejected: too many for one request, someone else's, missing, or already sent
    (all but the first look the same, as for conversations)."""
    if len(attachment_ids) > MAX_IMAGES_PER_MESSAGE:
        raise AttachmentsRejected(
            "too_many_images",
            f"A message can carry at most {MAX_IMAGES_PER_MESSAGE} images; this one has "
            f"{len(attachment_ids)}.",
        )
    if len(set(attachment_ids)) != len(attachment_ids):
        raise AttachmentsRejected("invalid_attachment", "The same image is attached twice.")
    found = {
        a.pk: a
        for a in Attachment.objects.filter(pk__in=attachment_ids, owner=owner, message__isnull=True)
    }
    if len(found) != len(attachment_ids):
        raise AttachmentsRejected(
            "invalid_attachment",
            "An attached image no longer exists or was already sent; attach it again.",
        )
    return [found[pk] for pk in attachment_ids]


@transaction.atomic
def message_submit(
    *,
    user,
    conversation_id: int | None,
    model: str,
    text: str,
    worker: str = "",
    attachment_ids: list[int] | None = None,
    document_ids: list[int] | None = None,
    tools: list[str] | None = None,
    temporary: bool = False,
    session_key: str = "",
) -> Submitted:
    """Create the question and its empty answer together (and the conversation, when
    `conversation_id` is None, with the `tools` switched on in the composer), so a reload
    never shows a question with nowhere for its answer to stream. Access is checked in the
    same trip: this is the one database call between a `send` frame and the model
    request."""
    if conversation_id is None:
        conversation = Conversation.objects.create(
            owner=user,
            model=model,
            tools=tools or [],
            temporary=temporary,
            session_key=session_key if temporary else "",
        )
    else:
        conversation, answering, parent_id = access_conversation_for_question(
            user=user, conversation_id=conversation_id
        )
        if answering:
            raise AnswerInProgress(conversation.pk)
    parent_id = None if conversation_id is None else parent_id
    question, answer = _question_rows(conversation, text, worker, parent_id)
    _pairs_insert([(question, answer)])
    if attachment_ids:
        link_attachments(question, owner=user, attachment_ids=attachment_ids)
    if document_ids:
        link_documents(question, owner=user, document_ids=document_ids)
    if conversation_id is not None:
        conversation.updated_at = question.created_at
        conversation.shown_leaf_id = None
        plain_sql.update(
            Conversation, conversation.pk, updated_at=question.created_at, shown_leaf=None
        )
    history = prompt_history(conversation_id=conversation.pk, leaf_id=question.pk)
    return Submitted(conversation, conversation_id is None, question, answer, history)


def _question_rows(
    conversation: Conversation, text: str, worker: str, parent_id: int | None
) -> tuple[Message, Message]:
    """A question after `parent_id` and its empty answer, not yet stored."""
    question = Message(
        conversation=conversation, role=Message.Role.USER, text=text, parent_id=parent_id
    )
    return question, new_answer_row(conversation, conversation.model, worker)


def new_answer_row(conversation: Conversation, model: str, worker: str) -> Message:
    """An empty answer, not yet stored; its parent is set once its question has a key."""
    return Message(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        model=model,
        worker=worker,
    )


def _pairs_insert(pairs: list[tuple[Message, Message]]) -> None:
    """INSERT questions, then their answers under them: two statements for any number of
    pairs, in plain SQL as this runs for every question sent."""
    plain_sql.insert_many([question for question, _ in pairs])
    for question, answer in pairs:
        answer.parent_id = question.pk
    plain_sql.insert_many([answer for _, answer in pairs])


@dataclass(frozen=True, slots=True)
class Question:
    """A question as a tab sends it: message_submit's arguments."""

    user: Any
    conversation_id: int | None
    model: str
    text: str
    worker: str = ""
    attachment_ids: list[int] | None = None
    document_ids: list[int] | None = None
    tools: list[str] | None = None  # a new conversation's, from the composer
    temporary: bool = False  # a new conversation's: a temporary chat, of this session
    session_key: str = ""

    @property
    def plain(self) -> bool:
        """Text for a conversation that exists, with no files: the common case."""
        return (
            self.conversation_id is not None and not self.attachment_ids and not self.document_ids
        )


def _submit_alone(question: Question) -> Submitted:
    return message_submit(
        user=question.user,
        conversation_id=question.conversation_id,
        model=question.model,
        text=question.text,
        worker=question.worker,
        attachment_ids=question.attachment_ids,
        document_ids=question.document_ids,
        tools=question.tools,
        temporary=question.temporary,
        session_key=question.session_key,
    )


@transaction.atomic
def questions_submit(questions: list[Question]) -> list[Submitted | Exception]:
    """message_submit for questions sent at the same moment (conversations/trips.py), each
    with its own result: its Submitted, or the exception message_submit would have raised
    for it (ConversationNotFound, AnswerInProgress, AttachmentsRejected).

    Plain questions share one statement per step: the access check, the INSERT of every
    question and answer, the conversations' `updated_at` and the histories; the rest go one
    by one, each in its own savepoint. A question for a conversation another question of
    the same batch has just asked in is refused as busy, as it would be a moment later."""
    results: list[Submitted | Exception | None] = [None] * len(questions)
    if limits.question_limits_on():
        now = timezone.now()
        recent = limits.recent_activity(sorted({q.user.pk for q in questions}), now=now)
        for position, question in enumerate(questions):
            try:
                limits.check_question(
                    recent[question.user.pk],
                    new_conversation=question.conversation_id is None,
                    now=now,
                )
            except LimitReached as err:
                results[position] = err
    found = conversations_for_questions([q.conversation_id for q in questions if q.plain])
    asked: dict[int, int] = {}  # conversation id → position of the question storing into it
    rows: list[tuple[Message, Message]] = []
    for position, question in enumerate(questions):
        if not question.plain or results[position] is not None:
            continue
        conversation, answering, parent_id = found.get(question.conversation_id, (None, 0, 0))
        if conversation is None or conversation.owner_id != question.user.pk:
            results[position] = ConversationNotFound(question.conversation_id)
        elif answering or conversation.pk in asked:
            results[position] = AnswerInProgress(conversation.pk)
        else:
            asked[conversation.pk] = position
            rows.append(_question_rows(conversation, question.text, question.worker, parent_id))
    if rows:
        _pairs_insert(rows)
        pairs = dict(zip(asked, rows, strict=True))
        now = rows[-1][1].created_at
        plain_sql.update_many(Conversation, list(asked), updated_at=now, shown_leaf=None)
        histories = prompt_histories({pk: question.pk for pk, (question, _) in pairs.items()})
        for pk, position in asked.items():
            question_row, answer = pairs[pk]
            conversation = question_row.conversation
            conversation.updated_at, conversation.shown_leaf_id = now, None
            results[position] = Submitted(conversation, False, question_row, answer, histories[pk])
    for position, question in enumerate(questions):
        if results[position] is None:
            try:
                results[position] = _submit_alone(question)
            except (ConversationNotFound, AnswerInProgress, AttachmentsRejected) as err:
                results[position] = err
    return results


def link_attachments(
    question: Message, *, owner, attachment_ids: list[int], first: int = 0
) -> None:
    """Give the question its images (placed from position `first`), inside its caller's
    transaction: AttachmentsRejected rolls back the question (and a conversation it
    started) with it."""
    attachments = check_attachments(owner=owner, attachment_ids=attachment_ids)
    # Only rows still unsent are taken: a second tab sending the same ids gets none.
    taken = sum(
        Attachment.objects.filter(pk=a.pk, message__isnull=True).update(
            message=question, position=position
        )
        for position, a in enumerate(attachments, first)
    )
    if taken != len(attachments):
        raise AttachmentsRejected(
            "invalid_attachment", "An attached image was already sent; attach it again."
        )
    for position, attachment in enumerate(attachments, first):
        attachment.message, attachment.position = question, position
    question.images = attachments


def link_documents(question: Message, *, owner, document_ids: list[int]) -> None:
    """Give the question its documents, inside its caller's transaction (a refusal
    rolls the question back), and note them in its parts by reference: the thread shows
    them and later requests find them without another query."""
    if len(document_ids) > MAX_DOCUMENTS_PER_MESSAGE:
        raise AttachmentsRejected(
            "too_many_documents",
            f"A message can carry at most {MAX_DOCUMENTS_PER_MESSAGE} documents; this one has "
            f"{len(document_ids)}.",
        )
    if len(set(document_ids)) != len(document_ids):
        raise AttachmentsRejected("invalid_document", "The same document is attached twice.")
    found = {
        d.pk: d
        for d in Document.objects.filter(pk__in=document_ids, owner=owner, message__isnull=True)
    }
    if len(found) != len(document_ids):
        raise AttachmentsRejected(
            "invalid_document",
            "An attached document no longer exists or was already sent; attach it again.",
        )
    documents = [found[pk] for pk in document_ids]
    for document in documents:
        if document.status != Document.Status.READY:
            raise AttachmentsRejected(
                "document_not_ready",
                f"{document.name}: "
                + (document.error or "still being read; send when its progress bar is full."),
            )
    taken = sum(
        Document.objects.filter(pk=d.pk, message__isnull=True).update(
            message=question, position=position
        )
        for position, d in enumerate(documents)
    )
    if taken != len(documents):
        raise AttachmentsRejected(
            "invalid_document", "An attached document was already sent; attach it again."
        )
    question.parts = [
        {"type": "document", "document": d.pk, "name": d.name, "pages": d.page_count}
        for d in documents
    ]
    question.save(update_fields=["parts"])


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    conversation.title = title.strip()[:200]
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_update_settings(
    *,
    conversation: Conversation,
    model: str,
    system_prompt: str,
    temperature: float | None,
    top_p: float | None,
    max_tokens: int | None,
    random_seed: int | None,
    safe_prompt: bool,
    answer_format: str,
    answer_schema_name: str,
    answer_schema: dict | None,
) -> Conversation:
    """Store validated settings; they apply from the next answer on."""
    conversation.model = model
    conversation.system_prompt = system_prompt
    conversation.temperature = temperature
    conversation.top_p = top_p
    conversation.max_tokens = max_tokens
    conversation.random_seed = random_seed
    conversation.safe_prompt = safe_prompt
    conversation.answer_format = answer_format
    conversation.answer_schema_name = answer_schema_name
    conversation.answer_schema = answer_schema
    conversation.save()
    return conversation


def conversation_tools_set(*, conversation: Conversation, keys: list[str]) -> Conversation:
    """The tools switched on for the conversation's next answers (keys the catalogue
    offered; the view checks them)."""
    conversation.tools = list(dict.fromkeys(keys))
    conversation.save(update_fields=["tools", "updated_at"])
    return conversation


# How many schemas one user may keep.
SAVED_SCHEMAS_MAX = 50


class TooManySchemas(Exception):
    """The user keeps SAVED_SCHEMAS_MAX schemas already."""


def schema_save(*, owner, name: str, schema: dict) -> SavedSchema:
    """Keep a schema under its name for the user to pick again (the same name replaces
    it); TooManySchemas past SAVED_SCHEMAS_MAX."""
    existing = SavedSchema.objects.filter(owner=owner, name=name).first()
    if existing is None:
        if SavedSchema.objects.filter(owner=owner).count() >= SAVED_SCHEMAS_MAX:
            raise TooManySchemas(SAVED_SCHEMAS_MAX)
        return SavedSchema.objects.create(owner=owner, name=name, schema=schema)
    existing.schema = schema
    existing.save(update_fields=["schema", "updated_at"])
    return existing


def schema_delete(*, saved: SavedSchema) -> None:
    saved.delete()


class CallNotWaiting(Exception):
    """A tool call decided already, or that never needed approval."""


def tool_call_decide(*, call: ToolCall, approve: bool) -> None:
    """The user's decision on a call waiting for approval, stored at once (a process that
    runs the answer elsewhere reads it from the row); CallNotWaiting when it is too late."""
    status = ToolCall.Status.RUNNING if approve else ToolCall.Status.REFUSED
    decided = ToolCall.objects.filter(pk=call.pk, status=ToolCall.Status.WAITING).update(
        status=status
    )
    if not decided:
        raise CallNotWaiting(call.pk)


def conversation_title_set(*, conversation_id: int, title: str) -> Conversation | None:
    """Store a generated title unless the user named the conversation meanwhile."""
    Conversation.objects.filter(pk=conversation_id, title="").update(title=title.strip()[:200])
    return Conversation.objects.filter(pk=conversation_id).first()


def conversation_delete(*, conversation: Conversation) -> None:
    conversation.delete()


@transaction.atomic
def conversations_delete(*, user, conversation_ids: list[int] | None) -> list[int]:
    """Delete these of the user's conversations, or all of them with None; the ids deleted
    (another user's ids and missing ones are left out, as if not asked for). Their images'
    and documents' files go once this commits (signals.py), unless a fork still names them."""
    rows = Conversation.objects.filter(owner=user)
    if conversation_ids is not None:
        rows = rows.filter(pk__in=conversation_ids)
    deleted = list(rows.order_by("id").values_list("pk", flat=True))
    Conversation.objects.filter(pk__in=deleted).delete()
    return deleted


class AccountNotDeletable(Exception):
    """The account holds rows that must outlive it (a reviewer's audit log); `message` is
    for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@transaction.atomic
def account_delete(*, user) -> None:
    """Delete the account and everything it owns: conversations, messages, images and
    documents (their files once this commits, signals.py), uploads, reports. Usage rows
    stay, without their user, for the totals. Every socket of the user is closed on commit
    (signals.sessions_end_on_delete). AccountNotDeletable for a reviewer with audit entries."""
    if ReviewAudit.objects.filter(staff=user).exists():
        raise AccountNotDeletable(
            "This account reviewed conversations, and the review log keeps its name: an "
            "administrator can deactivate it instead."
        )
    user.delete()


def conversation_pin(*, conversation: Conversation, pinned: bool) -> Conversation:
    """Pin (to the top of the sidebar) or unpin. Pinning an archived conversation brings it
    back: a pin is there to be seen. Neither changes `updated_at`, the order of the rest."""
    conversation.pinned_at = timezone.now() if pinned else None
    if pinned:
        conversation.archived_at = None
    conversation.save(update_fields=["pinned_at", "archived_at"])
    return conversation


def conversation_archive(*, conversation: Conversation, archived: bool) -> Conversation:
    """Archive (out of the sidebar, still found by search and by its URL) or bring back.
    Archiving unpins: the pinned list is part of the sidebar."""
    conversation.archived_at = timezone.now() if archived else None
    if archived:
        conversation.pinned_at = None
    conversation.save(update_fields=["pinned_at", "archived_at"])
    return conversation


# Review


class NotReportable(Exception):
    """Only an answer that has ended can be reported."""


REPORT_REASON_MAX_CHARS = 2000


def report_create(*, user, message_id: int, reason: str) -> Report:
    """A user's thumbs-down on one of their answers (ConversationNotFound for anyone
    else's, NotReportable while it streams or for a question). Reporting again replaces
    the reason, so a conversation is never queued twice for one answer."""
    message = access_message(user=user, message_id=message_id)
    if message.role != Message.Role.ASSISTANT or message.is_active:
        raise NotReportable(message_id)
    report, _ = Report.objects.update_or_create(
        message=message, user=user, defaults={"reason": reason.strip()[:REPORT_REASON_MAX_CHARS]}
    )
    return report


def conversation_review_set(
    *, conversation_ids: list[int], reviewer, status: str, notes: str | None = None
) -> int:
    """Set the review status (and, when given, the notes) of conversations. An update, not
    a save: the conversations' updated_at is the user's last activity and stays as it was.
    Returns how many were changed."""
    fields: dict = {"review_status": status, "reviewed_by": reviewer, "reviewed_at": timezone.now()}
    if notes is not None:
        fields["review_notes"] = notes
    return Conversation.objects.filter(pk__in=conversation_ids).update(**fields)


def review_audit_record(*, conversation: Conversation, staff) -> ReviewAudit:
    """Note that a staff member opened a conversation's transcript; the log is append-only."""
    return ReviewAudit.objects.create(
        conversation=conversation, conversation_title=str(conversation)[:200], staff=staff
    )
