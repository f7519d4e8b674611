"""A running answer, and this process's registry of them.

A generation belongs to its conversation, not to a socket: it is an asyncio task that
streams from the model server, publishes each batch of text to every tab watching the
conversation, and stores the answer (about once a second while it grows, and always at
the end). Closing a tab only stops that tab from watching.

Frames are batched naturally: every network read from the model server becomes at most
one `delta` frame, sent at once; whatever arrives while a send is in flight goes into the
next one. No timer ever holds text back.
"""

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.urls import reverse

from . import broadcast, providers, retrieval
from .images import MAX_IMAGES_PER_REQUEST, image_data_url
from .local_model import QueuePosition
from .mistral import (
    ChatResult,
    InvalidModel,
    MistralError,
    ModelError,
    RateLimited,
    StreamBatch,
    StreamInterrupted,
    UpstreamTimeout,
)
from .models import Attachment, Conversation, Message
from .protocol import AttachmentData, DocumentRef, MessageData, QueuedFrame, encode
from .rendering import StreamingMarkdown
from .selectors import PromptMessage
from .services import (
    Outcome,
    conversation_title_set,
    message_finish,
    message_interrupt_orphans,
    message_progress_save,
)
from .trips import Trips
from .usage import (
    BudgetExceeded,
    api_call_record,
    budget_limits_set,
    check_daily_budget,
    request_summary,
)

logger = logging.getLogger(__name__)

# Characters that can make rendered markdown differ from the same text appended plain
# (emphasis, code, links, headings, lists and `1.` items, tables, breaks, escapes,
# entities).
_MARKUP = re.compile(r"[\n*_`\[\]!#|~\\<>&=+.)-]")

# After tokens have reached the user, these failures mean the stream was cut: the
# answer is kept as interrupted. Anything else that breaks a stream marks it failed.
_CUT_ERRORS = (StreamInterrupted, UpstreamTimeout)


@dataclass(eq=False)
class Generation:
    conversation_id: int
    message_id: int
    owner_id: int
    model: str
    seq: int = 0
    settled_html: list[str] = field(default_factory=list)
    tail_html: str = ""
    tail_stale: bool = False  # text arrived since tail_html was rendered
    tail_rendered_at: float = 0.0
    tail_markup: bool = False  # text that may change the tail's formatting arrived
    markdown: StreamingMarkdown = field(default_factory=StreamingMarkdown)
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    stop_requested: bool = False
    notice: str = ""  # for the reader: another model answered, images were left out
    # "new" until the task runs, "streaming" while Stop can cancel it, then "finishing".
    phase: str = "new"
    saved_seq: int = 0
    saved_at: float = field(default_factory=time.monotonic)
    # The question of a conversation's first exchange while it has no title, else None.
    title_question: str | None = None
    # Answers ahead of this one for the local model while it waits its turn, else None.
    queue_position: int | None = None
    task: asyncio.Task | None = None
    # The body sent upstream, once sent: summarised into its ApiCall row at the end.
    request: dict[str, Any] | None = None
    # (id, name, page count) of the documents the request carried: its citations link there.
    citations: list[tuple[int, str, int]] = field(default_factory=list)
    # The render settings, read once: a settings lookup per token showed in profiles.
    render_interval: float = field(default_factory=lambda: settings.CHAT_RENDER_INTERVAL)
    tail_renders_per_second: float = field(
        default_factory=lambda: settings.CHAT_TAIL_RENDERS_PER_SECOND
    )

    @property
    def text(self) -> str:
        return self.markdown.text

    def add(self, text: str) -> dict[str, Any]:
        """Fold one batch of text in and return its delta frame. The open tail is rendered
        when text that can change its formatting arrived, at most every
        CHAT_RENDER_INTERVAL; in between, tabs append the raw text, which for plain prose
        looks exactly like the rendered tail (so prose needs no render at all)."""
        now = time.monotonic()
        if self.first_token_at is None:
            self.first_token_at = now
        self.seq += 1
        if not self.tail_markup and _MARKUP.search(text):
            self.tail_markup = True
        # A long open block (a big code block, a paragraph without end) is rendered less
        # often, so the rendering work per second stays bounded whatever its length; and
        # with many answers streaming, each is rendered less often, so the process's tail
        # renders per second stay within CHAT_TAIL_RENDERS_PER_SECOND (the text itself is
        # never held back).
        due = False
        if self.tail_markup:
            interval = max(
                self.render_interval, len(_running) / self.tail_renders_per_second
            ) * max(1.0, self.markdown.tail_length / 2000)
            due = now - self.tail_rendered_at >= interval
        settled, tail = self.markdown.feed(text, render_tail=due)
        self.settled_html.extend(settled)
        frame = {
            "type": "delta",
            "conversation": self.conversation_id,
            "message": self.message_id,
            "seq": self.seq,
            "text": text,
            "settled": settled,
        }
        if tail is None:
            self.tail_stale = True
        else:
            self.tail_html, self.tail_stale, self.tail_rendered_at = tail, False, now
            self.tail_markup = False
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

    def current_tail(self) -> str:
        if self.tail_stale:
            self.tail_html, self.tail_stale = self.markdown.render_tail(), False
        return self.tail_html


