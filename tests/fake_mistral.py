"""A fake Mistral API that speaks the real wire protocol over real HTTP/1.1 on 127.0.0.1.

Timeouts, stalls and a socket cut mid-answer exist only on a real connection, so this is a
small HTTP/1.1 server written on `asyncio.start_server` (keep-alive, Content-Length request
bodies, chunked or fixed-length responses) that controls exactly which bytes go out and when the
connection ends. It runs in its own thread with its own event loop, so it keeps answering while
a test's loop is busy, and one instance is shared by the whole run (like httpx's own test
server); `reset()` gives each test a clean slate.

Like the real API it is strict: every chat request body is validated against the schemas in
`conversations/mistral_schemas.json` (extracted from Mistral's OpenAPI file) and an invalid one
gets Mistral's bare 422 `{"detail": [{"type": "extra_forbidden", "loc": [...], ...}]}`, before
any queued reply is used. Wire details follow ../shared/mistral-wire.md.

    with FakeMistral() as fake:
        fake.enqueue(Reply.tokens(["Hel", "lo"]))
        ...  # point the client at fake.base_url
"""

import asyncio
import base64
import binascii
import collections
import contextlib
import copy
import io
import itertools
import json
import logging
import re
import secrets
import ssl
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
import pypdfium2
from jsonschema import Draft202012Validator, ValidationError
from mistral_common.exceptions import MistralCommonException
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.protocol.instruct.validator import MistralRequestValidatorV13, ValidationMode
from PIL import Image
from pydantic import ValidationError as PydanticValidationError

logger = logging.getLogger(__name__)

SCHEMAS_PATH = Path(__file__).resolve().parent.parent / "conversations" / "mistral_schemas.json"
CREATED = 1767225600  # a fixed timestamp keeps replies reproducible
STALL_LIMIT = 60.0  # a stalled reply gives up after this long, so no test can hang forever


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    body: bytes = b""
    connection: int = 0  # which TCP connection carried it: equal ids mean keep-alive reuse
    # The images of a chat request, decoded, in the order they came: see image_parts().
    images: list["SentImage"] = field(default_factory=list)


@dataclass
class Reply:
    """What the next chat completion call gets; build one with the classmethods."""

    kind: str = "tokens"
    parts: list[str] = field(default_factory=list)
    interval: float = 0.0
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = None
    first_token_delay: float = 0.0
    gate: threading.Event | None = None
    per_event: int = 1
    status: int = 200
    body: dict | str | None = None
    headers: dict[str, str] | None = None
    # kind "tool_calls": the calls the model asks for, as the API sends them.
    calls: list[dict] = field(default_factory=list)
    incremental: bool = False  # each call in pieces, as OpenAI-compatible servers send them

    @classmethod
    def tool_calls(
        cls,
        calls: list[tuple[str, dict | str]],
        *,
        text: list[str] | None = None,
        ids: list[str] | None = None,
        usage: tuple[int, int] | None = None,
        incremental: bool = False,
        gate: threading.Event | None = None,
    ) -> "Reply":
        """An answer that asks for tools: `text` tokens first (if any), then every call in
        one delta, each whole with its own `index` (what Mistral sends), and
        finish_reason "tool_calls". `ids` default to fresh 9-character ones."""
        entries = []
        for index, (name, arguments) in enumerate(calls):
            call_id = ids[index] if ids else secrets.token_hex(8)[:9]
            if not isinstance(arguments, str):
                arguments = orjson.dumps(arguments).decode()
            entries.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                    "index": index,
                }
            )
        return cls(
            "tool_calls",
            list(text or []),
            finish_reason="tool_calls",
            usage=usage,
            calls=entries,
            incremental=incremental,
            gate=gate,
        )

    @classmethod
    def tokens(
        cls,
        tokens: list[str],
        *,
        interval: float = 0.0,
        finish_reason: str = "stop",
        usage: tuple[int, int] | None = None,
        first_token_delay: float = 0.0,
        gate: threading.Event | None = None,
    ) -> "Reply":
        """A normal answer, one event per token. With `gate`, the server holds the answer
        after its first token until the event is set."""
        return cls(
            "tokens",
            list(tokens),
            interval=interval,
            finish_reason=finish_reason,
            usage=usage,
            first_token_delay=first_token_delay,
            gate=gate,
        )

    @classmethod
    def burst(
        cls,
        tokens: list[str],
        *,
        per_event: int = 5,
        finish_reason: str = "stop",
        usage: tuple[int, int] | None = None,
    ) -> "Reply":
        """Many tokens per event and the whole stream in one write, as the API does under load."""
        return cls(
            "burst", list(tokens), per_event=per_event, finish_reason=finish_reason, usage=usage
        )

    @classmethod
    def error(cls, status: int, body: dict | str, headers: dict[str, str] | None = None) -> "Reply":
        return cls("error", status=status, body=body, headers=headers)

    @classmethod
    def unauthorized(cls) -> "Reply":
        return cls.error(401, {"message": "Unauthorized", "request_id": uuid.uuid4().hex})

    @classmethod
    def invalid_model(cls, name: str) -> "Reply":
        return cls.error(
            400,
            {
                "object": "error",
                "message": f"Invalid model: {name}",
                "type": "invalid_model",
                "param": None,
                "code": "1500",
            },
        )

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1) -> "Reply":
        headers = None if retry_after is None else {"Retry-After": str(retry_after)}
        body = {
            "object": "error",
            "message": "Rate limit exceeded",
            "type": "rate_limited",
            "param": None,
            "code": "1300",
        }
        return cls.error(429, body, headers)

    @classmethod
    def server_error(cls, status: int = 500) -> "Reply":
        body = {
            "object": "error",
            "message": HTTPStatus(status).phrase,
            "type": "server_error",
            "param": None,
            "code": None,
        }
        return cls.error(status, body)

    @classmethod
    def stall(cls, before_first_token: bool = True, tokens: list[str] | None = None) -> "Reply":
        """Headers and the role chunk (plus `tokens` unless before_first_token), then silence
        until the client hangs up."""
        if before_first_token:
            tokens = []
        elif tokens is None:
            tokens = ["Partial", " answer"]
        return cls("stall", list(tokens))

    @classmethod
    def cut(cls, tokens: list[str]) -> "Reply":
        """`tokens`, then the TCP connection closes: no last chunk, no [DONE]."""
        return cls("cut", list(tokens))

    @classmethod
    def malformed(cls, tokens: list[str]) -> "Reply":
        """`tokens`, then an event whose data is not JSON."""
        return cls("malformed", list(tokens))

    @classmethod
    def no_done(cls, tokens: list[str]) -> "Reply":
        """`tokens` with finish_reason stop, then a clean end of the body without [DONE]."""
        return cls("no_done", list(tokens))

    @classmethod
    def final_then_cut(cls, tokens: list[str]) -> "Reply":
        """`tokens`, the last with finish_reason stop and the usage, then the TCP connection
        closes before [DONE]."""
        return cls("final_then_cut", list(tokens))

    @classmethod
    def model_error(cls, tokens: list[str]) -> "Reply":
        """`tokens`, then a chunk with finish_reason "error", then [DONE]."""
        return cls("model_error", list(tokens))


