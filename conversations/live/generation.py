"""A running answer, and this process's registry of them.

A generation belongs to its conversation, not to a socket: it is an asyncio task that gets
its request from request_plan, streams it from the model server, publishes each batch of
text to every tab watching the conversation, and stores the answer (about once a second
while it grows, and always at the end). Closing a tab only stops that tab from watching.

Frames are batched naturally: every network read from the model server becomes at most
one `delta` frame, sent at once; whatever arrives while a send is in flight goes into the
next one. No timer ever holds text back.

It is long because an answer's whole life is one piece: its start, stream, every way it
ends (stop, failure, cut, a shutdown's drain), the ending stored with retries while the
database is away, and the flusher that saves progress and reads Stop from the rows. The
pieces that could stand alone already do (request_plan, answer_text, frames, broadcast).
"""

import asyncio
import contextlib
import copy
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError

from conversations.answers import (
    RESTARTED_TEXT,
    Earlier,
    Ending,
    Outcome,
    Stored,
    answer_endings_store,
    message_progress_save,
)
from conversations.documents.reading import count_tokens
from conversations.errors import ChatError
from conversations.live import broadcast, tool_steps
from conversations.live.answer_text import AnswerText
from conversations.live.context_window import count_prompt
from conversations.live.frames import ended_message_data, message_data, totals_data
from conversations.live.json_answers import json_outcome
from conversations.live.protocol import MessageData, QueuedFrame
from conversations.live.request_plan import request_plan
from conversations.live.titles import title_after_first_answer
from conversations.models import Conversation, Message
from conversations.modelservers import providers
from conversations.modelservers.errors import (
    InvalidModel,
    ModelError,
    RateLimited,
    StreamInterrupted,
    UpstreamTimeout,
)
from conversations.modelservers.local_model import QueuePosition
from conversations.modelservers.results import ToolCallsBuilder, Usage
from conversations.selectors import PromptMessage, document_ids_of
from conversations.trips import Trips
from conversations.usage import budget_limits_set, check_daily_budget

logger = logging.getLogger(__name__)

# What the database raises while it is down, restarting or unreachable.
DATABASE_ERRORS = (OperationalError, InterfaceError)

# After tokens have reached the user, these failures mean the stream was cut: the
# answer is kept as interrupted. Anything else that breaks a stream marks it failed.
_CUT_ERRORS = (StreamInterrupted, UpstreamTimeout)


@dataclass(eq=False)
class Generation:
    conversation_id: int
    message_id: int
    owner_id: int
    model: str
    answer: AnswerText = field(default_factory=AnswerText)
    seq: int = 0
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    # "new" until the task runs, "streaming" while Stop can cancel it, then "finishing".
    phase: str = "new"
    stop_requested: bool = False
    # This process is shutting down and the answer did not end within the drain window.
    restarting: bool = False
    notice: str = ""  # for the reader: another model answered, images were left out
    # Answers ahead of this one for the local model while it waits its turn, else None.
    queue_position: int | None = None
    saved_seq: int = 0
    saved_at: float = field(default_factory=time.monotonic)
    # The question of a conversation's first exchange while it has no title, else None.
    title_question: str | None = None
    task: asyncio.Task | None = None
    # The body sent upstream, once sent: summarised into its ApiCall row at the end.
    request: dict[str, Any] | None = None
    # What the server reported of the tokens (it may send none: see _estimated_usage), and
    # what request_plan counted of the prompt while fitting it to the window.
    usage: Usage | None = None
    prompt_counted: int | None = None
    image_tokens: int = 0
    # A continued answer: its text before (the request's prefix), and what its earlier
    # calls cost, added to this one's at the end.
    continued: str = ""
    earlier: Earlier | None = None
    # An answer given tools: the calls its model asks for in the step streaming, and
    # every call so far (live/tool_steps.py).
    asked: ToolCallsBuilder | None = None
    tool_calls: list = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.answer.text

    def add(self, text: str) -> dict[str, Any]:
        """Fold one batch of text in and return its delta frame."""
        now = time.monotonic()
        if self.first_token_at is None:
            self.first_token_at = now
        self.seq += 1
        settled, tail = self.answer.add(text, now, len(_running))
        frame = {
            "type": "delta",
            "conversation": self.conversation_id,
            "message": self.message_id,
            "seq": self.seq,
            "text": text,
            "settled": settled,
        }
        if tail is not None:
            frame["tail"] = tail
        return frame

    def queued(self, position: int) -> QueuedFrame:
        """The frame telling tabs how many answers are ahead of this one for the local
        model; 0 when its turn has come."""
        self.queue_position = position or None
        return {
            "type": "queued",
            "conversation": self.conversation_id,
            "message": self.message_id,
            "position": position,
        }

    def live_state(self) -> dict[str, Any]:
        """What of the answer's row is newer here than in the database: its text so far,
        as html too, and the `seq` that text includes."""
        state = {
            "status": Message.Status.STREAMING if self.seq else Message.Status.PENDING,
            "text": self.text,
            "html": "".join(self.answer.settled),
            "tail": self.answer.current_tail(),
            "seq": self.seq,
            "model": self.model,
            "notice": self.notice,
        }
        if self.queue_position:
            state["queue_position"] = self.queue_position
        if self.tool_calls:
            state["tools"] = [call.data() for call in self.tool_calls]
        return state


