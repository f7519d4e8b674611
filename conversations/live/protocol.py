"""The websocket protocol: frame shapes both ways, and `parse_frame()` for what a browser sends.

Documented with examples in docs/protocol.md; this module and that page change together.
"""

from typing import Any, Literal, NotRequired, TypedDict

import orjson

from conversations.ids import MAX_ID, is_id

# A frame bigger than this is refused before it is parsed (a question's own limit is
# CHAT_MAX_MESSAGE_CHARS; this only bounds the work of reading JSON).
MAX_FRAME_BYTES = 256 * 1024
# Bounds the ids a `send` may list; how many images a message may carry is the service's rule.
_MAX_ATTACHMENT_IDS = 100
# A model id's length at most (as models.MODEL_ID_MAX_LENGTH: servers name models by paths).
_MAX_MODEL_ID_CHARS = 400


class ProtocolError(Exception):
    """A frame the server cannot act on; `code` is stable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Browser → server


class SubscribeFrame(TypedDict):
    type: Literal["subscribe"]
    conversation: int
    since: NotRequired[int]  # the newest message id the tab already shows


class SendFrame(TypedDict):
    type: Literal["send"]
    conversation: int | None  # None starts a new conversation
    text: str
    model: NotRequired[str]
    attachments: NotRequired[list[int]]  # uploaded image ids, in the order shown
    documents: NotRequired[list[int]]  # uploaded document ids, read and ready
    tools: NotRequired[list[str]]  # a new conversation's tools, switched on in the composer
    temporary: NotRequired[
        bool
    ]  # a new conversation: a temporary chat (in no list, ends with the session)


class StopFrame(TypedDict):
    type: Literal["stop"]
    conversation: int


class RetryFrame(TypedDict):
    type: Literal["retry"]
    message: int


class ResyncFrame(TypedDict):
    type: Literal["resync"]
    message: int


class RegenerateFrame(TypedDict):
    """A new answer beside `message` (an answer), by `model` or the conversation's."""

    type: Literal["regenerate"]
    message: int
    model: NotRequired[str]


class EditFrame(TypedDict):
    """A new question beside `message` (a question): its text and files, kept or new."""

    type: Literal["edit"]
    message: int
    text: str
    attachments: NotRequired[list[int]]  # the edited question's own images kept, or uploads
    documents: NotRequired[list[int]]  # its own documents kept, or uploads read and ready


class ContinueFrame(TypedDict):
    """Write on from the last word of `message`, an answer cut short."""

    type: Literal["continue"]
    message: int


class ToolApproveFrame(TypedDict):
    """The user's decision on a tool call waiting for approval (a `tool` frame's call)."""

    type: Literal["tool_approve"]
    call: int
    approve: bool


ClientFrame = (
    SubscribeFrame
    | SendFrame
    | StopFrame
    | RetryFrame
    | ResyncFrame
    | RegenerateFrame
    | EditFrame
    | ContinueFrame
    | ToolApproveFrame
)


# Server → browser


class AttachmentData(TypedDict):
    id: int
    name: str
    url: str  # the copy the model got
    original_url: str
    width: int  # the original, upright
    height: int
    sent_width: int
    sent_height: int
    sent_bytes: int
    tokens: int  # the model's estimated image tokens


class DocumentRef(TypedDict):
    """A document as a question shows it: a chip with its name and size."""

    id: int
    name: str
    pages: int


class MessageData(TypedDict):
    id: int
    conversation: int
    parent: NotRequired[int | None]  # the message it follows (conversations/tree.py)
    # Its own id and its siblings', oldest first, where the thread shows "‹ 2/3 ›"; absent
    # on frames that do not change them.
    siblings: NotRequired[list[int]]
    role: str
    text: str
    html: str  # settled blocks while streaming, the whole answer once ended
    tail: str  # the open last block while streaming, else ""
    status: str
    seq: int  # deltas already folded into `text`
    model: str
    author: str  # who answers, in words: "Mistral", "Small local model", an endpoint's model
    error_code: str
    error_text: str
    finish_reason: str
    prompt_tokens: int | None
    completion_tokens: int | None
    usage_estimated: bool  # the tokens are our count: the server reported none
    cost_usd: str | None  # what the answer's call cost (a decimal string); None: no price
    time_to_first_token_ms: int | None
    duration_ms: int | None
    notice: NotRequired[str]  # an answer's note for the reader: which model answered, and why
    queue_position: NotRequired[int]  # answers ahead of it for the local model, while it waits
    attachments: NotRequired[list[AttachmentData]]  # a question's images
    documents: NotRequired[list[DocumentRef]]  # a question's documents


class DeltaFrame(TypedDict):
    type: Literal["delta"]
    conversation: int
    message: int
    seq: int
    text: str
    settled: list[str]  # html of blocks that settled with this delta, rendered once
    tail: NotRequired[str]  # html of the open tail; absent: append `text` to the old tail


class QueuedFrame(TypedDict):
    """An answer waits for the local model, which computes one at a time per process."""

    type: Literal["queued"]
    conversation: int
    message: int
    position: int  # answers ahead of this one; 0 once its turn has come


class ToolCallData(TypedDict):
    """One tool call of an answer (frames.tool_call_data)."""

    id: int
    step: int
    name: str  # the function name the model used
    title: str  # the tool's name for people
    source: str  # "Built in", or the MCP server's name
    status: str  # ToolCall.Status
    arguments_html: str  # sanitized
    result_html: str  # sanitized
    duration_ms: int | None
    status_text: str  # the status and time, for people


