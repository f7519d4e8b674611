"""Server-sent events from a chat stream, turned into StreamBatches as the bytes arrive: the
one SSE parser of the app (Mistral's API and the OpenAI-compatible servers send the same
shape). No Django.
"""

import orjson

from conversations.modelservers.errors import MalformedStream, ModelError, ModelServerError
from conversations.modelservers.results import StreamBatch, content_text, usage_from


class SSEDecoder:
    """Turns raw network reads into StreamBatches.

    It works on bytes, so an event (or a UTF-8 character) split across reads is completed by the
    next read, and every complete event of one read goes into one batch. After a read, `done`
    says `data: [DONE]` came and `error` holds a failure to raise once the batch is handed on.
    """

    __slots__ = ("_pending", "done", "error", "model")

    def __init__(self) -> None:
        self._pending = b""
        self.done = False
        self.error: ModelServerError | None = None
        self.model: str | None = None

    def feed(self, data: bytes) -> StreamBatch | None:
        buf = self._pending + data if self._pending else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")  # a trailing "\r" waits for its "\n"
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._pending = buf
            return None
        self._pending = buf[end + 2 :]
        parts: list[str] = []
        tool_calls: list[dict] | None = None
        finish_reason = None
        usage = None
        for event in buf[:end].split(b"\n\n"):
            payload = _event_data(event)
            if payload is None:
                continue
            if payload == b"[DONE]":
                self.done = True
                break
            try:
                chunk = orjson.loads(payload)
                choices = chunk["choices"]
                if choices:
                    choice = choices[0]
                    delta = choice.get("delta")
                    content = delta.get("content") if delta else None
                    if content:
                        text = content if isinstance(content, str) else content_text(content)
                        if text:
                            parts.append(text)
                    if delta and delta.get("tool_calls"):
                        tool_calls = (tool_calls or []) + list(delta["tool_calls"])
                    if choice.get("finish_reason") is not None:
                        finish_reason = choice["finish_reason"]
                if chunk.get("usage") is not None:
                    usage = usage_from(chunk["usage"])
                if chunk.get("model"):
                    self.model = chunk["model"]
            except orjson.JSONDecodeError:
                self.error = MalformedStream(
                    "The model server sent an unreadable chunk.", status=200
                )
                break
            except (KeyError, IndexError, TypeError, AttributeError):
                if isinstance(chunk, dict) and (
                    chunk.get("object") == "error" or "message" in chunk
                ):
                    self.error = ModelError(
                        "The model server reported an error mid-answer.", status=200
                    )
                else:
                    self.error = MalformedStream(
                        "The model server sent an unknown chunk.", status=200
                    )
                break
            if finish_reason == "error":
                self.error = ModelError("The model stopped with an error.", status=200)
                break
        if parts or finish_reason is not None or usage is not None or tool_calls:
            return StreamBatch("".join(parts), finish_reason, usage, self.model, tool_calls)
        return None


def _event_data(event: bytes) -> bytes | None:
    """The data of one SSE event, or None for comments and events without data."""
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]  # what Mistral sends: one data line per event
    lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[6:] if line[5:6] == b" " else line[5:] for line in lines)
