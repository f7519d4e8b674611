"""What the browser is told about a message, a conversation, an image or a document: the
dicts of frames (docs/protocol.md) and of the JSON the pages' scripts fetch, built from rows
in one place, so a reload and a live frame show the same thing. No queries: what a dict
needs is read with its row (selectors.with_images, message_submit).
"""

from decimal import Decimal
from typing import Any

import orjson
from django.urls import reverse

from conversations.answers import Outcome, Stored
from conversations.live.protocol import AttachmentData, DocumentRef, MessageData
from conversations.models import Attachment, Conversation, Document, Message, ToolCall
from conversations.modelservers import model_ids
from conversations.rendering import render_markdown
from conversations.tools.catalog import tool_label
from conversations.usage import AnswerTotals, usd_short


def message_data(message: Message, *, seq: int = 0) -> MessageData:
    """A message as the browser sees it, from its row."""
    data: MessageData = {
        "id": message.pk,
        "conversation": message.conversation_id,
        "parent": message.parent_id,
        "role": message.role,
        "text": message.text,
        "html": message.html,
        "tail": "",
        "status": message.status,
        "seq": seq,
        "model": message.model,
        "author": model_ids.author(message.model),
        "error_code": message.error_code,
        "error_text": message.error_text,
        "finish_reason": message.finish_reason,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "usage_estimated": message.usage_estimated,
        "cost_usd": _decimal(message.cost_usd),
        "time_to_first_token_ms": message.time_to_first_token_ms,
        "duration_ms": message.duration_ms,
        "notice": message.notice,
        **_attachments_of(message),
        **_documents_of(message),
    }
    siblings = getattr(message, "siblings", None)
    if siblings is not None:
        data["siblings"] = siblings
    calls = getattr(message, "tool_call_list", None)
    if calls:
        data["tools"] = tool_calls_data(calls)
    return data


def tool_call_data(
    *,
    pk: int,
    step: int,
    name: str,
    key: str,
    arguments: str,
    status: str,
    result: str,
    duration_ms: int | None,
) -> dict[str, Any]:
    """A tool call as the browser sees it: its arguments pretty-printed and its result,
    both untrusted, rendered through the answer's sanitizer."""
    title, source = tool_label(key, name)
    try:
        pretty = orjson.dumps(orjson.loads(arguments), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        pretty = arguments
    fence = "~~~~" if "~~~" in pretty else "~~~"
    return {
        "id": pk,
        "step": step,
        "name": name,
        "title": title,
        "source": source,
        "status": status,
        "arguments_html": render_markdown(f"{fence}json\n{pretty}\n{fence}"),
        "result_html": render_markdown(result) if result else "",
        "duration_ms": duration_ms,
        "status_text": _STATUS_TEXT.get(status, status)
        + (f" · {_duration(duration_ms)}" if duration_ms is not None else ""),
    }


# What the reader is told of a call in each status (ToolCall.Status).
_STATUS_TEXT = {
    "waiting": "Waiting for your approval",
    "running": "Running…",
    "done": "Done",
    "failed": "Failed",
    "timed_out": "Timed out",
    "refused": "Not run: you refused it",
    "cancelled": "Stopped",
    "unknown": "Not run: no such tool",
}


def _duration(ms: int) -> str:
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def tool_calls_data(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """Stored calls, in order, as tool_call_data."""
    return [
        tool_call_data(
            pk=call.pk,
            step=call.step,
            name=call.name,
            key=call.tool,
            arguments=call.arguments,
            status=call.status,
            result=call.result,
            duration_ms=call.duration_ms,
        )
        for call in calls
    ]


def ended_message_data(
    *, message_id: int, conversation_id: int, seq: int, outcome: Outcome, stored: Stored
) -> MessageData:
    """A finished answer as the browser sees it, from what was just stored."""
    return {
        "id": message_id,
        "conversation": conversation_id,
        "role": Message.Role.ASSISTANT,
        "text": outcome.text,
        "html": outcome.html,
        "tail": "",
        "status": outcome.status,
        "seq": seq,
        "model": outcome.model,
        "author": model_ids.author(outcome.model),
        "error_code": outcome.error_code,
        "error_text": outcome.error_text,
        "finish_reason": outcome.finish_reason,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "usage_estimated": outcome.usage_estimated,
        "cost_usd": _decimal(stored.cost_usd),
        "time_to_first_token_ms": outcome.time_to_first_token_ms,
        "duration_ms": outcome.duration_ms,
        "notice": outcome.notice,
    }


def totals_data(totals: AnswerTotals) -> dict[str, Any]:
    """A conversation's answers' totals, as the header shows them and the ending frame of
    each answer carries them."""
    return {"tokens": totals.tokens, "cost_usd": _decimal(totals.cost_usd)}


def totals_text(totals: AnswerTotals) -> str:
    """The header's line: "12,345 tokens · $0.013"; "" before the first answer.
    static/js/money.js's totalsText writes the same from a frame."""
    if not totals.tokens:
        return ""
    cost = "" if totals.cost_usd is None else f" · {usd_short(totals.cost_usd)}"
    return f"{totals.tokens:,} tokens{cost}"


def _decimal(value: Decimal | None) -> str | None:
    """Dollars as a string: JSON numbers would round them."""
    return None if value is None else str(value.normalize())


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


def conversation_data(conversation: Conversation) -> dict[str, Any]:
    """A conversation as the sidebar shows it."""
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model,
        "tools": conversation.tools,
        "temporary": conversation.temporary,
        "updated_at": conversation.updated_at.isoformat(),
        "pinned": conversation.pinned_at is not None,
        "archived": conversation.archived_at is not None,
    }


def document_data(document: Document) -> dict[str, Any]:
    """A document as the composer sees it while it is read."""
    return {
        "id": document.pk,
        "name": document.name,
        "mime": document.mime,
        "size": document.size,
        "status": document.status,
        "page_count": document.page_count,
        "pages_done": document.pages_done,
        "tokens": document.tokens,
        "error": document.error,
        "url": reverse("document_status", args=[document.pk]),
    }


def answer_meta(message: Message) -> str:
    """The line under an ended answer; static/js/thread.js writes the same from a frame."""
    if message.role != Message.Role.ASSISTANT or message.is_active:
        return ""
    parts = [message.model] if message.model else []
    if message.prompt_tokens is not None and message.completion_tokens is not None:
        about = "≈" if message.usage_estimated else ""
        parts.append(
            f"{about}{message.prompt_tokens:,} in · {about}{message.completion_tokens:,} out tokens"
            + (" (estimated)" if about else "")
        )
    if message.cost_usd is not None:
        parts.append(usd_short(message.cost_usd))
    if message.time_to_first_token_ms is not None:
        ms = message.time_to_first_token_ms
        first = f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"
        parts.append(f"first token {first}")
    return " · ".join(parts)
