"""Writes of an answer as it streams and when it ends: its text saved a few times a second,
its ending (with the ApiCall row of its request) stored for every answer ending at the same
moment in one transaction, and answers orphaned by a process that died marked interrupted.
Like services.py, each is a sync function; the generation awaits them through
`database_sync_to_async` and broadcasts only after they return (committed)."""

from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from conversations import plain_sql
from conversations.models import Message, ToolCall
from conversations.usage import (
    AnswerTotals,
    answer_cost,
    answer_totals,
    api_call_record,
    request_summary,
)


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
    notice: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_estimated: bool = False  # the tokens are our count: the server reported none
    time_to_first_token_ms: int | None = None
    duration_ms: int | None = None


@transaction.atomic
def message_progress_save(*, progress: dict[int, str], stops_of: tuple[int, ...] = ()) -> list[int]:
    """Save the text so far of this process's running answers in one transaction: the
    flusher calls this about once a second per answer, never once per token. An empty
    text only touches the row, which tells other processes its generation is alive.
    Returns those of `stops_of` (the answers running here) for which a tab in another
    process pressed Stop (see message_stop_request): read in the same trip.

    Plain SQL with executemany: this runs for every live answer every second, and the
    ORM's per-query overhead was most of its cost (docs/performance.md)."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    table = connection.ops.quote_name(Message._meta.db_table)
    statuses = [status.value for status in Message.ACTIVE_STATUSES]
    active = ", ".join(["%s"] * len(statuses))
    streaming = Message.Status.STREAMING.value
    grown = [
        (text, streaming, now, message_id, *statuses)
        for message_id, text in progress.items()
        if text
    ]
    touched = [(now, message_id, *statuses) for message_id, text in progress.items() if not text]
    with connection.cursor() as cursor:
        if grown:
            cursor.executemany(
                f"UPDATE {table} SET text = %s, status = %s, updated_at = %s"  # noqa: S608
                f" WHERE id = %s AND status IN ({active})",
                grown,
            )
        if touched:
            cursor.executemany(
                f"UPDATE {table} SET updated_at = %s WHERE id = %s AND status IN ({active})",  # noqa: S608
                touched,
            )
    if not stops_of:
        return []
    return list(
        Message.objects.filter(pk__in=stops_of, stop_requested=True).values_list("pk", flat=True)
    )


def message_stop_request(*, message_id: int) -> bool:
    """Record that Stop was pressed for an answer running in another process, beside the
    message sent to that process: the flag is read at its next save, so Stop holds even
    when the channel layer loses the message. False when the answer has already ended."""
    return bool(
        Message.objects.filter(pk=message_id, status__in=Message.ACTIVE_STATUSES).update(
            stop_requested=True
        )
    )


def message_finish(*, message_id: int, outcome: Outcome, cost_usd: Decimal | None = None) -> bool:
    """Store how an answer ended: its whole text, status, usage, cost and timings. False
    when the row is gone (its conversation was deleted meanwhile)."""
    return bool(
        plain_sql.update(  # plain SQL: this runs for every answer
            Message,
            message_id,
            cost_usd=cost_usd,
            text=outcome.text,
            html=outcome.html,
            status=outcome.status,
            model=outcome.model,
            error_code=outcome.error_code,
            error_text=outcome.error_text,
            finish_reason=outcome.finish_reason,
            notice=outcome.notice,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            usage_estimated=outcome.usage_estimated,
            time_to_first_token_ms=outcome.time_to_first_token_ms,
            duration_ms=outcome.duration_ms,
            worker="",
            stop_requested=False,
            updated_at=timezone.now(),
        )
    )


@dataclass(frozen=True, slots=True)
class Earlier:
    """What a continued answer had already used and cost before this call: its row then
    shows the sums (each call keeps its own ApiCall row)."""

    prompt_tokens: int | None
    completion_tokens: int | None
    usage_estimated: bool
    cost_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class Ending:
    """An answer's ending as the generation hands it over to be stored."""

    message_id: int
    conversation_id: int
    owner_id: int
    outcome: Outcome
    request: dict[str, Any] | None  # the body sent upstream, when one was sent
    earlier: Earlier | None = None  # a continued answer's earlier calls


