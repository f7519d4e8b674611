"""What an answer's model request will be, assembled from the conversation before it: the
model to ask (a model that can see when the question has images), the body that server
documents, the note for the reader about what was changed or left out, and the documents
the answer may cite. It returns a value; the generation only streams it.

Without images or documents this is the conversation's model and its text, at once. With
images, the files are read into `data:` URLs in a thread, only now; with documents, their
text (or the passages retrieval picked) and page pictures join the newest question
(conversations/documents/retrieval.py).
"""

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.urls import reverse

from conversations.documents import retrieval
from conversations.errors import ChatError, NoVisionModel
from conversations.images import MAX_IMAGES_PER_REQUEST, image_data_url
from conversations.live.context_window import SMALL_PROMPT, Fitted, fit_history, prompt_bound
from conversations.live.json_answers import AnswerFormat, answer_format_of
from conversations.models import Conversation, Message
from conversations.modelservers import providers
from conversations.rendering import Citations
from conversations.selectors import PromptMessage, document_ids_of
from conversations.tools.catalog import Tool, tools_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RequestPlan:
    provider: providers.Provider
    model: str  # the model asked, as the picker names it
    body: dict[str, Any]
    notice: str = ""  # for the reader: another model answered, images were left out
    citations: Citations | None = None  # the documents the request carried
    prompt_tokens: int | None = None  # counted while fitting the window, when it was
    image_tokens: int = 0  # what the images it carries cost, by Mistral's estimate
    answer_format: AnswerFormat | None = None  # JSON asked for (json_answers.py); None: text
    tools: tuple[Tool, ...] = ()  # the tools the request offers (live/tool_steps.py runs them)


async def request_plan(
    *, conversation: Conversation, history: list[PromptMessage], owner_id: int
) -> RequestPlan:
    """The request for the answer after `history`; raises ChatError when there can be none
    (no model server offers the model, images and nothing can see them, a question longer
    than the model's window). A history that ends with an answer asks for that answer to
    be continued (continuation_messages)."""
    continued = None
    if history and history[-1].role == Message.Role.ASSISTANT:
        continued, history = history[-1], history[:-1]
    documents = None
    if any(m.parts for m in history if m.role == Message.Role.USER):
        documents = await retrieval.plan_for_request(
            model=conversation.model,
            history=history,
            user_id=owner_id,
            conversation_id=conversation.pk,
        )
    history = sendable(history)
    kept, dropped = images_to_send(history)
    model, notes = conversation.model, []
    if kept or (documents is not None and documents.pictures):
        try:
            model, note = await vision_model_for(conversation.model)
            notes.append(note)
        except NoVisionModel:
            if kept & {a.pk for a in history[-1].images or ()}:
                raise  # the question itself is about images
            # Earlier images and page pictures need eyes: the text goes without them, so
            # one refused image does not refuse every later question of the conversation.
            if kept:
                dropped, kept = dropped + len(kept), set()
                notes.append(
                    f"{dropped} earlier image{'s' if dropped != 1 else ''} left out: no model "
                    "here can see."
                )
                dropped = 0
            if documents is not None and documents.pictures:
                notes.append("Page pictures left out: no model here can see.")
                documents.pictures = []
        if dropped:
            notes.append(
                f"{dropped} earlier image{'s' if dropped != 1 else ''} left out: a request "
                f"carries at most {MAX_IMAGES_PER_REQUEST}."
            )
    fitted = await _fitted(conversation, model, history, kept, documents)
    history, prompt_tokens = fitted.history, fitted.prompt_tokens
    if kept:
        messages = await asyncio.to_thread(
            chat_messages, system_prompt=conversation.system_prompt, history=history, images=kept
        )
    else:
        messages = chat_messages(system_prompt=conversation.system_prompt, history=history)
    citations = None
    if documents is not None:
        notes.append(await _with_documents(messages, documents, len(kept)))
        citations = Citations(
            tuple((d.pk, d.name, d.page_count) for d in documents.documents), _page_url
        )
    notes.append(fitted.note)
    provider = providers.provider_for(model)
    if continued is not None:
        messages += continuation_messages(provider, continued.text)
    tools: list[Tool] = []
    if conversation.tools and continued is None:
        tools = await _tools(conversation, model, history, notes)
    answer_format = answer_format_of(conversation)
    if answer_format is not None and provider.kind == "local":
        notes.append("The answer format was not applied: the small local model writes text only.")
        answer_format = None
    body = provider.build_body(
        model=provider.upstream(model),
        messages=messages,
        stream=True,
        temperature=conversation.temperature,
        top_p=conversation.top_p,
        max_tokens=conversation.max_tokens,
        random_seed=conversation.random_seed,
        safe_prompt=conversation.safe_prompt,
        response_format=answer_format.response_format() if answer_format else None,
        tools=[tool.definition() for tool in tools] or None,
    )
    notice = " ".join(note.strip() for note in notes if note.strip())
    image_tokens = sum(a.tokens for m in history for a in m.images or () if a.pk in kept)
    return RequestPlan(
        provider,
        model,
        body,
        notice,
        citations,
        prompt_tokens,
        image_tokens,
        answer_format,
        tuple(tools),
    )