def default_models() -> list[dict]:
    """A realistic /v1/models list (BaseModelCard shape), current as of the 2026 snapshot."""
    return [
        _card("mistral-small-latest", "mistral-small-2603", vision=True, temperature=0.3),
        _card(
            "mistral-medium-latest",
            "mistral-medium-3-5",
            aliases=["mistral-medium-3-5", "mistral-medium-3"],
            vision=True,
            temperature=0.3,
        ),
        _card("mistral-large-latest", "mistral-large-2512", vision=True, temperature=0.065),
        _card("ministral-8b-latest", "ministral-8b-2512", vision=True, temperature=0.3),
        _card("codestral-latest", "codestral-2508", context=256000, fim=True, temperature=0.3),
        _card("mistral-embed", "mistral-embed-2312", context=8192, chat=False, tools=False),
    ]


def ollama_show(*, num_ctx: int | None, arch: str = "llama", trained: int = 131072) -> dict:
    """Ollama's /api/show answer for a model: `parameters` holds num_ctx only when its
    Modelfile sets it; model_info's `<arch>.context_length` is the window it was trained for."""
    lines = ['stop                           "<|eot_id|>"', "temperature                    0.6"]
    if num_ctx is not None:
        lines.insert(0, f"num_ctx                        {num_ctx}")
    return {
        "modelfile": '# Modelfile generated by "ollama show"\nFROM /models/blob\n',
        "parameters": "\n".join(lines),
        "template": "{{ .Prompt }}",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": arch,
            "families": [arch],
            "parameter_size": "1.2B",
            "quantization_level": "Q8_0",
        },
        "model_info": {
            "general.architecture": arch,
            "general.parameter_count": 1235814432,
            f"{arch}.context_length": trained,
            f"{arch}.embedding_length": 2048,
        },
        "capabilities": ["completion"],
        "modified_at": "2026-01-01T00:00:00Z",
    }


def _card(
    model_id: str,
    name: str,
    *,
    aliases: list[str] | None = None,
    context: int = 262144,
    vision: bool = False,
    chat: bool = True,
    tools: bool = True,
    fim: bool = False,
    temperature: float | None = None,
) -> dict:
    capabilities = dict.fromkeys(
        (
            "completion_chat",
            "function_calling",
            "reasoning",
            "completion_fim",
            "fine_tuning",
            "vision",
            "ocr",
            "classification",
            "moderation",
            "audio",
            "audio_transcription",
            "audio_transcription_realtime",
            "audio_speech",
            "unified_resources",
        ),
        False,
    )
    capabilities.update(completion_chat=chat, function_calling=tools, vision=vision)
    capabilities["completion_fim"] = fim
    return {
        "id": model_id,
        "object": "model",
        "created": CREATED,
        "owned_by": "mistralai",
        "capabilities": capabilities,
        "name": name,
        "description": f"Official {name} Mistral AI model",
        "max_context_length": context,
        "aliases": aliases if aliases is not None else [name],
        "deprecation": None,
        "deprecation_replacement_model": None,
        "default_model_temperature": temperature,
        "type": "base",
    }