# Running generations of this process, by conversation id (one answer at a time each).
_running: dict[int, Generation] = {}
# Background tasks (title generation, the flusher) kept referenced until they end.
_background: set[asyncio.Task] = set()
_flusher: asyncio.Task | None = None
# With several processes: (loop, channel name, task serving it), see worker_channel().
_control: tuple[asyncio.AbstractEventLoop, str, asyncio.Task] | None = None
_recovered = False


def running(conversation_id: int) -> Generation | None:
    return _running.get(conversation_id)


def message_data(message: Message, *, seq: int = 0) -> MessageData:
    """A message as the browser sees it, from its row."""
    return {
        "id": message.pk,
        "conversation": message.conversation_id,
        "role": message.role,
        "text": message.text,
        "html": message.html,
        "tail": "",
        "status": message.status,
        "seq": seq,
        "model": message.model,
        "error_code": message.error_code,
        "error_text": message.error_text,
        "finish_reason": message.finish_reason,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "time_to_first_token_ms": message.time_to_first_token_ms,
        "duration_ms": message.duration_ms,
        "notice": message.notice,
        **_attachments_of(message),
        **_documents_of(message),
    }


def _attachments_of(message: Message) -> dict[str, list[AttachmentData]]:
    """A question's images, when they were read with it (selectors.with_images, and
    message_submit): this may run on the event loop, where a query must not. A question
    sent without images has none."""
    if message.role != Message.Role.USER or message.images is None:
        return {}
    return {"attachments": [attachment_data(a) for a in message.images]}


def _documents_of(message: Message) -> dict[str, list[DocumentRef]]:
    """A question's documents, from its stored parts (no query)."""
    if message.role != Message.Role.USER or "parts" in message.get_deferred_fields():
        return {}
    refs: list[DocumentRef] = [
        {"id": part["document"], "name": part["name"], "pages": part["pages"]}
        for part in message.parts or []
        if isinstance(part, dict) and part.get("type") == "document"
    ]
    return {"documents": refs} if refs else {}


def attachment_data(attachment: Attachment) -> AttachmentData:
    """An image as the browser sees it: where to fetch it, and what the model was sent."""
    return {
        "id": attachment.pk,
        "name": attachment.name,
        "url": reverse("attachment_file", args=[attachment.pk, "sent"]),
        "original_url": reverse("attachment_file", args=[attachment.pk, "original"]),
        "width": attachment.width,
        "height": attachment.height,
        "sent_width": attachment.sent_width,
        "sent_height": attachment.sent_height,
        "sent_bytes": attachment.sent_bytes,
        "tokens": attachment.tokens,
    }


def live_message_data(message: Message) -> MessageData:
    """A message as the browser sees it; an answer running in this process comes with
    its text so far and `seq`, read in one step so the next delta follows exactly."""
    data = message_data(message)
    gen = _running.get(message.conversation_id)
    if gen is not None and gen.message_id == message.pk:
        data.update(_live_state(gen))
    return data


def _live_state(gen: Generation) -> dict[str, Any]:
    state = {
        "status": Message.Status.STREAMING if gen.seq else Message.Status.PENDING,
        "text": gen.text,
        "html": "".join(gen.settled_html),
        "tail": gen.current_tail(),
        "seq": gen.seq,
        "model": gen.model,
        "notice": gen.notice,
    }
    if gen.queue_position:
        state["queue_position"] = gen.queue_position
    return state


