"""A conversation's title, written after its first exchange by a cheap non-streaming call to
the model server; when there was no answer, or the server cannot, the question's first words
serve. The title reaches every tab of the user as a sidebar event.
"""

import logging
import time

from channels.db import database_sync_to_async

from conversations.answers import Outcome
from conversations.errors import BudgetExceeded, ChatError
from conversations.live import broadcast
from conversations.live.frames import conversation_data
from conversations.models import Message
from conversations.modelservers import providers
from conversations.modelservers.results import ChatResult
from conversations.services import conversation_title_set
from conversations.usage import api_call_record, budget_limits_set, check_daily_budget

logger = logging.getLogger(__name__)

_INSTRUCTION = (
    "Write a title of at most six words for this conversation. "
    "Reply with the title only, no quotes, no final period."
)


async def title_after_first_answer(
    *, conversation_id: int, owner_id: int, question: str, outcome: Outcome
) -> None:
    """Name the conversation (unless the user named it meanwhile) and tell the user's tabs."""
    title = await _generated_title(question, outcome, conversation_id, owner_id)
    updated = await database_sync_to_async(conversation_title_set)(
        conversation_id=conversation_id, title=title
    )
    if updated is not None:
        await broadcast.user_publish(
            owner_id, {"type": "conversation", "conversation": conversation_data(updated)}
        )


async def _generated_title(
    question: str, outcome: Outcome, conversation_id: int, owner_id: int
) -> str:
    fallback = _short(question.strip().splitlines()[0] if question.strip() else "New chat")
    if outcome.status != Message.Status.COMPLETE:
        return fallback
    answer, model = outcome.text, outcome.model
    try:
        provider = providers.provider_for(model)
    except ChatError:
        return fallback
    title_model = provider.title_model(model)
    if title_model is None:
        return fallback
    body = provider.build_body(
        model=provider.upstream(title_model),
        messages=[
            {"role": "system", "content": _INSTRUCTION},
            {"role": "user", "content": f"Question: {question[:2000]}\n\nAnswer: {answer[:2000]}"},
        ],
        stream=False,
        max_tokens=24,
        temperature=0.3,
    )
    started = time.monotonic()
    try:
        if budget_limits_set():
            await database_sync_to_async(check_daily_budget)(user_id=owner_id)
        result = await provider.complete_chat(body)
    except BudgetExceeded:
        return fallback
    except ChatError as err:
        logger.info("Title generation failed (%s); using the question", err.code)
        await _title_call_record(conversation_id, owner_id, title_model, started, error=err)
        return fallback
    await _title_call_record(conversation_id, owner_id, title_model, started, result=result)
    title = result.text.strip().strip("\"'*#").strip().splitlines()
    return _short(title[0]) if title and title[0] else fallback


async def _title_call_record(
    conversation_id: int,
    owner_id: int,
    model: str,
    started: float,
    *,
    result: ChatResult | None = None,
    error: ChatError | None = None,
) -> None:
    """A title is a billed call like an answer: recorded with its usage, or its error."""
    usage = result.usage if result is not None else None
    await database_sync_to_async(api_call_record)(
        kind="title",
        model=model,
        status="complete" if error is None else "failed",
        user_id=owner_id,
        conversation_id=conversation_id,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        latency_ms=round((time.monotonic() - started) * 1000),
        error_code=error.code if error is not None else "",
    )


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
