"""What the model clients return: a stream's batches, a short answer, OCR pages, embeddings
and model cards; plain data, shared by every client (Mistral's, the OpenAI-compatible
servers', the local model's). No Django.
"""

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True, frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(slots=True)
class StreamBatch:
    """Everything one network read carried: the deltas' text joined, plus usage/finish_reason
    if they came."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    # The `tool_calls` entries of the deltas, as sent: whole on Mistral, in pieces on
    # OpenAI-compatible servers (ToolCallsBuilder puts them together).
    tool_calls: list[dict] | None = None


@dataclass(slots=True, frozen=True)
class AskedCall:
    """One call the model asked for: its id, the function's name and its arguments as a
    JSON string (Mistral may send an object; it is written out)."""

    id: str
    name: str
    arguments: str


class ToolCallsBuilder:
    """A stream's tool calls put together from its deltas' entries, by `index`: Mistral
    sends each call whole, OpenAI-compatible servers send the id and name first and the
    arguments in pieces after."""

    __slots__ = ("_calls", "_last")

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}
        self._last = 0

    def add(self, entries: list[dict]) -> None:
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            call_id = str(entry.get("id") or "")
            index = entry.get("index")
            if not isinstance(index, int):
                index = len(self._calls) if call_id else self._last
            known = self._calls.get(index)
            if known is not None and call_id and known["id"] and known["id"] != call_id:
                index = max(self._calls) + 1  # another whole call under the same index
            self._last = index
            call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            if call_id:
                call["id"] = call_id
            function = entry.get("function") or {}
            if function.get("name"):
                call["name"] = str(function["name"])
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                call["arguments"] += arguments
            elif arguments is not None:
                call["arguments"] = orjson.dumps(arguments).decode()

    def calls(self) -> list[AskedCall]:
        return [
            AskedCall(call["id"], call["name"], call["arguments"] or "{}")
            for _, call in sorted(self._calls.items())
        ]


@dataclass(slots=True, frozen=True)
class ChatResult:
    text: str
    finish_reason: str | None
    usage: Usage | None
    model: str | None


@dataclass(slots=True, frozen=True)
class OcrResult:
    pages: list[str]  # markdown per page of the document sent, in order
    pages_processed: int  # what is billed
    model: str


@dataclass(slots=True, frozen=True)
class EmbeddingsResult:
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass(slots=True, frozen=True)
class ModelCard:
    id: str
    name: str
    description: str
    max_context_length: int
    aliases: tuple[str, ...]
    vision: bool
    function_calling: bool
    completion_chat: bool
    deprecation: str | None
    raw: dict = field(compare=False, repr=False)
    # The server did not say how long a prompt may be: max_context_length is a guess.
    context_assumed: bool = False


def content_text(content: Any) -> str:
    """Text of a message content: a string, or the `text` chunks of a list (thinking ignored)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text") or ""
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def usage_from(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    prompt = data.get("prompt_tokens") or 0
    completion = data.get("completion_tokens") or 0
    return Usage(prompt, completion, data.get("total_tokens") or prompt + completion)