class NoVisionModel(MistralError):
    """The request has images and no model the server offers can see them."""

    code = "no_vision_model"


def chat_messages(
    *, system_prompt: str, history: list[PromptMessage], images: Collection[int] = ()
) -> list[dict[str, Any]]:
    """The conversation in the model server's shape. Answers that produced no text are
    left out (the API rejects empty assistant turns; a user turn may follow a user turn).

    A question whose attachments are in `images` (ids, see images_to_send) becomes content
    parts: its text, then one `image_url` part per image, a `data:image/...;base64,` URL of
    the stored model copy. That reads files: with `images`, call it off the event loop."""
    messages: list[dict[str, Any]] = []
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt})
    for message in history:
        if message.role == Message.Role.ASSISTANT and not message.text:
            continue
        content: str | list[dict[str, str]] = message.text
        if images and message.role == Message.Role.USER:
            attachments = message.images or []
            sent = [a for a in attachments if a.pk in images]
            if sent:
                parts = [{"type": "text", "text": message.text}] if message.text.strip() else []
                content = parts + [
                    {"type": "image_url", "image_url": image_data_url(a)} for a in sent
                ]
            elif attachments and not message.text.strip():
                content = "[an image, no longer included]"  # no empty user turn
        messages.append({"role": message.role, "content": content})
    return messages


def images_to_send(history: list[PromptMessage]) -> tuple[set[int], int]:
    """Which attached images a request carries, and how many are left out: the newest
    first, up to the API's per-request limit, so a long conversation about many images
    stays valid (the left-out ones keep their text). `history` as message_history returns
    it, attachments prefetched."""
    kept: set[int] = set()
    dropped = 0
    for message in reversed(history):
        if message.role != Message.Role.USER:
            continue
        for attachment in reversed(message.images or []):
            if len(kept) < MAX_IMAGES_PER_REQUEST:
                kept.add(attachment.pk)
            else:
                dropped += 1
    return kept, dropped


async def vision_model_for(model: str) -> tuple[str, str]:
    """The model that answers a request with images, and a note for the reader when it is
    not `model`: `model` itself if it can see, else the first of CHAT_VISION_MODELS that
    the same provider lists with the vision capability (images never go to a provider the
    user did not choose). This is the one place the app asks whether a model can see
    (providers.can_see_images)."""
    provider = providers.provider_for(model)
    candidates = [c for c in settings.CHAT_VISION_MODELS if providers.offered_by(provider, c)]
    try:
        if await providers.can_see_images(model):
            return model, ""
        for candidate in candidates:
            if await providers.can_see_images(candidate):
                return candidate, f"Answered by {candidate}: {model} cannot see images."
    except MistralError as err:
        logger.info("Listing models failed (%s); sending the images to %s", err.code, model)
        return model, ""  # cannot tell: the conversation's model may well see
    if not candidates:
        raise NoVisionModel(
            f"{model} cannot see images. Choose a model marked “vision” in the model list."
        )
    raise NoVisionModel(
        f"{model} cannot see images, and the model server offers none of the models that "
        f"can ({', '.join(candidates)})."
    )


async def _request_messages(
    gen: Generation, conversation: Conversation, history: list[PromptMessage]
) -> tuple[str, list[dict[str, Any]]]:
    """The model to ask and the messages to send. Without images or documents this is the
    conversation's model and the text, at once; with images, a model that can see, and the
    files are read into data URLs in a thread; with documents, their text (or the passages
    retrieval picked) and page pictures join the newest question (conversations/retrieval.py)."""
    kept, dropped = images_to_send(history)
    plan = None
    if any(m.parts for m in history if m.role == Message.Role.USER):
        plan = await retrieval.plan_for_request(
            model=conversation.model,
            history=history,
            user_id=gen.owner_id,
            conversation_id=gen.conversation_id,
        )
    if not kept and (plan is None or not plan.pictures):
        messages = chat_messages(system_prompt=conversation.system_prompt, history=history)
        if plan is None:
            return conversation.model, messages
        return conversation.model, await _with_documents(gen, messages, plan, 0)
    try:
        model, note = await vision_model_for(conversation.model)
    except NoVisionModel:
        if kept:
            raise
        # Only page pictures need eyes: send the documents' text without them.
        model, note = conversation.model, "Page pictures left out: no model here can see."
        plan.pictures = []
    if dropped:
        note += (
            f" {dropped} earlier image{'s' if dropped != 1 else ''} left out: a request "
            f"carries at most {MAX_IMAGES_PER_REQUEST}."
        )
    gen.model, gen.notice = model, note.strip()
    messages = await asyncio.to_thread(
        chat_messages, system_prompt=conversation.system_prompt, history=history, images=kept
    )
    if plan is not None:
        messages = await _with_documents(gen, messages, plan, len(kept))
    return model, messages