@dataclass(frozen=True, slots=True)
class Stored:
    """An ending as stored: the answer's cost, its conversation's totals after it, and the
    outcome as its row shows it (a continued answer's tokens summed)."""

    cost_usd: Decimal | None
    totals: AnswerTotals
    outcome: Outcome


@transaction.atomic
def answer_endings_store(endings: list[Ending]) -> list[Stored | None]:
    """Answers' endings and, where a request was sent, their ApiCall rows, for answers
    ending at the same moment (conversations/trips.py): one thread hop and one commit for
    all. Each result is None when the answer's row was gone (its conversation was deleted
    meanwhile)."""
    results: list[Stored | None] = []
    for ending in endings:
        outcome = ending.outcome
        cost = None
        if ending.request is not None:
            cost = answer_cost(outcome.model, outcome.prompt_tokens, outcome.completion_tokens)
        shown, shown_cost = outcome, cost
        if ending.earlier is not None:
            shown, shown_cost = _with_earlier(outcome, cost, ending.earlier)
        stored = message_finish(message_id=ending.message_id, outcome=shown, cost_usd=shown_cost)
        if ending.request is not None:
            api_call_record(
                kind="chat",
                model=outcome.model,
                status=outcome.status,
                user_id=ending.owner_id,
                # A row that is gone went with its conversation: the call is still the user's.
                conversation_id=ending.conversation_id if stored else None,
                message_id=ending.message_id if stored else None,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                usage_estimated=outcome.usage_estimated,
                latency_ms=outcome.duration_ms,
                error_code=outcome.error_code,
                request=request_summary(ending.request),
                # Priced once: a model with no price is recorded at $0, as everywhere.
                cost_usd=cost or Decimal(0),
            )
        totals = answer_totals(ending.conversation_id)
        results.append(Stored(shown_cost, totals, shown) if stored else None)
    return results


def _with_earlier(
    outcome: Outcome, cost: Decimal | None, earlier: Earlier
) -> tuple[Outcome, Decimal | None]:
    """A continued answer's ending as its row shows it: the tokens and cost of all its
    calls summed (unknown when any part is)."""

    def total(a: int | None, b: int | None) -> int | None:
        return None if a is None or b is None else a + b

    summed = replace(
        outcome,
        prompt_tokens=total(earlier.prompt_tokens, outcome.prompt_tokens),
        completion_tokens=total(earlier.completion_tokens, outcome.completion_tokens),
        usage_estimated=earlier.usage_estimated or outcome.usage_estimated,
    )
    both = None if cost is None or earlier.cost_usd is None else cost + earlier.cost_usd
    return summed, both


# What a reader is told about an answer whose process stopped before it ended.
RESTARTED_TEXT = "The server restarted while this answer was being written."


def message_interrupt_orphans(
    *, quiet_for: timedelta = timedelta(0), running_here: tuple[int, ...] = ()
) -> list[Message]:
    """Mark answers left pending or streaming by a process that died as interrupted,
    keeping their saved text, and return the rows this call marked (another process
    sweeping at the same moment marks each row once, so its tabs are told once).

    Live generations touch their rows every save interval when several processes run, so
    a row quiet for longer than `quiet_for` has no live owner; with one process every
    active row that does not run here (`running_here`) is an orphan."""
    cutoff = timezone.now() - quiet_for
    candidates = (
        Message.objects.filter(status__in=Message.ACTIVE_STATUSES, updated_at__lte=cutoff)
        .exclude(pk__in=running_here)
        .values_list("pk", flat=True)
    )
    marked = []
    for message_id in list(candidates):
        # One row at a time, guarded again: a row touched since it was read is alive.
        if Message.objects.filter(
            pk=message_id, status__in=Message.ACTIVE_STATUSES, updated_at__lte=cutoff
        ).update(
            status=Message.Status.INTERRUPTED,
            error_code="interrupted",
            error_text=RESTARTED_TEXT,
            worker="",
            stop_requested=False,
            updated_at=timezone.now(),
        ):
            marked.append(message_id)
    if marked:  # their tool calls ended with the process
        ToolCall.objects.filter(message_id__in=marked, status__in=ToolCall.ACTIVE_STATUSES).update(
            status=ToolCall.Status.CANCELLED, result=RESTARTED_TEXT
        )
    return list(Message.objects.filter(pk__in=marked))