# Running generations of this process, by conversation id (one answer at a time each).
_running: dict[int, Generation] = {}
# Background tasks (title generation) kept referenced until they end.
_background: set[asyncio.Task] = set()
_flusher: asyncio.Task | None = None


def running(conversation_id: int) -> Generation | None:
    return _running.get(conversation_id)


def running_message_ids() -> tuple[int, ...]:
    """The answers this process is writing."""
    return tuple(gen.message_id for gen in _running.values())


def running_tasks() -> list[asyncio.Task]:
    """The tasks of the answers this process is writing."""
    return [gen.task for gen in _running.values() if gen.task is not None]


def live_message_data(message: Message) -> MessageData:
    """A message as the browser sees it; an answer running in this process comes with
    its text so far and `seq`, read in one step so the next delta follows exactly."""
    data = message_data(message)
    gen = _running.get(message.conversation_id)
    if gen is not None and gen.message_id == message.pk:
        data.update(gen.live_state())
    return data


def generation_start(
    *,
    conversation: Conversation,
    answer: Message,
    history: list[PromptMessage],
    model: str | None = None,
    earlier: Earlier | None = None,
) -> Generation:
    """Start streaming an answer whose row exists (pending), after `history`, by `model`
    (a regenerated answer's choice) or the conversation's. A history ending with the
    answer itself continues it (`earlier`: what it had cost). Returns at once."""
    model = model or conversation.model
    gen = Generation(
        conversation_id=conversation.pk,
        message_id=answer.pk,
        owner_id=conversation.owner_id,
        model=model,
        earlier=earlier,
    )
    if history and history[-1].pk == answer.pk:  # continued: written on from its end
        gen.continued = history[-1].text
        gen.answer.add(gen.continued, time.monotonic(), 0)
    questions = [m.text for m in history if m.role == Message.Role.USER]
    if not conversation.title and len(questions) == 1 and earlier is None:
        gen.title_question = questions[0]
    if model != conversation.model:  # the request is planned for the chosen model
        conversation = copy.copy(conversation)
        conversation.model = model
    _running[conversation.pk] = gen
    gen.task = asyncio.create_task(_generate(gen, conversation, history))
    _ensure_flusher()
    return gen


def generation_stop(conversation_id: int) -> bool:
    """Stop the answer streaming in a conversation; its text so far is kept."""
    gen = _running.get(conversation_id)
    if gen is None or gen.phase == "finishing":
        return False
    gen.stop_requested = True
    if gen.phase == "streaming":
        gen.task.cancel()
    return True


def generations_interrupt() -> list[asyncio.Task]:
    """End every answer still running in this process as interrupted, with all its text:
    the process is shutting down and its drain window is over. Returns their tasks, which
    store the endings and tell every tab."""
    tasks = []
    for gen in tuple(_running.values()):
        if gen.phase != "finishing":
            gen.restarting = gen.stop_requested = True
            if gen.phase == "streaming":
                gen.task.cancel()
        tasks.append(gen.task)
    return tasks