async def _with_documents(
    gen: Generation, messages: list[dict[str, Any]], plan: retrieval.Plan, images: int
) -> list[dict[str, Any]]:
    """The documents' parts put before the newest question's own content; page pictures
    are rendered in a thread and share the request's image limit with attached images."""
    parts, left_out = await asyncio.to_thread(
        retrieval.document_parts, plan, MAX_IMAGES_PER_REQUEST - images
    )
    last = messages[-1]
    content = last["content"]
    own = [{"type": "text", "text": content}] if isinstance(content, str) else content
    last["content"] = parts + [part for part in own if part.get("text", True)]
    note = plan.note()
    if left_out:
        note += f" {left_out} page picture{'s' if left_out != 1 else ''} left out."
    gen.notice = f"{gen.notice} {note}".strip()
    gen.citations = [(d.pk, d.name, d.page_count) for d in plan.documents]
    return messages


async def worker_channel() -> str:
    """This process's address for Stop and resync requests from tabs in other processes,
    served by a task reading it; "" when there is only one process."""
    global _control
    if not broadcast.other_processes_listen():
        return ""
    loop = asyncio.get_running_loop()
    if _control is None or _control[0] is not loop or _control[2].done():
        layer = get_channel_layer()
        channel = (
            await layer.new_channel()
        )  # the prefix every consumer uses: see channels_redis receive()
        _control = (loop, channel, asyncio.create_task(_serve_control(layer, channel)))
    return _control[1]


async def _serve_control(layer, channel: str) -> None:
    while True:
        try:
            request = await layer.receive(channel)
        except broadcast.LAYER_ERRORS as err:
            logger.warning("Reading this process's control channel failed: %r", err)
            await asyncio.sleep(1)
            continue
        gen = _running.get(request["conversation"])
        if gen is None or gen.message_id != request["message"]:
            continue
        if request["type"] == "generation.stop":
            generation_stop(gen.conversation_id)
        elif request["type"] == "generation.state":
            broadcast.forget_elsewhere(gen.conversation_id)  # its next delta goes there too
            frame = {"type": "message", "message": {**request["row"], **_live_state(gen)}}
            with contextlib.suppress(*broadcast.LAYER_ERRORS):  # the tab will ask again
                await layer.send(
                    request["reply_to"],
                    {"type": "relay.frame", "origin": "", "text": encode(frame).decode()},
                )


async def remote_request(message: Message, kind: str, *, reply_to: str = "") -> None:
    """Ask the process running an answer elsewhere to stop it ("stop"), or to send its
    live state to a tab's channel ("state")."""
    if not message.worker:
        return
    request: dict[str, Any] = {
        "type": f"generation.{kind}",
        "conversation": message.conversation_id,
        "message": message.pk,
    }
    if kind == "state":
        request.update(reply_to=reply_to, row=message_data(message))
    await get_channel_layer().send(message.worker, request)


async def ensure_recovered() -> None:
    """Once per process, before its first generation: answers left running by a process
    that died are marked interrupted. With one process (the in-memory layer) every
    running row is an orphan; with several, only rows no live process has touched."""
    global _recovered
    if _recovered:
        return
    _recovered = True
    quiet_for = (
        timedelta(seconds=settings.CHAT_SAVE_INTERVAL * 3 + 5)
        if broadcast.other_processes_listen()
        else timedelta(0)
    )
    count = await database_sync_to_async(message_interrupt_orphans)(quiet_for=quiet_for)
    if count:
        logger.warning("Marked %d answers left running by a stopped process as interrupted", count)


