"""Writes of the conversation as a tree (conversations/tree.py): an answer regenerated or a
question edited adds a sibling, never overwrites; the branch shown is switched; an answer
cut short is continued; a conversation is forked from any message into a new one.

Like services.py, each is a sync function, atomic, and the caller broadcasts once it has
returned (committed). One answer streams at a time in a conversation, on any branch.
"""

from dataclasses import dataclass

from django.db import transaction

from conversations import limits
from conversations.answers import Earlier
from conversations.models import Attachment, Conversation, Document, DocumentPage, Message
from conversations.selectors import (
    PromptMessage,
    ShownPath,
    conversation_tree,
    prompt_history,
)
from conversations.services import (
    MAX_IMAGES_PER_MESSAGE,
    AnswerInProgress,
    AttachmentsRejected,
    link_attachments,
    link_documents,
    new_answer_row,
)

# What a cut answer's finish reason or status must be for Continue: the length limit cut
# it, or a Stop, a restart or a broken stream did.
CONTINUABLE_FINISH = ("length", "model_length")
CONTINUABLE_STATUS = (Message.Status.STOPPED, Message.Status.INTERRUPTED)


class NotBranchable(Exception):
    """The message cannot take this action (a question asked to regenerate, an answer
    still streaming, an answer that was not cut); `message` is for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Branched:
    """A new answer (after a new question, for an edit) on a new branch, ready to stream."""

    conversation: Conversation
    answer: Message
    history: list[PromptMessage]  # the path the request carries, down to the question
    question: Message | None = None  # the edited question, when there is one


def _busy_check(conversation: Conversation) -> None:
    if conversation.messages.filter(status__in=Message.ACTIVE_STATUSES).exists():
        raise AnswerInProgress(conversation.pk)


def _locked(conversation_id: int) -> Conversation:
    return Conversation.objects.select_for_update().get(pk=conversation_id)


@transaction.atomic
def answer_regenerate(*, answer: Message, model: str | None = None, worker: str = "") -> Branched:
    """A new answer to `answer`'s question, beside it, by `model` (else the conversation's
    model); the conversation then shows it. AnswerInProgress while any answer of the
    conversation streams; LimitReached when its owner has no room for another answer."""
    conversation = _locked(answer.conversation_id)
    if answer.role != Message.Role.ASSISTANT:
        raise NotBranchable("Only an answer can be regenerated.")
    _busy_check(conversation)
    limits.check_retry(user_id=conversation.owner_id)
    new = new_answer_row(conversation, model or conversation.model, worker)
    new.parent_id = answer.parent_id
    new.save()
    new.siblings = _siblings(new)
    _show_newest(conversation)
    history = prompt_history(conversation_id=conversation.pk, leaf_id=answer.parent_id)
    return Branched(conversation, new, history)


@transaction.atomic
def question_edit(
    *,
    question: Message,
    text: str,
    attachment_ids: list[int],
    document_ids: list[int],
    worker: str = "",
) -> Branched:
    """A new question beside `question`, with this text and these files, and its empty
    answer; the conversation then shows it. The files may be the edited question's own
    (kept: its images are copied, sharing their files; its documents are referred to) or
    new uploads. AttachmentsRejected rolls everything back."""
    conversation = _locked(question.conversation_id)
    if question.role != Message.Role.USER:
        raise NotBranchable("Only a question can be edited.")
    _busy_check(conversation)
    limits.check_retry(user_id=conversation.owner_id)
    new = Message(
        conversation=conversation, role=Message.Role.USER, text=text, parent_id=question.parent_id
    )
    new.save()
    own_images = {a.pk: a for a in question.attachments.all()}
    kept = [own_images[pk] for pk in attachment_ids if pk in own_images]
    uploaded = [pk for pk in attachment_ids if pk not in own_images]
    if len(attachment_ids) > MAX_IMAGES_PER_MESSAGE:
        raise AttachmentsRejected(
            "too_many_images",
            f"A message can carry at most {MAX_IMAGES_PER_MESSAGE} images; this one has "
            f"{len(attachment_ids)}.",
        )
    if len(attachment_ids) > len(set(attachment_ids)):
        raise AttachmentsRejected("invalid_attachment", "The same image is attached twice.")
    copies = [_attachment_copy(a, new, position) for position, a in enumerate(kept)]
    Attachment.objects.bulk_create(copies)
    if uploaded:
        link_attachments(new, owner=conversation.owner, attachment_ids=uploaded, first=len(kept))
    own_documents = {
        part["document"]: part
        for part in question.parts
        if isinstance(part, dict) and part.get("type") == "document"
    }
    kept_parts = [own_documents[pk] for pk in document_ids if pk in own_documents]
    fresh = [pk for pk in document_ids if pk not in own_documents]
    if fresh:
        link_documents(new, owner=conversation.owner, document_ids=fresh)
    if kept_parts:
        new.parts = kept_parts + new.parts
        new.save(update_fields=["parts"])
    if not text.strip() and not new.parts and not attachment_ids:
        raise NotBranchable("The message is empty.")
    answer = new_answer_row(conversation, conversation.model, worker)
    answer.parent_id = new.pk
    answer.save()
    new.siblings, answer.siblings = _siblings(new), [answer.pk]
    new.images = list(new.attachments.order_by("position", "id"))
    _show_newest(conversation)
    history = prompt_history(conversation_id=conversation.pk, leaf_id=new.pk)
    return Branched(conversation, answer, history, question=new)


def _attachment_copy(attachment: Attachment, message: Message, position: int) -> Attachment:
    """A row for the same image in another message, not yet stored: its files are shared,
    and go when the last row naming them does (signals.attachment_files_delete)."""
    fields = {f.attname: getattr(attachment, f.attname) for f in Attachment._meta.concrete_fields}
    copy = Attachment(**{**fields, "id": None})
    copy.message, copy.position = message, position
    return copy


def _siblings(message: Message) -> list[int]:
    rows = Message.objects.filter(conversation_id=message.conversation_id, parent=message.parent_id)
    return list(rows.order_by("id").values_list("id", flat=True))


def _show_newest(conversation: Conversation) -> None:
    """The branch of the newest message is shown: the one just made."""
    conversation.shown_leaf = None
    conversation.save(update_fields=["shown_leaf", "updated_at"])


@transaction.atomic
def branch_switch(*, conversation: Conversation, message_id: int) -> ShownPath:
    """Show the branch through `message_id` (a sibling the reader chose), down through each
    message's newest child; every tab then shows it. NotBranchable for a message of
    another conversation."""
    tree = conversation_tree(conversation_id=conversation.pk)
    if message_id not in tree:
        raise NotBranchable("No such message in this conversation.")
    leaf = tree.leaf_under(message_id)
    Conversation.objects.filter(pk=conversation.pk).update(shown_leaf=leaf)
    conversation.shown_leaf_id = leaf
    return ShownPath(tree, tree.path_to(leaf))


@transaction.atomic
def answer_continue(*, answer: Message, worker: str = "") -> tuple[Branched, Earlier]:
    """Reopen an answer cut by the length limit (or by Stop, or a broken stream) to write on
    from its last word: its text is kept and the continuation appended. The request carries
    the path down to the answer itself, which the model continues."""
    conversation = _locked(answer.conversation_id)
    answer = Message.objects.get(pk=answer.pk)
    cut = answer.finish_reason in CONTINUABLE_FINISH or answer.status in CONTINUABLE_STATUS
    if answer.role != Message.Role.ASSISTANT or not answer.text or not cut:
        raise NotBranchable("Only an answer cut short can be continued.")
    _busy_check(conversation)
    limits.check_retry(user_id=conversation.owner_id)
    earlier = Earlier(
        answer.prompt_tokens, answer.completion_tokens, answer.usage_estimated, answer.cost_usd
    )
    answer.status = Message.Status.PENDING
    answer.worker = worker
    answer.stop_requested = False
    answer.error_code = answer.error_text = answer.finish_reason = ""
    answer.model = answer.model or conversation.model
    answer.save()
    conversation.save(update_fields=["updated_at"])
    history = prompt_history(conversation_id=conversation.pk, leaf_id=answer.pk)
    return Branched(conversation, answer, history), earlier


@dataclass(frozen=True, slots=True)
class Forked:
    conversation: Conversation
    draft: str  # a question forked from: its text, for the new conversation's composer


@transaction.atomic
def conversation_fork(*, conversation: Conversation, message_id: int) -> Forked:
    """A new conversation holding the path down to `message_id` (down to the question before
    it, when it is a question, whose text comes back as a draft to ask anew), with the
    same settings, images and documents. The copies share the files; the original can be
    deleted without touching the fork."""
    tree = conversation_tree(conversation_id=conversation.pk)
    if message_id not in tree:
        raise NotBranchable("No such message in this conversation.")
    ids = tree.path_to(message_id)
    messages = {m.pk: m for m in Message.objects.filter(pk__in=ids)}
    draft = ""
    if messages[message_id].role == Message.Role.USER:
        draft = messages[message_id].text
        ids = ids[:-1]
    if any(messages[pk].is_active for pk in ids):
        raise NotBranchable("Wait for the answer to end before forking from it.")
    title = (conversation.title or "New chat")[:190]
    fork = Conversation.objects.create(
        owner=conversation.owner,
        title=f"{title} (fork)",
        model=conversation.model,
        system_prompt=conversation.system_prompt,
        temperature=conversation.temperature,
        top_p=conversation.top_p,
        max_tokens=conversation.max_tokens,
        random_seed=conversation.random_seed,
        safe_prompt=conversation.safe_prompt,
    )
    copies: dict[int, Message] = {}
    documents = _documents_copy(ids, owner=conversation.owner)
    for pk in ids:  # one at a time: each needs its parent's new key
        copy = messages[pk]  # read for this: stored again as a new row
        copy.parent = copies.get(copy.parent_id)
        copy.pk, copy._state.adding = None, True
        copy.conversation = fork
        copy.worker, copy.stop_requested = "", False
        copy.parts = [
            {**part, "document": documents[part["document"]]}
            if isinstance(part, dict) and part.get("document") in documents
            else part
            for part in copy.parts
        ]
        copy.save()
        copies[pk] = copy
    images = Attachment.objects.filter(message_id__in=list(copies)).order_by("id")
    Attachment.objects.bulk_create(
        [_attachment_copy(a, copies[a.message_id], a.position) for a in images]
    )
    for pk in ids:  # each copied document belongs to the first question that carries it
        for part in copies[pk].parts:
            if isinstance(part, dict) and part.get("type") == "document":
                Document.objects.filter(pk=part["document"], message__isnull=True).update(
                    message=copies[pk]
                )
    return Forked(fork, draft)


def _documents_copy(ids: list[int], *, owner) -> dict[int, int]:
    """Copies of the documents the messages' parts refer to, with their pages, sharing the
    stored file: old id → new id."""
    wanted = {
        part["document"]
        for m in Message.objects.filter(pk__in=ids).only("parts")
        for part in m.parts
        if isinstance(part, dict) and part.get("type") == "document"
    }
    mapping: dict[int, int] = {}
    for document in Document.objects.filter(pk__in=wanted, owner=owner):
        old = document.pk
        pages = list(DocumentPage.objects.filter(document_id=old))
        document.pk = None
        document.message = None
        document.save()
        for page in pages:
            page.pk, page.document = None, document
        DocumentPage.objects.bulk_create(pages)
        mapping[old] = document.pk
    return mapping