async def _tools(
    conversation: Conversation, model: str, history: list[PromptMessage], notes: list[str]
) -> list[Tool]:
    """The tools switched on for the conversation, when its model can call them; a note
    for the reader when it cannot. A continued answer goes without (its prefix must end
    the request)."""
    try:
        calls_tools = await providers.can_call_tools(model)
    except ChatError as err:  # the model list could not be read: answer without tools
        logger.info("Listing models failed (%s); no tools offered", err.code)
        notes.append("Tools were not offered: the model server's list of models is unavailable.")
        return []
    if not calls_tools:
        notes.append(f"Tools were not offered: {model} cannot call them.")
        return []
    has_documents = bool(document_ids_of(history))
    return await tools_for(conversation.tools, has_documents=has_documents)


async def _fitted(
    conversation: Conversation,
    model: str,
    history: list[PromptMessage],
    images: set[int],
    documents: retrieval.Plan | None,
) -> Fitted:
    """`history` cut to the model's context window (context_window.py), with room kept for
    the answer: the conversation's max_tokens, else a quarter of the window up to 1,024."""
    extra = documents.tokens if documents is not None else 0
    system_prompt = conversation.system_prompt
    bound = prompt_bound(history, system_prompt=system_prompt, images=images, extra_tokens=extra)
    if bound <= SMALL_PROMPT:
        return Fitted(history, 0, None)
    window, assumed = await providers.context_window(model)
    budget = window - (conversation.max_tokens or min(window // 4, 1024))
    if bound <= budget:
        return Fitted(history, 0, None)
    limit = f"{model}'s context window of {window:,} tokens" + (
        " (assumed: its server does not say)" if assumed else ""
    )
    return await asyncio.to_thread(
        fit_history,
        history,
        system_prompt=system_prompt,
        images=images,
        extra_tokens=extra,
        budget=budget,
        limit_words=limit,
    )


def sendable(history: list[PromptMessage]) -> list[PromptMessage]:
    """The messages a request carries: an answer without text is left out (the API rejects
    an empty assistant turn), and so is the question it left unanswered, which would
    otherwise go again beside the next one as two questions in a row; the newest question,
    whose answer this is, always goes."""
    kept = []
    for position, message in enumerate(history):
        unanswered = position + 1 < len(history) and _empty_answer(history[position + 1])
        if _empty_answer(message) or (message.role == Message.Role.USER and unanswered):
            continue
        kept.append(message)
    return kept


# The plain follow-up that continues a cut answer on a server without Mistral's `prefix`.
CONTINUE_PROMPT = (
    "Your answer above was cut off. Continue it from exactly where it stopped, without "
    "repeating anything or adding a preamble."
)


def continuation_messages(provider: providers.Provider, text: str) -> list[dict[str, Any]]:
    """The end of a request that continues an answer cut short: on Mistral, the answer as
    an assistant message with `prefix: true`, which the model writes on from (the API
    wants it last, and the reply is only the new text); elsewhere, the answer and a plain
    follow-up asking for the rest."""
    if provider.kind == "mistral":
        return [{"role": "assistant", "content": text, "prefix": True}]
    return [{"role": "assistant", "content": text}, {"role": "user", "content": CONTINUE_PROMPT}]


def _empty_answer(message: PromptMessage) -> bool:
    return message.role == Message.Role.ASSISTANT and not message.text


def _page_url(document_id: int, page: int) -> str:
    return reverse("document_page", args=[document_id, page])


def chat_messages(
    *, system_prompt: str, history: list[PromptMessage], images: Collection[int] = ()
) -> list[dict[str, Any]]:
    """The conversation in the model server's shape, from `sendable(history)`.

    A question whose attachments are in `images` (ids, see images_to_send) becomes content
    parts: its text, then one `image_url` part per image, a `data:image/...;base64,` URL of
    the stored model copy. That reads files: with `images`, call it off the event loop."""
    messages: list[dict[str, Any]] = []
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt})
    for message in history:
        content: str | list[dict[str, str]] = message.text
        if message.role == Message.Role.USER and message.images:
            sent = [a for a in message.images if a.pk in images]
            if sent:
                parts = [{"type": "text", "text": message.text}] if message.text.strip() else []
                content = parts + [
                    {"type": "image_url", "image_url": image_data_url(a)} for a in sent
                ]
            elif not message.text.strip():
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
    except ChatError as err:
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


async def _with_documents(
    messages: list[dict[str, Any]], documents: retrieval.Plan, images: int
) -> str:
    """Put the documents' parts before the newest question's own content (page pictures
    are rendered in a thread and share the request's image limit with attached images);
    returns the note saying how they were sent."""
    parts, left_out = await asyncio.to_thread(
        retrieval.document_parts, documents, MAX_IMAGES_PER_REQUEST - images
    )
    last = messages[-1]
    content = last["content"]
    own = [{"type": "text", "text": content}] if isinstance(content, str) else content
    last["content"] = parts + [part for part in own if part.get("text", True)]
    note = documents.note()
    if left_out:
        note += f" {left_out} page picture{'s' if left_out != 1 else ''} left out."
    return note