def generation_start(
    *, conversation: Conversation, answer: Message, history: list[PromptMessage]
) -> Generation:
    """Start streaming an answer whose row exists (pending), after `history`. Returns at
    once."""
    gen = Generation(
        conversation_id=conversation.pk,
        message_id=answer.pk,
        owner_id=conversation.owner_id,
        model=conversation.model,
    )
    questions = [m.text for m in history if m.role == Message.Role.USER]
    if not conversation.title and len(questions) == 1:
        gen.title_question = questions[0]
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
        model, messages = await _request_messages(gen, conversation, history)
        provider = providers.provider_for(model)
        body = provider.build_body(
            model=provider.upstream(model),
            messages=messages,
            stream=True,
            temperature=conversation.temperature,
            top_p=conversation.top_p,
            max_tokens=conversation.max_tokens,
            random_seed=conversation.random_seed,
            safe_prompt=conversation.safe_prompt,
        )
        gen.request = body
        outcome = await _stream(gen, provider, body)
    except asyncio.CancelledError:
        if not gen.stop_requested:
            raise  # the process is shutting down: the row is recovered as interrupted
        asyncio.current_task().uncancel()
        outcome = _outcome(gen, status=Message.Status.STOPPED, finish_reason="stopped")
    except MistralError as err:
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
            await _finish(gen, outcome)
            _spawn(_title_after_first_answer(gen, outcome))


async def _stream(gen: Generation, provider: providers.Provider, body: dict[str, Any]) -> Outcome:
    usage = None
    finish_reason = ""
    batch: StreamBatch
    async with contextlib.aclosing(provider.stream_chat(body)) as stream:
        async for batch in stream:
            if batch.text:
                await broadcast.conversation_publish(gen.conversation_id, gen.add(batch.text))
            elif type(batch) is QueuePosition:
                await broadcast.conversation_publish(
                    gen.conversation_id, gen.queued(batch.position)
                )
            if batch.usage is not None:
                usage = batch.usage
            if batch.finish_reason:
                finish_reason = batch.finish_reason
            if batch.model:
                gen.model = batch.model
    return _outcome(
        gen,
        status=Message.Status.COMPLETE,
        finish_reason=finish_reason,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
    )


def _failure(gen: Generation, err: MistralError) -> Outcome:
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
    now = time.monotonic()
    text = gen.text
    html = (
        gen.markdown.render_whole(gen.settled_html, None if gen.tail_stale else gen.tail_html)
        if text
        else ""
    )
    if gen.citations and html:
        html = retrieval.link_citations(html, gen.citations)
    return Outcome(
        status=status,
        text=text,
        html=html,
        model=gen.model,
        time_to_first_token_ms=(
            round((gen.first_token_at - gen.started) * 1000) if gen.first_token_at else None
        ),
        duration_ms=round((now - gen.started) * 1000),
        notice=gen.notice,
        **fields,
    )


async def _finish(gen: Generation, outcome: Outcome) -> None:
    """Store the ending, take the answer out of the registry, then tell every tab: by the
    time a tab sees the ending, the conversation takes a new question."""
    try:
        stored = await _endings_stored((gen, outcome))
    finally:
        if _running.get(gen.conversation_id) is gen:
            del _running[gen.conversation_id]
    if stored:
        await broadcast.conversation_publish(
            gen.conversation_id, {"type": "message", "message": ended_message_data(gen, outcome)}
        )


@transaction.atomic
def _store_endings(endings: list[tuple[Generation, Outcome]]) -> list[bool]:
    """Answers' endings and, where a request was sent, their ApiCall rows, for answers
    ending at the same moment: one thread hop and one commit for all. Each result says
    whether the answer's row was still there (its conversation may have been deleted)."""
    results = []
    for gen, outcome in endings:
        stored = message_finish(message_id=gen.message_id, outcome=outcome)
        if gen.request is not None:
            api_call_record(
                kind="chat",
                model=outcome.model,
                status=outcome.status,
                user_id=gen.owner_id,
                # A row that is gone went with its conversation: the call is still the user's.
                conversation_id=gen.conversation_id if stored else None,
                message_id=gen.message_id if stored else None,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                latency_ms=outcome.duration_ms,
                error_code=outcome.error_code,
                request=request_summary(gen.request),
            )
        results.append(stored)
    return results