async def _generate(
    gen: Generation, conversation: Conversation, history: list[PromptMessage]
) -> None:
    outcome: Outcome | None = None
    try:
        gen.phase = "streaming"
        if gen.stop_requested:
            raise asyncio.CancelledError
        if budget_limits_set():  # BudgetExceeded fails the answer before any request
            await database_sync_to_async(check_daily_budget)(user_id=gen.owner_id)
        plan = await request_plan(conversation=conversation, history=history, owner_id=gen.owner_id)
        gen.model, gen.notice = plan.model, plan.notice
        gen.prompt_counted, gen.image_tokens = plan.prompt_tokens, plan.image_tokens
        if plan.citations is not None:
            if gen.continued:
                # Its text again, now with its citations linked: the same blocks, so the
                # deltas that follow fit what tabs were sent; the ending has the links.
                gen.answer = AnswerText()
                gen.answer.cite(plan.citations)
                gen.answer.add(gen.continued, time.monotonic(), 0)
            else:
                gen.answer.cite(plan.citations)
        gen.request = plan.body
        if plan.tools:
            outcome = await tool_steps.answer_with_tools(
                gen, plan, _stream, tuple(document_ids_of(history))
            )
        else:
            outcome = await _stream(gen, plan.provider, plan.body)
        if plan.answer_format is not None and outcome.status == Message.Status.COMPLETE:
            outcome = json_outcome(outcome, plan.answer_format)
    except asyncio.CancelledError:
        if not gen.stop_requested:
            raise  # the process is shutting down: the row is recovered as interrupted
        asyncio.current_task().uncancel()
        if gen.restarting:
            outcome = _outcome(
                gen,
                status=Message.Status.INTERRUPTED,
                error_code="interrupted",
                error_text=RESTARTED_TEXT,
            )
        else:
            outcome = _outcome(gen, status=Message.Status.STOPPED, finish_reason="stopped")
    except ChatError as err:
        if isinstance(err, InvalidModel):
            # A retired model (pixtral-large-latest): the next picker and vision choice
            # should not offer it again.
            await providers.refresh_models(gen.model)
        outcome = _failure(gen, err)
    except Exception:
        logger.exception("Generation of message %s broke", gen.message_id)
        outcome = _outcome(
            gen,
            status=Message.Status.FAILED,
            error_code="internal",
            error_text="Something went wrong on this server while writing the answer.",
        )
    finally:
        gen.phase = "finishing"
        if outcome is not None:
            if outcome.prompt_tokens is None and gen.first_token_at is not None:
                outcome = await asyncio.to_thread(_estimated_usage, gen, outcome)
            await _finish(gen, outcome)
            if gen.title_question is not None:
                _spawn(
                    title_after_first_answer(
                        conversation_id=gen.conversation_id,
                        owner_id=gen.owner_id,
                        question=gen.title_question,
                        outcome=outcome,
                    )
                )


async def _stream(gen: Generation, provider: providers.Provider, body: dict[str, Any]) -> Outcome:
    finish_reason = ""
    try:
        async with contextlib.aclosing(provider.stream_chat(body)) as stream:
            async for batch in stream:
                if batch.text:
                    await broadcast.conversation_publish(gen.conversation_id, gen.add(batch.text))
                elif type(batch) is QueuePosition:
                    await broadcast.conversation_publish(
                        gen.conversation_id, gen.queued(batch.position)
                    )
                if batch.usage is not None:
                    gen.usage = batch.usage
                if batch.finish_reason:
                    finish_reason = batch.finish_reason
                if batch.model:
                    gen.model = batch.model
                if batch.tool_calls and gen.asked is not None:
                    gen.asked.add(batch.tool_calls)
    except _CUT_ERRORS:
        # The final chunk (its finish_reason, usually its usage) came, only `[DONE]` or the
        # connection's end did not: the answer is whole.
        if not finish_reason or finish_reason == "error":
            raise
        logger.info("Answer %s ended without [DONE] after its final chunk", gen.message_id)
    return _outcome(gen, status=Message.Status.COMPLETE, finish_reason=finish_reason)


def _failure(gen: Generation, err: ChatError) -> Outcome:
    status = Message.Status.FAILED
    if gen.seq and isinstance(err, _CUT_ERRORS):
        status = Message.Status.INTERRUPTED
    text = err.message
    if isinstance(err, RateLimited) and err.retry_after:
        text = f"{text.rstrip('.')}. Try again in {err.retry_after:.0f} s."
    elif isinstance(err, ModelError):
        status = Message.Status.FAILED
    elif isinstance(err, InvalidModel):
        text = (
            f"The model server does not offer {gen.model} (any more). The list of models "
            "has been refreshed: choose another model, then retry."
        )
    return _outcome(gen, status=status, error_code=err.code, error_text=text)


def _outcome(gen: Generation, *, status: str, **fields: Any) -> Outcome:
    """How the answer ended, with the usage the server reported, whatever the ending."""
    now = time.monotonic()
    if gen.usage is not None:
        fields.update(
            prompt_tokens=gen.usage.prompt_tokens, completion_tokens=gen.usage.completion_tokens
        )
    return Outcome(
        status=status,
        text=gen.text,
        html=gen.answer.whole_html(),
        model=gen.model,
        time_to_first_token_ms=(
            round((gen.first_token_at - gen.started) * 1000) if gen.first_token_at else None
        ),
        duration_ms=round((now - gen.started) * 1000),
        notice=gen.notice,
        **fields,
    )


