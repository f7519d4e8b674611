"""The model servers' exception tree, and how an HTTP error answer maps onto it. No Django.

No httpx exception, and none of http_stream's, leaves the model clients: every failure to
talk to a model server becomes one of these, with a stable `code`, the HTTP `status` when
there was one, and whether a retry may help. `message` is a short sentence safe to show.

    ModelServerError            .code, .status, .retryable (a ChatError: conversations/errors.py)
    ├── AuthenticationError     "auth": 401 key rejected, 403 no access to the model or plan
    ├── InvalidModel            "invalid_model": 400 invalid_model, or 404
    ├── InvalidRequest          "invalid_request": any other 400, 422 (carries Mistral's message)
    ├── RateLimited             "rate_limited", retryable: 429; .retry_after in seconds or None
    ├── UpstreamUnavailable     "upstream_unavailable", retryable: 5xx
    ├── UpstreamTimeout         "timeout", retryable: connecting or a read stalled too long
    ├── ConnectionFailed        "connection_failed", retryable: no connection, or it dropped
    │                           before an answer began
    ├── StreamInterrupted       "interrupted": cut mid-stream, or ended without `data: [DONE]`
    ├── MalformedStream         "malformed_stream": a chunk that is not JSON or not a chunk
    ├── ModelError              "model_error": the model finished with finish_reason "error"
    └── LocalModelUnavailable   "model_unavailable": the local model cannot load (local_model.py)
"""

import email.utils
import math
from datetime import UTC, datetime
from typing import Any

import orjson

from conversations.errors import ChatError


class ModelServerError(ChatError):
    """Base of every failure talking to a model server."""

    code: str = "error"
    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(ModelServerError):
    code = "auth"


class InvalidModel(ModelServerError):
    code = "invalid_model"


class InvalidRequest(ModelServerError):
    code = "invalid_request"


class RateLimited(ModelServerError):
    code = "rate_limited"
    retryable = True

    def __init__(
        self, message: str, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class UpstreamUnavailable(ModelServerError):
    code = "upstream_unavailable"
    retryable = True


class UpstreamTimeout(ModelServerError):
    code = "timeout"
    retryable = True


class ConnectionFailed(ModelServerError):
    code = "connection_failed"
    retryable = True


class StreamInterrupted(ModelServerError):
    code = "interrupted"


class MalformedStream(ModelServerError):
    code = "malformed_stream"


class ModelError(ModelServerError):
    code = "model_error"


_DETAIL_LIMIT = 300


def status_error(
    status: int,
    retry_after_header: str | None,
    content: bytes,
    *,
    model: str | None,
    api_key: str,
) -> ModelServerError:
    """Map a non-200 answer to its error. Bodies change shape over time and by gateway layer,
    so the message is looked for leniently; the key is scrubbed before anything is cut short."""

    def scrub(text: str) -> str:
        return text.replace(api_key, "[redacted]") if api_key else text

    detail, data = _error_detail(content)
    detail = scrub(detail)
    if len(detail) > _DETAIL_LIMIT:
        detail = detail[: _DETAIL_LIMIT - 1] + "…"
    suffix = f": {detail}" if detail else "."
    err: ModelServerError
    if status == 401:
        err = AuthenticationError("The model server rejected the API key (401).", status=status)
    elif status == 403:
        err = AuthenticationError(
            "The API key has no access to this model or plan (403).", status=status
        )
    elif status == 404 or (status == 400 and _is_invalid_model(data, detail)):
        name = f"The model {scrub(repr(model))}" if model else "The requested model"
        err = InvalidModel(f"{name} is not available ({status}){suffix}", status=status)
    elif status == 429:
        # The wait is in .retry_after, for the caller to phrase (it may retry first).
        err = RateLimited(
            "The model server's rate limit was reached (429).",
            status=status,
            retry_after=_parse_retry_after(retry_after_header),
        )
    elif status == 408:
        err = UpstreamTimeout("The model server timed out (408).", status=status)
    elif 400 <= status < 500:
        err = InvalidRequest(
            f"The model server refused the request ({status}){suffix}", status=status
        )
    else:
        err = UpstreamUnavailable(f"The model server is unavailable ({status}).", status=status)
    return err


def _error_detail(content: bytes) -> tuple[str, Any]:
    """Mistral's message from an error body: `message` (a string, or an object holding
    `detail`), then `detail` (a string or a list of {loc, msg}), then the raw text."""
    try:
        data = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "detail"):
            text = _detail_text(data.get(key))
            if text:
                return text, data
    return content.decode("utf-8", "replace").strip(), data


def _detail_text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return _detail_text(value.get("detail") or value.get("message"))
    if isinstance(value, list) and value:
        first = value[0]
        if not isinstance(first, dict):
            return str(first)
        msg = str(first.get("msg") or "").strip()
        loc = first.get("loc")
        if isinstance(loc, list) and loc:
            return f"{msg} at {'.'.join(str(part) for part in loc)}"
        return msg
    return ""


def _is_invalid_model(data: Any, detail: str) -> bool:
    if isinstance(data, dict) and (
        data.get("type") == "invalid_model" or str(data.get("code")) == "1500"
    ):
        return True
    return detail.lower().startswith("invalid model")


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)