@cache
def _chat_validator() -> Draft202012Validator:
    document = json.loads(SCHEMAS_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator({**document["requests"]["chat"], "$defs": document["$defs"]})


@cache
def _request_validator(name: str) -> Draft202012Validator:
    document = json.loads(SCHEMAS_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator({**document["requests"][name], "$defs": document["$defs"]})


def request_errors(name: str, body: Any) -> list[dict]:
    """The 422 `detail` list for an OCR ("ocr") or embeddings ("embeddings") request body
    against its schema in Mistral's spec; empty when it is valid."""
    details: list[dict] = []
    for error in _request_validator(name).iter_errors(body):
        for item in _details(error, ()):
            if item not in details:
                details.append(item)
    return details


_PDF_URL = re.compile(r"^data:application/pdf;base64,([A-Za-z0-9+/]*={0,2})$")


def _pdf_errors(body: dict) -> list[dict]:
    """This app sends OCR a PDF as a data URL; anything else is a bug (Mistral answers a
    malformed one with 400 "Failed to fetch document")."""
    document = body.get("document") or {}
    url = document.get("document_url") if document.get("type") == "document_url" else None
    match = _PDF_URL.match(url or "")
    loc = ["body", "document", "document_url"]
    if match is None:
        return [{"type": "document_invalid", "loc": loc, "msg": "not a PDF data URL"}]
    try:
        _pdf_page_count(url)
    except ValueError as exc:
        return [{"type": "document_invalid", "loc": loc, "msg": str(exc)}]
    return []


def _pdf_page_count(url: str) -> int:
    raw = base64.b64decode(url.split(",", 1)[1], validate=True)
    try:
        pdf = pypdfium2.PdfDocument(raw)
    except pypdfium2.PdfiumError as exc:
        raise ValueError(f"not a readable PDF ({exc})") from None
    try:
        return len(pdf)
    finally:
        pdf.close()


def default_ocr_text(index: int) -> str:
    return f"OCR text of page {index + 1} of the document sent."


# What one embeddings call may carry (counted here as words, fewer than its tokens), and the
# refusal past it.
EMBEDDINGS_BATCH_TOKENS = 16_384
EMBEDDINGS_TOO_MANY_TOKENS = {
    "object": "error",
    "message": "Too many tokens overall, split into more batches.",
    "type": "invalid_request_prompt",
    "param": None,
    "code": "3210",
}


def word_vector(text: str, dims: int = 1024) -> list[float]:
    """A stand-in embedding: words hashed into `dims` buckets, so texts sharing words point
    the same way (enough for cosine ranking to find the chunk with the asked-about words).
    1024 dimensions, as mistral-embed's, so a client's reading of them costs what it will."""
    vector = [0.0] * dims
    for word in re.findall(r"\w+", text.lower()):
        vector[zlib.crc32(word.encode()) % dims] += 1.0
    return vector


def chat_request_errors(body: Any) -> list[dict]:
    """The 422 `detail` list Mistral would answer `body` with; empty when it is valid."""
    details: list[dict] = []
    for error in _chat_validator().iter_errors(body):
        for item in _details(error, ()):
            if item not in details:
                details.append(item)
    return details


def message_order_error(messages: list) -> dict | None:
    """The 400 for a conversation mistral-common's validator refuses (mistral-wire.md §3):
    it must start with a user or system message, and end with a user or tool message, or
    an assistant message with `prefix: true` (which the model then continues)."""
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    problem = None
    if not roles or roles[0] not in ("user", "system"):
        problem = f"Expected first role User or System but got {roles[0] if roles else None}"
    last = messages[-1] if messages else {}
    if roles and not (
        roles[-1] in ("user", "tool") or (roles[-1] == "assistant" and last.get("prefix") is True)
    ):
        problem = (
            f"Expected last role User or Tool (or Assistant with prefix True) for serving but "
            f"got {roles[-1]}"
        )
    if any(m.get("prefix") is True for m in messages[:-1] if isinstance(m, dict)):
        problem = "Only the last message can have prefix True"
    if problem is None:
        return None
    return {
        "object": "error",
        "message": problem,
        "type": "invalid_request_message_order",
        "param": None,
        "code": "3230",
    }


_CALL_ID = re.compile(r"[a-zA-Z0-9]{9}")


def tool_rules_error(body: dict) -> dict | None:
    """The 400 for a request that breaks Mistral's tool rules (mistral-wire.md §3): call
    ids of 9 letters and digits (code 3280, the live API's wording), then what
    mistral-common's validator checks: function names, one tool message per call with a
    known id, the role order around them."""
    messages = body.get("messages") or []
    if not body.get("tools") and not any(
        m.get("role") == "tool" or m.get("tool_calls") for m in messages if isinstance(m, dict)
    ):
        return None
    ids = [
        str(call.get("id", "")) if "tool_calls" in key else str(message.get("tool_call_id", ""))
        for message in messages
        if isinstance(message, dict)
        for key, calls in (
            ("tool_calls", message.get("tool_calls") or []),
            ("tool_call_id", [message] if message.get("role") == "tool" else []),
        )
        for call in calls
    ]
    bad = next((i for i in ids if not _CALL_ID.fullmatch(i)), None)
    if bad is not None:
        return {
            "object": "error",
            "message": f"Tool call id was {bad} but must be a-z, A-Z, 0-9, with a length of 9.",
            "type": "invalid_function_call",
            "param": None,
            "code": "3280",
        }
    try:
        request = ChatCompletionRequest.model_validate(
            {"messages": messages, "tools": body.get("tools"), "model": body.get("model")}
        )
        MistralRequestValidatorV13(ValidationMode.serving).validate_request(request)
    except (MistralCommonException, PydanticValidationError) as err:
        return {
            "object": "error",
            "message": str(err),
            "type": "invalid_request_message_order",
            "param": None,
            "code": "3230",
        }
    return None


def _details(error: ValidationError, tags: tuple) -> list[dict]:
    """Report the errors that say what is actually wrong, with the union tags on their way:
    pydantic puts a discriminated union's tag in `loc` (["body", "messages", 0, "user", "name"])."""
    if error.validator not in ("oneOf", "anyOf"):
        return _detail_items(error, _loc(error, tags))
    branches = error.schema[error.validator]
    discriminator = error.schema.get("discriminator")
    branch = None
    if discriminator and isinstance(error.instance, dict):
        name, mapping = discriminator["propertyName"], discriminator.get("mapping", {})
        if name not in error.instance:
            return [
                {
                    "type": "union_tag_not_found",
                    "loc": _loc(error, tags),
                    "msg": f"Unable to extract tag using discriminator '{name}'",
                    "input": error.instance,
                    "ctx": {"discriminator": f"'{name}'"},
                }
            ]
        tag = error.instance[name]
        if tag not in mapping:
            expected = ", ".join(f"'{option}'" for option in mapping)
            return [
                {
                    "type": "union_tag_invalid",
                    "loc": _loc(error, tags),
                    "msg": f"Input tag '{tag}' found using '{name}' does not match any of the "
                    f"expected tags: {expected}",
                    "input": error.instance,
                    "ctx": {
                        "discriminator": f"'{name}'",
                        "tag": str(tag),
                        "expected_tags": expected,
                    },
                }
            ]
        for index, subschema in enumerate(branches):
            if isinstance(subschema, dict) and subschema.get("$ref") == mapping[tag]:
                branch = index
                tags = (*tags, (len(error.absolute_path), tag))
    if branch is None and not error.context:
        return _detail_items(error, _loc(error, tags))
    if branch is None:
        # No tag: blame the branch that got furthest before failing (not one of wrong type).
        depth = len(error.absolute_path)
        relevant = [
            e
            for e in error.context
            if len(e.absolute_path) > depth or e.validator not in ("type", "const", "enum")
        ]
        if not relevant:
            return _detail_items(error, _loc(error, tags))
        branch = max(relevant, key=lambda e: len(e.absolute_path)).relative_schema_path[0]
    details = []
    for sub in error.context:
        if sub.relative_schema_path[0] == branch:
            details.extend(_details(sub, tags))
    return details or _detail_items(error, _loc(error, tags))


def _loc(error: ValidationError, tags: tuple) -> list:
    loc = ["body", *error.absolute_path]
    for position, tag in sorted(tags, key=lambda item: item[0], reverse=True):
        loc.insert(1 + position, tag)
    return loc


_TYPE_ERRORS = {
    "string": ("string_type", "Input should be a valid string"),
    "integer": ("int_type", "Input should be a valid integer"),
    "number": ("float_type", "Input should be a valid number"),
    "boolean": ("bool_type", "Input should be a valid boolean"),
    "array": ("list_type", "Input should be a valid list"),
    "object": ("dict_type", "Input should be a valid dictionary"),
    "null": ("none_required", "Input should be None"),
}
_BOUND_ERRORS = {
    "minimum": ("greater_than_equal", "greater than or equal to", "ge"),
    "maximum": ("less_than_equal", "less than or equal to", "le"),
    "exclusiveMinimum": ("greater_than", "greater than", "gt"),
    "exclusiveMaximum": ("less_than", "less than", "lt"),
}


def _detail_items(error: ValidationError, loc: list) -> list[dict]:
    """One jsonschema error in pydantic's words, as the API's FastAPI layer reports it."""
    validator, value, instance = error.validator, error.validator_value, error.instance
    if validator == "additionalProperties":
        known = error.schema.get("properties", {})
        return [
            {
                "type": "extra_forbidden",
                "loc": [*loc, key],
                "msg": "Extra inputs are not permitted",
                "input": instance[key],
            }
            for key in instance
            if key not in known
        ]
    if validator == "required":
        return [
            {"type": "missing", "loc": [*loc, key], "msg": "Field required", "input": instance}
            for key in value
            if key not in instance
        ]
    if validator == "type":
        kind, msg = _TYPE_ERRORS.get(value if isinstance(value, str) else value[0], ("", ""))
        return [{"type": kind or "type_error", "loc": loc, "msg": msg, "input": instance}]
    if validator in ("const", "enum"):
        options = [value] if validator == "const" else value
        expected = " or ".join(repr(option) for option in options)
        kind = "literal_error" if validator == "const" else "enum"
        msg = f"Input should be {expected}"
        return [{"type": kind, "loc": loc, "msg": msg, "input": instance}]
    if validator in _BOUND_ERRORS:
        kind, words, short = _BOUND_ERRORS[validator]
        return [
            {
                "type": kind,
                "loc": loc,
                "msg": f"Input should be {words} {value}",
                "input": instance,
                "ctx": {short: value},
            }
        ]
    return [{"type": "value_error", "loc": loc, "msg": error.message[:200], "input": instance}]


def _last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    part.get("text", "")
                    for part in content
                    if isinstance(part, dict) and part.get("type") == "text"
                )
    return ""


def split_tokens(text: str) -> list[str]:
    """Small word-sized tokens with their leading space, roughly as a tokenizer streams them."""
    return re.findall(r"\s*\S+", text) or [text]


def _prompt_tokens(messages: list) -> int:
    count = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            count += len(content.split()) + 4
        elif isinstance(content, list):
            count += 4 + sum(
                len(str(part.get("text", "")).split()) if part.get("type") == "text" else 256
                for part in content
                if isinstance(part, dict)
            )
    return count


@dataclass(frozen=True)
class SentImage:
    """One `image_url` part as the server decoded it."""

    message: int  # index in `messages`
    part: int  # index in that message's content
    mime: str  # from the data URL
    format: str  # what Pillow found in the bytes
    size: tuple[int, int]
    bytes: int
    metadata: tuple[str, ...]  # metadata blocks left in the file (EXIF, XMP, ICC...)


# Mistral's vision limits (docs: studio/conversations/vision), built to the strict figures.
IMAGE_LIMITS = {"per_request": 8, "bytes": 10_000_000, "side": 1540}
_DATA_URL = re.compile(r"^data:(image/(?:jpeg|png|webp|gif));base64,([A-Za-z0-9+/]*={0,2})$")
_MIME_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/gif": "GIF"}


def image_parts(body: dict) -> tuple[list[SentImage], list[dict]]:
    """Decode every `image_url` part, and the errors a strict server answers with: not the
    string form `data:image/<format>;base64,...` (what Mistral's examples send), base64 that
    does not decode, bytes that are not an image of the named type, over 10 MB, larger than
    the 1540 px the models use, more than 8 per request, or metadata left in (EXIF with GPS,
    XMP, ICC: this app promises to strip them, so the fake holds it to that)."""
    images: list[SentImage] = []
    errors: list[dict] = []
    for m, message in enumerate(body.get("messages") or []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for p, part in enumerate(content):
            if part.get("type") != "image_url":
                continue
            loc = ["body", "messages", m, "content", p, "image_url"]
            url = part.get("image_url")
            match = _DATA_URL.match(url) if isinstance(url, str) else None
            if match is None:
                errors.append(_image_error(loc, "must be a data:image/<format>;base64, URL"))
                continue
            mime, encoded = match.groups()
            try:
                raw = base64.b64decode(encoded, validate=True)
                with Image.open(io.BytesIO(raw)) as im:
                    im.load()
                    found, size = im.format, im.size
                    metadata = tuple(
                        key
                        for key in ("exif", "xmp", "icc_profile", "XML:com.adobe.xmp", "comment")
                        if im.info.get(key)
                    ) + (("exif",) if im.getexif() and "exif" not in im.info else ())
            except (binascii.Error, ValueError, OSError, SyntaxError) as exc:
                errors.append(_image_error(loc, f"is not a readable image ({exc})"))
                continue
            image = SentImage(m, p, mime, found, size, len(raw), metadata)
            images.append(image)
            if _MIME_FORMATS[mime] != found:
                errors.append(_image_error(loc, f"says {mime} but holds {found}"))
            if len(raw) > IMAGE_LIMITS["bytes"]:
                errors.append(_image_error(loc, "is over 10 MB"))
            if max(size) > IMAGE_LIMITS["side"]:
                errors.append(_image_error(loc, f"is {size[0]}x{size[1]}, over 1540 px"))
            if metadata:
                errors.append(_image_error(loc, f"still carries {', '.join(metadata)}"))
    if len(images) > IMAGE_LIMITS["per_request"]:
        errors.append(_image_error(["body", "messages"], f"has {len(images)} images, over 8"))
    return images, errors


def _image_error(loc: list, problem: str) -> dict:
    return {"type": "image_invalid", "loc": loc, "msg": f"Image {problem}", "input": None}


class _Stop(Exception):
    """The connection must close after this response."""


class FakeMistral:
    """The server. Attributes tests may change between requests: `models`, `api_key`.
    `strict=False` plays an OpenAI-compatible server instead: bodies are not checked against
    Mistral's schema (tests assert them exactly). With `ssl_context` (a server context, e.g.
    from trustme) it serves https, so a test sees the client's real TLS path."""

    def __init__(self, *, strict: bool = True, ssl_context: ssl.SSLContext | None = None) -> None:
        self.strict = strict
        self.ssl_context = ssl_context
        self.port: int | None = None
        self.requests: list[Recorded] = []
        self.models: list[dict] = default_models()
        self.api_key: str | None = None
        # False plays a server that reports no usage in a stream (llama.cpp's server).
        self.stream_usage = True
        # Set, the server also plays Ollama's own API beside /v1: /api/version, and /api/show
        # answering each model name with its entry here (ollama_show() builds one; a Reply
        # makes it fail or stall; a name not here is not found).
        self.ollama: dict[str, dict | Reply] | None = None
        # OCR's markdown for page `i` of the PDF it is sent, and failures to answer with.
        self.ocr_text = default_ocr_text
        self.ocr_error: Reply | None = None
        self.embeddings_error: Reply | None = None
        self._queue: collections.deque[Reply] = collections.deque()
        self._ids = itertools.count(1)
        self._connection_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "FakeMistral":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> "FakeMistral":
        _chat_validator()  # fail here, not in the server thread, if the schema file is missing
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="fake-mistral", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or self.port is None:
            raise RuntimeError("the fake Mistral server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = self._thread = None

    def enqueue(self, reply: Reply) -> None:
        """The next /chat/completions call (that passes validation) gets `reply`."""
        self._queue.append(reply)

    def reset(self) -> None:
        """Forget requests and queued replies, restore the defaults, and drop open connections
        (a stalled or gated reply of a previous test ends here)."""
        self._queue.clear()
        self.requests.clear()
        self.models = default_models()
        self.api_key = None
        self.stream_usage = True
        self.ollama = None
        self.ocr_text = default_ocr_text
        self.ocr_error = self.embeddings_error = None
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._drop_connections(), self._loop).result(10)

    # The deadline is the point of this helper, hence a timeout parameter.
    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Recorded]:  # noqa: ASYNC109
        """Poll until `n` requests have arrived (the server runs in another thread)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} requests, got {len(self.requests)}")
            await asyncio.sleep(0.005)
        return list(self.requests)

    # The server thread

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl_context)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        finally:
            ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop_connections()
        if self._server is not None:
            await self._server.wait_closed()

    async def _drop_connections(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # let the closed transports release their sockets

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = next(self._connection_ids)
        try:
            while True:
                request = await _read_request(reader, connection)
                if request is None:
                    break
                await self._respond(request, reader, writer)
                if request.headers.get("connection", "").lower() == "close":
                    break
        except (_Stop, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception:
            logger.exception("fake Mistral server failed")
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(
        self, request: Recorded, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.requests.append(request)
        if self.api_key is not None and request.headers.get("authorization") != (
            f"Bearer {self.api_key}"
        ):
            body = {"message": "Unauthorized", "request_id": uuid.uuid4().hex}
            await _send_json(writer, 401, body)
            return
        path = request.path
        if path == "/v1/models":
            if request.method != "GET":
                await _send_json(writer, 405, {"detail": "Method Not Allowed"})
                return
            await _send_json(writer, 200, {"object": "list", "data": copy.deepcopy(self.models)})
            return
        if path in ("/v1/ocr", "/v1/embeddings") and request.method == "POST":
            await self._document_call(path, request, writer)
            return
        if self.ollama is not None and path in ("/api/version", "/api/show"):
            await self._ollama_call(request, reader, writer)
            return
        if path != "/v1/chat/completions":
            await _send_json(writer, 404, {"detail": "Not Found"})
            return
        if request.method != "POST":
            await _send_json(writer, 405, {"detail": "Method Not Allowed"})
            return
        if request.json is None:
            detail = [
                {
                    "type": "json_invalid",
                    "loc": ["body", 0],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": "Expecting value"},
                }
            ]
            await _send_json(writer, 422, {"detail": detail})
            return
        errors = chat_request_errors(request.json) if self.strict else []
        if not errors and self.strict:
            request.images, errors = image_parts(request.json)
        if errors:
            await _send_json(writer, 422, {"detail": errors})
            return
        body = request.json
        order = message_order_error(body["messages"]) if self.strict else None
        if order is None and self.strict:
            order = tool_rules_error(body)
        if order is not None:
            await _send_json(writer, 400, order)
            return
        if self._queue:
            reply = self._queue.popleft()
        else:
            reply = Reply.tokens(
                split_tokens(f"Hello! You said: {_last_user_text(body['messages'])}")
            )
        if reply.kind == "error":
            await _send_reply_error(writer, reply)
        elif body.get("stream"):
            await self._stream(reply, body, reader, writer)
        else:
            await self._complete(reply, body, reader, writer)

    async def _ollama_call(
        self, request: Recorded, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Ollama's own API as far as the site reads it: `GET /api/version` and
        `POST /api/show {"model": name}`, with Ollama's answers and its 404."""
        assert self.ollama is not None
        if request.path == "/api/version" and request.method == "GET":
            await _send_json(writer, 200, {"version": "0.6.5"})
            return
        name = (request.json or {}).get("model") if request.method == "POST" else None
        show = self.ollama.get(name) if isinstance(name, str) else None
        if show is None:
            await _send_json(writer, 404, {"error": f"model '{name}' not found"})
        elif isinstance(show, Reply) and show.kind == "stall":
            await _wait_for_hangup(reader)
            raise _Stop
        elif isinstance(show, Reply):
            await _send_reply_error(writer, show)
        else:
            await _send_json(writer, 200, show)

    async def _document_call(
        self, path: str, request: Recorded, writer: asyncio.StreamWriter
    ) -> None:
        """OCR and embeddings: the body validated against its OCRRequest or EmbeddingRequest
        schema, then a reply of the documented shape (or `ocr_error`/`embeddings_error`)."""
        name = "ocr" if path == "/v1/ocr" else "embeddings"
        body = request.json
        errors = request_errors(name, body) if body is not None else [{"type": "json_invalid"}]
        if not errors and name == "ocr":
            errors = _pdf_errors(body)
        if errors:
            await _send_json(writer, 422, {"detail": errors})
            return
        failure = self.ocr_error if name == "ocr" else self.embeddings_error
        if failure is not None:
            await _send_reply_error(writer, failure)
            return
        if name == "ocr":
            count = _pdf_page_count(body["document"]["document_url"])
            pages = [
                {
                    "index": i,
                    "markdown": self.ocr_text(i),
                    "images": [],
                    "dimensions": {"dpi": 200, "height": 2200, "width": 1700},
                }
                for i in range(count)
            ]
            reply = {
                "pages": pages,
                "model": "mistral-ocr-2512",
                "usage_info": {"pages_processed": count, "doc_size_bytes": len(request.body)},
            }
        else:
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            tokens = sum(len(text.split()) for text in inputs)
            if tokens > EMBEDDINGS_BATCH_TOKENS:
                # mistral-embed's limit per call, and its refusal as the API words it.
                await _send_json(writer, 400, EMBEDDINGS_TOO_MANY_TOKENS)
                return
            reply = {
                "id": f"emb-{next(self._ids):06d}",
                "object": "list",
                "model": body["model"],
                "data": [
                    {"object": "embedding", "embedding": word_vector(text), "index": i}
                    for i, text in enumerate(inputs)
                ],
                "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens},
            }
        await _send_json(writer, 200, reply)

    def _usage(self, reply: Reply, body: dict) -> dict:
        if reply.usage is None:
            prompt, completion = _prompt_tokens(body["messages"]), len(reply.parts)
        else:
            prompt, completion = reply.usage
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    async def _stream(
        self,
        reply: Reply,
        body: dict,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        completion_id = f"cmpl-{next(self._ids):06d}"
        model = body["model"]

        def event(content: str, finish_reason: str | None = None, usage: dict | None = None):
            chunk: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "choices": [
                    {"index": 0, "delta": {"content": content}, "finish_reason": finish_reason}
                ],
            }
            if usage is not None:
                chunk["usage"] = usage
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        role_chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
        done = b"data: [DONE]\n\n"
        head = [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
            ("transfer-encoding", "chunked"),
            ("mistral-correlation-id", uuid.uuid4().hex),
        ]
        writer.write(_head(200, head))
        usage = self._usage(reply, body) if self.stream_usage else None
        kind, parts = reply.kind, reply.parts
        finishes = kind in ("tokens", "burst", "no_done", "final_then_cut")

        if kind == "burst":
            size = max(1, reply.per_event)
            groups = ["".join(parts[i : i + size]) for i in range(0, len(parts), size)] or [""]
            events = [event(text) for text in groups[:-1]]
            events.append(event(groups[-1], reply.finish_reason, usage))
            payload = b"data: " + orjson.dumps(role_chunk) + b"\n\n" + b"".join(events) + done
            await _write_chunk(writer, payload, last=True)
            return

        await _write_chunk(writer, b"data: " + orjson.dumps(role_chunk) + b"\n\n")
        if kind == "tool_calls":
            await self._stream_tool_calls(reply, event, role_chunk, usage, writer)
            await _write_chunk(writer, done, last=True)
            return
        if reply.first_token_delay:
            await asyncio.sleep(reply.first_token_delay)
        if finishes and not parts:
            parts = [""]
        for index, text in enumerate(parts):
            if index == 1 and reply.gate is not None:
                await _wait_gate(reply.gate)
            elif index and reply.interval:
                await asyncio.sleep(reply.interval)
            if finishes and index == len(parts) - 1:
                await _write_chunk(writer, event(text, reply.finish_reason, usage))
            else:
                await _write_chunk(writer, event(text))

        if kind == "tokens":
            await _write_chunk(writer, done, last=True)
        elif kind == "no_done":
            await _write_chunk(writer, b"", last=True)
        elif kind == "model_error":
            await _write_chunk(writer, event("", "error", usage) + done, last=True)
        elif kind == "malformed":
            await _write_chunk(writer, b"data: {not json\n\n", last=True)
        elif kind in ("cut", "final_then_cut"):
            raise _Stop  # closing now leaves the chunked body unfinished
        elif kind == "stall":
            await _wait_for_hangup(reader)
            raise _Stop

    async def _stream_tool_calls(self, reply, event, role_chunk, usage, writer) -> None:
        """Text tokens, then the calls in one delta (or, `incremental`, the id and name
        first and the arguments in two pieces, as OpenAI-compatible servers do), then the
        final chunk with finish_reason "tool_calls"."""
        for text in reply.parts:
            await _write_chunk(writer, event(text))
        if reply.gate is not None:
            await _wait_gate(reply.gate)

        def calls_event(entries: list[dict]) -> bytes:
            chunk = {**role_chunk, "choices": [{"index": 0, "delta": {"tool_calls": entries}}]}
            chunk["choices"][0]["finish_reason"] = None
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        if reply.incremental:
            for call in reply.calls:
                arguments = call["function"]["arguments"]
                half = len(arguments) // 2
                head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
                await _write_chunk(writer, calls_event([head]))
                for piece in (arguments[:half], arguments[half:]):
                    part = {"index": call["index"], "function": {"arguments": piece}}
                    await _write_chunk(writer, calls_event([part]))
        else:
            await _write_chunk(writer, calls_event(reply.calls))
        await _write_chunk(writer, event("", "tool_calls", usage))

    async def _complete(
        self,
        reply: Reply,
        body: dict,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if reply.kind == "stall":
            await _wait_for_hangup(reader)
            raise _Stop
        finish_reason = "error" if reply.kind == "model_error" else reply.finish_reason
        answer = {
            "id": f"cmpl-{next(self._ids):06d}",
            "object": "chat.completion",
            "model": body["model"],
            "usage": self._usage(reply, body),
            "created": CREATED,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(reply.parts),
                        "tool_calls": None,
                        "prefix": False,
                    },
                    "finish_reason": finish_reason,
                }
            ],
        }
        payload = orjson.dumps(answer)
        if reply.kind == "malformed":
            payload = b"{not json"
        if reply.kind == "cut":
            head = [("content-type", "application/json"), ("content-length", str(len(payload)))]
            writer.write(_head(200, head) + payload[: len(payload) // 2])
            await writer.drain()
            raise _Stop
        await _send(writer, 200, payload, "application/json")


async def _read_request(reader: asyncio.StreamReader, connection: int) -> Recorded | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed a kept-alive connection
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    return Recorded(method, target.split("?", 1)[0], headers, parsed, body, connection)


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    payload: bytes,
    content_type: str,
    extra: dict[str, str] | None = None,
) -> None:
    headers = [("content-type", content_type), ("content-length", str(len(payload)))]
    headers.extend((extra or {}).items())
    writer.write(_head(status, headers) + payload)
    await writer.drain()


async def _send_json(writer: asyncio.StreamWriter, status: int, body: Any) -> None:
    await _send(writer, status, orjson.dumps(body), "application/json")


async def _send_reply_error(writer: asyncio.StreamWriter, reply: Reply) -> None:
    if isinstance(reply.body, str):
        payload, content_type = reply.body.encode(), "text/plain; charset=utf-8"
    else:
        payload, content_type = orjson.dumps(reply.body), "application/json"
    await _send(writer, reply.status, payload, content_type, reply.headers)


async def _write_chunk(writer: asyncio.StreamWriter, data: bytes, *, last: bool = False) -> None:
    """One HTTP chunk (one write, so usually one read on the other side); `last` ends the body."""
    out = b"%x\r\n%s\r\n" % (len(data), data) if data else b""
    if last:
        out += b"0\r\n\r\n"
    writer.write(out)
    await writer.drain()


async def _wait_gate(gate: threading.Event) -> None:
    deadline = time.monotonic() + STALL_LIMIT
    # A threading.Event set by the test's thread: polled, since it cannot be awaited.
    while not gate.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.002)


async def _wait_for_hangup(reader: asyncio.StreamReader) -> None:
    """Wait until the client closes the connection (it sends nothing while it waits for us)."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(reader.read(1), STALL_LIMIT)