class ToolFrame(TypedDict):
    """A tool call of a streaming answer, new or changed; it takes the answer's next
    `seq`, like a delta."""

    type: Literal["tool"]
    conversation: int
    message: int
    seq: int
    call: ToolCallData


class ErrorFrame(TypedDict):
    type: Literal["error"]
    code: str
    message: str
    conversation: NotRequired[int]
    retry_after: NotRequired[float]


# The consumer answers the same for a row that is missing or not the user's.
NOT_FOUND = "No such conversation or message."


def _int(frame: dict[str, Any], key: str, *, optional: bool = False) -> int | None:
    """An id field: a non-negative integer, else `invalid`; one no row can have (0, or
    past the database's range) is `not_found`, as a missing row is, before any query."""
    value = frame.get(key)
    if value is None and optional:
        return None
    if type(value) is not int or value < 0:
        raise ProtocolError("invalid", f"'{key}' must be a non-negative integer.")
    if not is_id(value):
        raise ProtocolError("not_found", NOT_FOUND)
    return value


def _ids(frame: dict[str, Any], key: str, what: str) -> list[int]:
    ids = frame.get(key, [])
    if not isinstance(ids, list) or len(ids) > _MAX_ATTACHMENT_IDS or not all(map(is_id, ids)):
        raise ProtocolError("invalid", f"'{key}' must be a list of {what} ids.")
    return ids


def _model(frame: dict[str, Any]) -> dict[str, str]:
    model = frame.get("model")
    if model is None:
        return {}
    if not isinstance(model, str) or not 0 < len(model) <= _MAX_MODEL_ID_CHARS:
        raise ProtocolError("invalid", "'model' must be a model id.")
    return {"model": model}


# How many tools a `send` frame may switch on (Mistral documents at most 128 per request).
MAX_TOOLS = 128


def parse_frame(raw: str | bytes, *, max_text_chars: int) -> ClientFrame:
    """Parse and validate one frame from a browser, or raise ProtocolError."""
    if len(raw) > MAX_FRAME_BYTES:
        raise ProtocolError("frame_too_large", f"Frames are limited to {MAX_FRAME_BYTES} bytes.")
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("bad_json", "The frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise ProtocolError("bad_json", "A frame must be a JSON object.")
    kind = frame.get("type")
    if kind == "subscribe":
        parsed: dict[str, Any] = {"type": kind, "conversation": _int(frame, "conversation")}
        since = frame.get("since")
        if since is not None and (type(since) is not int or not 0 <= since <= MAX_ID):
            raise ProtocolError("invalid", "'since' must be a message id.")
        if since is not None:
            parsed["since"] = since
        return parsed  # type: ignore[return-value]
    if kind in ("send", "edit"):
        text = frame.get("text")
        if not isinstance(text, str):
            raise ProtocolError("invalid", "'text' must be a string.")
        attachments = _ids(frame, "attachments", "attachment")
        documents = _ids(frame, "documents", "document")
        if not text.strip() and not attachments and not documents:
            raise ProtocolError("empty_message", "The message is empty.")
        if len(text) > max_text_chars:
            raise ProtocolError(
                "too_long",
                f"The message is {len(text):,} characters; the limit is {max_text_chars:,}.",
            )
        if kind == "send":
            parsed = {"type": kind, "conversation": _int(frame, "conversation", optional=True)}
            parsed.update(_model(frame))
            tools = frame.get("tools")
            if tools is not None:
                if not (
                    isinstance(tools, list)
                    and len(tools) <= MAX_TOOLS
                    and all(isinstance(t, str) and 0 < len(t) <= 200 for t in tools)
                ):
                    raise ProtocolError("invalid", "'tools' must be a list of tool keys.")
                parsed["tools"] = tools
            temporary = frame.get("temporary")
            if temporary is not None:
                if type(temporary) is not bool:
                    raise ProtocolError("invalid", "'temporary' must be true or false.")
                parsed["temporary"] = temporary
        else:
            parsed = {"type": kind, "message": _int(frame, "message")}
        parsed["text"] = text
        if attachments:
            parsed["attachments"] = attachments
        if documents:
            parsed["documents"] = documents
        return parsed  # type: ignore[return-value]
    if kind == "stop":
        return {"type": kind, "conversation": _int(frame, "conversation")}  # type: ignore[typeddict-item]
    if kind in ("retry", "resync", "continue"):
        return {"type": kind, "message": _int(frame, "message")}  # type: ignore[return-value]
    if kind == "regenerate":
        return {"type": kind, "message": _int(frame, "message"), **_model(frame)}  # type: ignore[return-value]
    if kind == "tool_approve":
        if type(frame.get("approve")) is not bool:
            raise ProtocolError("invalid", "'approve' must be true or false.")
        return {"type": kind, "call": _int(frame, "call"), "approve": frame["approve"]}
    raise ProtocolError("unknown_type", f"Unknown frame type: {str(kind)[:40]!r}.")


def encode(frame: dict[str, Any]) -> bytes:
    """One JSON encoding per frame, shared by every tab it goes to: UTF-8, as a websocket
    text frame carries it (a channel-layer event carries it decoded)."""
    return orjson.dumps(frame)