_endings_stored = Trips(_store_endings)


def ended_message_data(gen: Generation, outcome: Outcome) -> MessageData:
    """The finished answer as the browser sees it, from what was just stored."""
    return {
        "id": gen.message_id,
        "conversation": gen.conversation_id,
        "role": Message.Role.ASSISTANT,
        "text": outcome.text,
        "html": outcome.html,
        "tail": "",
        "status": outcome.status,
        "seq": gen.seq,
        "model": outcome.model,
        "error_code": outcome.error_code,
        "error_text": outcome.error_text,
        "finish_reason": outcome.finish_reason,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "time_to_first_token_ms": outcome.time_to_first_token_ms,
        "duration_ms": outcome.duration_ms,
        "notice": outcome.notice,
    }


async def _title_after_first_answer(gen: Generation, outcome: Outcome) -> None:
    """Name a conversation after its first exchange, with a cheap non-streaming call;
    if there was no answer, or the model server cannot, the question's first words serve."""
    if gen.title_question is None:
        return
    title = await _generated_title(gen.title_question, outcome, gen)
    updated = await database_sync_to_async(conversation_title_set)(
        conversation_id=gen.conversation_id, title=title
    )
    if updated is not None:
        await broadcast.user_publish(
            gen.owner_id, {"type": "conversation", "conversation": conversation_data(updated)}
        )


async def _generated_title(question: str, outcome: Outcome, gen: Generation) -> str:
    fallback = _short(question.strip().splitlines()[0] if question.strip() else "New chat")
    if outcome.status != Message.Status.COMPLETE:
        return fallback
    answer, model = outcome.text, outcome.model
    try:
        provider = providers.provider_for(model)
    except MistralError:
        return fallback
    title_model = provider.title_model(model)
    if title_model is None:
        return fallback
    body = provider.build_body(
        model=provider.upstream(title_model),
        messages=[
            {
                "role": "system",
                "content": "Write a title of at most six words for this conversation. "
                "Reply with the title only, no quotes, no final period.",
            },
            {"role": "user", "content": f"Question: {question[:2000]}\n\nAnswer: {answer[:2000]}"},
        ],
        stream=False,
        max_tokens=24,
        temperature=0.3,
    )
    try:
        if budget_limits_set():
            await database_sync_to_async(check_daily_budget)(user_id=gen.owner_id)
        started = time.monotonic()
        result = await provider.complete_chat(body)
    except BudgetExceeded:
        return fallback
    except MistralError as err:
        logger.info("Title generation failed (%s); using the question", err.code)
        await _title_call_record(gen, title_model, started, error=err)
        return fallback
    await _title_call_record(gen, title_model, started, result=result)
    title = result.text.strip().strip("\"'*#").strip().splitlines()
    return _short(title[0]) if title and title[0] else fallback


async def _title_call_record(
    gen: Generation,
    model: str,
    started: float,
    *,
    result: ChatResult | None = None,
    error: MistralError | None = None,
) -> None:
    """A title is a billed call like an answer: recorded with its usage, or its error."""
    usage = result.usage if result is not None else None
    await database_sync_to_async(api_call_record)(
        kind="title",
        model=model,
        status="complete" if error is None else "failed",
        user_id=gen.owner_id,
        conversation_id=gen.conversation_id,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        latency_ms=round((time.monotonic() - started) * 1000),
        error_code=error.code if error is not None else "",
    )


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def conversation_data(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model,
        "updated_at": conversation.updated_at.isoformat(),
    }


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
        progress = {}
        for gen in tuple(_running.values()):
            if now - gen.saved_at < interval or gen.phase == "finishing":
                continue
            if gen.seq != gen.saved_seq:
                progress[gen.message_id] = gen.text
            elif not touch:
                continue
            else:
                progress[gen.message_id] = ""
            gen.saved_seq, gen.saved_at = gen.seq, now
        if progress:
            await database_sync_to_async(message_progress_save)(progress=progress)
