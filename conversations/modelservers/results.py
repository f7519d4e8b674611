"""What the model clients return: a stream's batches, a short answer, OCR pages, embeddings
and model cards; plain data, shared by every client (Mistral's, the OpenAI-compatible
servers', the local model's). No Django.
"""

from dataclasses import dataclass, field
from typing import Any


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