def _estimated_usage(gen: Generation, outcome: Outcome) -> Outcome:
    """The ending with our own count of its tokens, marked as estimated, for a server that
    reported none (llama.cpp's sends none in a stream; a stopped or cut stream never got to
    its last chunk), so budgets and costs see every answer. Counts with the tokenizer: call
    it off the event loop."""
    prompt = gen.prompt_counted
    if prompt is None and gen.request is not None:
        prompt = count_prompt(gen.request.get("messages") or [], image_tokens=gen.image_tokens)
    return dataclasses.replace(
        outcome,
        prompt_tokens=prompt or 0,
        completion_tokens=count_tokens(outcome.text),
        usage_estimated=True,
    )


# Answers ending at the same moment share one database trip.
_endings_stored = Trips(answer_endings_store)


async def _finish(gen: Generation, outcome: Outcome) -> None:
    """Store the ending, take the answer out of the registry, then tell every tab: by the
    time a tab sees the ending, the conversation takes a new question. While the database
    cannot be reached the ending waits in memory and is tried again (see _stored)."""
    ending = Ending(
        gen.message_id, gen.conversation_id, gen.owner_id, outcome, gen.request, gen.earlier
    )
    try:
        stored = await _stored(ending)
    finally:
        if _running.get(gen.conversation_id) is gen:
            del _running[gen.conversation_id]
    if stored is not None:
        frame = ended_message_data(
            message_id=gen.message_id,
            conversation_id=gen.conversation_id,
            seq=gen.seq,
            outcome=stored.outcome,
            stored=stored,
        )
        if gen.tool_calls:
            frame["tools"] = [call.data() for call in gen.tool_calls]
        await broadcast.conversation_publish(
            gen.conversation_id,
            {"type": "message", "message": frame, "totals": totals_data(stored.totals)},
        )


async def _stored(ending: Ending) -> Stored | None:
    """Store an ending, trying again with growing pauses while the database is down or
    restarting (DATABASE_ERRORS), for up to CHAT_SAVE_RETRY_SECONDS. After that the answer
    is given up here, logged, and left to the other processes' sweep (recovery.py), which
    marks it interrupted with the text last saved."""
    deadline = time.monotonic() + settings.CHAT_SAVE_RETRY_SECONDS
    pause = 0.25
    while True:
        try:
            return await _endings_stored(ending)
        except DATABASE_ERRORS as err:
            if time.monotonic() + pause > deadline:
                logger.error(
                    "Could not store the ending of answer %s (%r); giving it up",
                    ending.message_id,
                    err,
                )
                return None
            logger.warning(
                "Storing the ending of answer %s failed (%r); trying again in %.2g s",
                ending.message_id,
                err,
                pause,
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


def _spawn(coro) -> None:
    task = asyncio.create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _ensure_flusher() -> None:
    global _flusher
    if _flusher is None or _flusher.done() or _flusher.get_loop() is not asyncio.get_running_loop():
        _flusher = asyncio.create_task(_flush_while_running())


async def _flush_while_running() -> None:
    """Save each running answer's text once per CHAT_SAVE_INTERVAL of its own (so an
    answer of T seconds is saved at most T times before its end), the answers due
    together in one transaction. With several processes, rows are touched even without
    new text, to show they live."""
    touch = broadcast.other_processes_listen()
    interval = settings.CHAT_SAVE_INTERVAL
    while _running:
        await asyncio.sleep(interval / 4)
        now = time.monotonic()
        progress, due = {}, []
        for gen in tuple(_running.values()):
            if now - gen.saved_at < interval or gen.phase == "finishing":
                continue
            if gen.seq != gen.saved_seq:
                progress[gen.message_id] = gen.text
            elif not touch:
                continue
            else:
                progress[gen.message_id] = ""
            due.append((gen, gen.seq))
        if not progress:
            continue
        # With several processes, Stop pressed elsewhere is also read from the rows.
        stops_of = tuple(progress) if touch else ()
        try:
            stopped = await database_sync_to_async(message_progress_save)(
                progress=progress, stops_of=stops_of
            )
        except DATABASE_ERRORS as err:
            # The text stays in memory and goes with the next save, or the ending.
            logger.warning("Saving %d answers' progress failed: %r", len(progress), err)
            continue
        for gen, seq in due:
            gen.saved_seq, gen.saved_at = seq, now
        for gen in tuple(_running.values()):
            if gen.message_id in stopped and generation_stop(gen.conversation_id):
                logger.info("Answer %s stopped by its row's Stop flag", gen.message_id)
