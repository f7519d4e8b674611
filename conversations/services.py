"""Writes. Each is a sync function, atomic where it touches several rows; async callers
await it through `database_sync_to_async` and broadcast only after it returns (committed)."""

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .models import Conversation, Message
from .selectors import message_history


class AnswerInProgress(Exception):
    """The conversation already has an answer streaming; one at a time."""


class NotRetryable(Exception):
    """Only the last answer of a conversation, once it has ended, can be generated again."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an answer ended, as the generation saw it."""

    status: str
    text: str
    model: str = ""
    error_code: str = ""
    error_text: str = ""
    finish_reason: str = ""
    html: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    time_to_first_token_ms: int | None = None
    duration_ms: int | None = None


def conversation_create(*, owner, model: str, title: str = "") -> Conversation:
    return Conversation.objects.create(owner=owner, model=model, title=title)


@transaction.atomic
def message_submit(
    *, conversation: Conversation, text: str, worker: str = ""
) -> tuple[Message, Message, list[Message]]:
    """Create the question and its empty answer together, so a reload never shows a
    question with nowhere for its answer to stream. Returns them with the conversation up
    to the answer, read in the same trip, since the model request needs it at once."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.messages.filter(status__in=Message.ACTIVE_STATUSES).exists():
        raise AnswerInProgress(conversation.pk)
    question = Message.objects.create(conversation=conversation, role=Message.Role.USER, text=text)
    answer = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        model=conversation.model,
        worker=worker,
    )
    conversation.save(update_fields=["updated_at"])
    return question, answer, message_history(conversation_id=conversation.pk, before_id=answer.pk)


@transaction.atomic
def message_retry(*, answer: Message, worker: str = "") -> tuple[Message, list[Message]]:
    """Empty an ended answer so it can be generated again; only the conversation's last
    message qualifies, so history never changes under later messages. Returns it with the
    conversation before it."""
    conversation = Conversation.objects.select_for_update().get(pk=answer.conversation_id)
    last = conversation.messages.order_by("-id").first()
    if (
        last is None
        or last.pk != answer.pk
        or answer.role != Message.Role.ASSISTANT
        or conversation.messages.filter(status__in=Message.ACTIVE_STATUSES).exists()
    ):
        raise NotRetryable(answer.pk)
    answer.text = ""
    answer.status = Message.Status.PENDING
    answer.model = conversation.model
    answer.worker = worker
    answer.error_code = answer.error_text = answer.finish_reason = ""
    answer.prompt_tokens = answer.completion_tokens = None
    answer.time_to_first_token_ms = answer.duration_ms = None
    answer.save()
    conversation.save(update_fields=["updated_at"])
    return answer, message_history(conversation_id=conversation.pk, before_id=answer.pk)


@transaction.atomic
def message_progress_save(*, progress: dict[int, str]) -> None:
    """Save the text so far of this process's running answers in one transaction: the
    flusher calls this about once a second, never once per token. An empty text only
    touches the row, which tells other processes its generation is alive."""
    now = timezone.now()
    for message_id, text in progress.items():
        fields = {"text": text, "status": Message.Status.STREAMING} if text else {}
        Message.objects.filter(pk=message_id, status__in=Message.ACTIVE_STATUSES).update(
            updated_at=now, **fields
        )


def message_finish(*, message_id: int, outcome: Outcome) -> Message:
    """Store how an answer ended: its whole text, status, usage and timings."""
    Message.objects.filter(pk=message_id).update(
        text=outcome.text,
        html=outcome.html,
        status=outcome.status,
        model=outcome.model,
        error_code=outcome.error_code,
        error_text=outcome.error_text,
        finish_reason=outcome.finish_reason,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        time_to_first_token_ms=outcome.time_to_first_token_ms,
        duration_ms=outcome.duration_ms,
        worker="",
        updated_at=timezone.now(),
    )
    return Message.objects.get(pk=message_id)


def message_interrupt_orphans(*, quiet_for: timedelta = timedelta(0)) -> int:
    """Mark answers left pending or streaming by a process that died as interrupted,
    keeping their text. Live generations save at least every few seconds, so with
    several processes only rows quiet for longer than that are orphans."""
    cutoff = timezone.now() - quiet_for
    return Message.objects.filter(
        status__in=Message.ACTIVE_STATUSES, updated_at__lte=cutoff
    ).update(
        status=Message.Status.INTERRUPTED,
        error_code="interrupted",
        error_text="The server restarted while this answer was being written.",
    )


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
) -> Conversation:
    """Store validated settings; they apply from the next answer on."""
    conversation.model = model
    conversation.system_prompt = system_prompt
    conversation.temperature = temperature
    conversation.top_p = top_p
    conversation.max_tokens = max_tokens
    conversation.random_seed = random_seed
    conversation.safe_prompt = safe_prompt
    conversation.save()
    return conversation


def conversation_title_set(*, conversation_id: int, title: str) -> Conversation | None:
    """Store a generated title unless the user named the conversation meanwhile."""
    Conversation.objects.filter(pk=conversation_id, title="").update(title=title.strip()[:200])
    return Conversation.objects.filter(pk=conversation_id).first()


def conversation_delete(*, conversation: Conversation) -> None:
    conversation.delete()
