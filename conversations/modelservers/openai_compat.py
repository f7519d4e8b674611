"""Requests and model lists for OpenAI-compatible servers (vLLM, Ollama, llama.cpp's server,
LM Studio), with nothing from Django.

They speak the same HTTP and server-sent events as Mistral, so MistralClient carries them;
what differs is what a body may hold and what a model list says. A body here holds only the
subset of OpenAI's chat completions API those servers document: Mistral's own fields
(`random_seed`, `safe_prompt`, `prefix`) are renamed or left out, `image_url` parts take
OpenAI's object form, and content of text parts alone goes as one string, which every such
server and chat template reads. The small model inside this process (local_model.py) reads the same
body.
"""

import dataclasses
from typing import Any

from conversations.modelservers.results import ModelCard

# Fields OpenAI's spec allows on each message role that these servers also read.
_MESSAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "system": ("content",),
    "user": ("content",),
    "assistant": ("content", "tool_calls"),
    "tool": ("content", "tool_call_id"),
}


def build_openai_chat_body(
    *,
    model: str,
    messages: list[dict],
    stream: bool,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    random_seed: int | None = None,
    safe_prompt: bool = False,
    response_format: dict | None = None,
    tools: list[dict] | None = None,
    tool_choice: str | None = None,
) -> dict:
    """The chat body for an OpenAI-compatible server, from the same arguments as
    build_chat_body so a caller need not know which server it talks to. `safe_prompt` is
    Mistral's alone and is dropped; the seed is OpenAI's `seed`. A stream asks for usage in
    its last chunk (`stream_options.include_usage`), which OpenAI's API and these servers
    send only when asked."""
    del safe_prompt  # no OpenAI-compatible server documents it
    body: dict[str, Any] = {
        "model": model,
        "messages": [openai_body_message(message) for message in messages],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if temperature is not None:
        body["temperature"] = temperature
    if top_p is not None:
        body["top_p"] = top_p
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if random_seed is not None:
        body["seed"] = random_seed
    if response_format is not None:
        body["response_format"] = response_format
    if tools:
        body["tools"] = tools
        body["tool_choice"] = tool_choice or "auto"
    return body


def openai_body_message(message: dict) -> dict:
    role = message.get("role")
    fields = _MESSAGE_FIELDS.get(role)
    if fields is None:
        raise ValueError(f"Unknown message role: {role!r}")
    content = message.get("content")
    if isinstance(content, list):
        if all(part.get("type") == "text" for part in content):
            # Text alone goes as one string: llama.cpp's server drops a list of text parts
            # (chatml) or crashes on it (a model's own template), and every server takes it.
            content = "\n\n".join(part.get("text", "") for part in content)
        else:
            content = [_part(part) for part in content]
    out = {"role": role, "content": content}
    for name in fields[1:]:
        value = message.get(name)
        if value is not None:
            out[name] = value
    return out


def _part(part: dict) -> dict:
    """OpenAI takes `image_url` as an object; Mistral also takes a bare string."""
    if part.get("type") == "image_url" and isinstance(part.get("image_url"), str):
        return {"type": "image_url", "image_url": {"url": part["image_url"]}}
    return part


# The context window taken for a model whose server does not say and whose endpoint sets
# none: small enough for what self-hosted servers commonly serve (llama.cpp's default was
# 4,096 for a long time), so a prompt is trimmed rather than cut by the server.
ASSUMED_CONTEXT = 4096


def reported_context(card: ModelCard) -> int:
    """The window a /models entry says its server serves, 0 when it says none: vLLM's
    `max_model_len`, llama.cpp's `meta.n_ctx` (never its training context, `n_ctx_train`,
    often four times what it serves). Ollama's entries say none (see ollama.py)."""
    raw = card.raw
    meta = raw.get("meta") if isinstance(raw.get("meta"), dict) else {}
    served = raw.get("max_model_len") or meta.get("n_ctx")
    return int(served) if isinstance(served, int | float) and served > 0 else 0


def openai_model_card(
    card: ModelCard,
    *,
    vision: bool,
    function_calling: bool = False,
    context_length: int = 0,
    served_context: int = 0,
) -> ModelCard:
    """A card from an OpenAI-compatible /models list, which has no capabilities: every model
    is taken to chat, and only the ones the operator named to see images or call functions
    do. The context window is the endpoint's setting (`context_length`), else what the
    server serves (its /models entry, else `served_context`, what it told another way, as
    Ollama's /api/show does), else ASSUMED_CONTEXT, marked `context_assumed`."""
    raw = card.raw
    context = context_length or reported_context(card) or served_context
    return dataclasses.replace(
        card,
        name=raw.get("name") or card.id,
        description=raw.get("description") or "",
        max_context_length=context or ASSUMED_CONTEXT,
        context_assumed=not context,
        vision=vision,
        function_calling=function_calling,
        completion_chat=True,
    )
