"""The model client: Mistral's chat API, with nothing from Django.

It builds request bodies from an allow-list (the API answers any unknown field with 422),
parses the server-sent event stream itself, turns every failure into one exception tree, and
retries what is safe to retry: only while nothing has reached the caller, so a stream is never
silently restarted after its first batch. Configuration comes through the constructor.

Exception tree (no httpx exception leaves this module):

    MistralError                .code, .status, .retryable; str() is a short user-safe sentence
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
    └── ModelError              "model_error": the model finished with finish_reason "error"

Streams are read with http_stream, a lean HTTP/1.1 reader made for the relay's hot path
(through httpx when the environment names a proxy, which http_stream does not speak);
the other calls (titles, the model list) go through httpx. httpcore scans its whole pool on
every request, so several small clients used round-robin beat one big pool under many
concurrent requests (encode/httpx#3215). They are made lazily per event loop, because an
AsyncClient must never be shared between loops.
"""

import asyncio
import contextlib
import email.utils
import itertools
import logging
import math
import random
import ssl
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from . import http_stream

logger = logging.getLogger(__name__)


class MistralError(Exception):
    """Base of every failure talking to Mistral; `code` is stable, `message` safe to show."""

    code: str = "error"
    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AuthenticationError(MistralError):
    code = "auth"


class InvalidModel(MistralError):
    code = "invalid_model"


class InvalidRequest(MistralError):
    code = "invalid_request"


class RateLimited(MistralError):
    code = "rate_limited"
    retryable = True

    def __init__(
        self, message: str, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class UpstreamUnavailable(MistralError):
    code = "upstream_unavailable"
    retryable = True


class UpstreamTimeout(MistralError):
    code = "timeout"
    retryable = True


class ConnectionFailed(MistralError):
    code = "connection_failed"
    retryable = True


class StreamInterrupted(MistralError):
    code = "interrupted"


class MalformedStream(MistralError):
    code = "malformed_stream"


class ModelError(MistralError):
    code = "model_error"


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


# Fields the spec allows on each message role; anything else earns a 422 (e.g. `name` on a
# user message, or `reasoning_content` on an assistant one).
_MESSAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "system": ("content",),
    "user": ("content",),
    "assistant": ("content", "tool_calls", "prefix"),
    "tool": ("content", "tool_call_id", "name"),
}


def build_chat_body(
    *,
    model: str,
    messages: list[dict],
    stream: bool,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    random_seed: int | None = None,
    safe_prompt: bool = False,
) -> dict:
    """The one place a chat request body is made: from an allow-list, because the API rejects
    every field it does not know (`stream_options`, `max_completion_tokens`, `name`...)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [_message(message) for message in messages],
        "stream": stream,
    }
    if temperature is not None:
        body["temperature"] = temperature
    if top_p is not None:
        body["top_p"] = top_p
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if random_seed is not None:
        body["random_seed"] = random_seed
    if safe_prompt:
        body["safe_prompt"] = True
    return body


def _message(message: dict) -> dict:
    role = message.get("role")
    fields = _MESSAGE_FIELDS.get(role)
    if fields is None:
        raise ValueError(f"Unknown message role: {role!r}")
    out = {"role": role, "content": message.get("content")}
    for name in fields[1:]:
        value = message.get(name)
        if value is not None:
            out[name] = value
    return out


class MistralClient:
    """Calls one Mistral endpoint with one key. Cheap to create: the HTTP clients it uses
    are pooled per event loop and base URL, and the key is sent per request."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        models_ttl: float = 300.0,
    ) -> None:
        base_url = base_url.rstrip("/")
        self._base_url = base_url
        self._chat_url = base_url + "/chat/completions"
        # Read once, as httpx reads the environment once per client: scanning it per
        # request cost nearly as much as the rest of opening a stream (docs/performance.md).
        self._stream_proxied = _proxied(self._chat_url)
        self._models_url = base_url + "/models"
        self._api_key = api_key
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._stream_headers = {
            **auth,
            "Accept": "text/event-stream",
            "Content-Type": "application/json",
        }
        self._json_headers = {
            **auth,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self._get_headers = {**auth, "Accept": "application/json"}
        # Writes get the read budget: a request with images can be megabytes.
        self._timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        )
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._models_ttl = models_ttl
        self._models: tuple[ModelCard, ...] | None = None
        self._models_at = 0.0

    async def stream_chat(self, body: dict) -> AsyncIterator[StreamBatch]:
        """Yield one StreamBatch per network read that carried text, usage or a finish reason.

        Retries retryable failures only until the first batch has been yielded; after that any
        failure is raised at once, so the caller never sees an answer restart. The stream is
        read with http_stream, the lean reader built for this path (httpx serves the rest)."""
        payload = orjson.dumps(body)
        model = body.get("model")
        attempt = 0
        while True:
            try:
                response = await self._open_stream(payload, model)
            except MistralError as err:
                await self._pause_before_retry(err, attempt)
                attempt += 1
                continue
            yielded = False
            decoder = _SSEDecoder()
            try:
                try:
                    while raw := await response.read():
                        batch = decoder.feed(raw)
                        if decoder.done:
                            await _drain(response)
                        if batch is not None:
                            yielded = True
                            yield batch
                        if decoder.error is not None:
                            raise decoder.error
                        if decoder.done:
                            return
                except http_stream.ReadTimeout as exc:
                    raise UpstreamTimeout(
                        "The model server stopped sending the answer.", status=200
                    ) from exc
                except http_stream.HTTPStreamError as exc:
                    raise StreamInterrupted(
                        "The connection to the model server was cut mid-answer.", status=200
                    ) from exc
                raise StreamInterrupted(
                    "The model server ended the answer before it was complete.", status=200
                )
            except MistralError as err:
                if yielded:
                    raise
                await response.aclose()  # free the connection before the pause
                await self._pause_before_retry(err, attempt)
            finally:
                await response.aclose()
            attempt += 1

    async def _open_stream(
        self, payload: bytes, model: str | None
    ) -> "http_stream.StreamingResponse | _ProxiedStream":
        """POST a streaming chat request and wait for the status line; a non-200 answer
        becomes its typed error."""
        if self._stream_proxied:
            return _ProxiedStream(
                await self._send("POST", self._chat_url, payload, self._stream_headers, model)
            )
        try:
            response = await http_stream.open_stream(
                "POST",
                self._chat_url,
                headers=self._stream_headers,
                body=payload,
                connect_timeout=self._connect_timeout,
                read_timeout=self._read_timeout,
                ssl_context=_shared_ssl_context() if self._chat_url.startswith("https:") else None,
            )
        except http_stream.ReadTimeout as exc:
            raise UpstreamTimeout("The model server did not answer in time.") from exc
        except http_stream.ConnectFailed as exc:
            raise ConnectionFailed("Could not connect to the model server.") from exc
        except http_stream.HTTPStreamError as exc:
            raise ConnectionFailed("The connection to the model server failed.") from exc
        if response.status == 200:
            if response.headers.get("content-encoding", "identity") != "identity":
                response.close()
                raise MalformedStream(
                    "The model server sent a compressed stream, which was not asked for.",
                    status=200,
                )
            return response
        try:
            content = await response.read_all(64 * 1024)
        except http_stream.HTTPStreamError:
            content = b""
        finally:
            response.close()
        raise _status_error(
            response.status,
            response.headers.get("retry-after"),
            content,
            model=model,
            api_key=self._api_key,
        )

    async def complete_chat(self, body: dict) -> ChatResult:
        """One answer in one JSON response (titles and other short calls); retried on any
        retryable failure since nothing has been shown yet."""
        if body.get("stream"):
            raise ValueError("complete_chat needs a body built with stream=False")
        data = await self._fetch_json("POST", self._chat_url, orjson.dumps(body), body.get("model"))
        try:
            choice = data["choices"][0]
            text = _content_text(choice["message"].get("content"))
            finish_reason = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise MalformedStream(
                "The model server sent an answer in an unknown shape.", status=200
            ) from exc
        if finish_reason == "error":
            raise ModelError("The model stopped with an error.", status=200)
        return ChatResult(text, finish_reason, _usage(data.get("usage")), data.get("model"))

    async def list_models(self, *, refresh: bool = False) -> list[ModelCard]:
        """The models this key can use, cached for `models_ttl` seconds: pickers ask often and
        the list rarely changes."""
        now = time.monotonic()
        if not refresh and self._models is not None and now - self._models_at < self._models_ttl:
            return list(self._models)
        data = await self._fetch_json("GET", self._models_url, None, None)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise MalformedStream("The model server sent an unknown model list.", status=200)
        cards = tuple(
            _model_card(item) for item in items if isinstance(item, dict) and item.get("id")
        )
        self._models, self._models_at = cards, now
        return list(cards)

    async def ocr(self, *, model: str, document_url: str, name: str) -> OcrResult:
        """`POST /v1/ocr` on one PDF given as a `data:application/pdf;base64,` URL: each
        page's markdown, in order. Only documented fields are sent (OCRRequest)."""
        body = {
            "model": model,
            "document": {
                "type": "document_url",
                "document_url": document_url,
                "document_name": name,
            },
        }
        data = await self._fetch_json("POST", self._base_url + "/ocr", orjson.dumps(body), model)
        try:
            pages = sorted(data["pages"], key=lambda page: page["index"])
            texts = [str(page.get("markdown") or "") for page in pages]
            processed = int((data.get("usage_info") or {}).get("pages_processed") or len(texts))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedStream("The OCR service sent an answer in an unknown shape.") from exc
        return OcrResult(texts, processed, data.get("model") or model)

    async def embeddings(self, *, model: str, inputs: list[str]) -> EmbeddingsResult:
        """`POST /v1/embeddings`: one vector per input, in the inputs' order."""
        body = {"model": model, "input": inputs}
        data = await self._fetch_json(
            "POST", self._base_url + "/embeddings", orjson.dumps(body), model
        )
        try:
            items = sorted(data["data"], key=lambda item: item["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedStream("The embeddings service sent an unknown shape.") from exc
        if len(vectors) != len(inputs):
            raise MalformedStream("The embeddings service sent the wrong number of vectors.")
        usage = _usage(data.get("usage"))
        return EmbeddingsResult(vectors, usage.prompt_tokens if usage else 0)

    async def _send(
        self, method: str, url: str, payload: bytes | None, headers: dict, model: str | None
    ) -> httpx.Response:
        """Send and wait for the status line; a non-200 answer becomes its typed error."""
        client = _pooled_client(self._base_url)
        request = client.build_request(
            method, url, content=payload, headers=headers, timeout=self._timeout
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("The model server did not answer in time.") from exc
        except httpx.ConnectError as exc:
            raise ConnectionFailed("Could not connect to the model server.") from exc
        except httpx.TransportError as exc:
            raise ConnectionFailed("The connection to the model server failed.") from exc
        if response.status_code == 200:
            return response
        try:
            content = await response.aread()
        except httpx.HTTPError:
            content = b""
        finally:
            await response.aclose()
        raise _status_error(
            response.status_code,
            response.headers.get("retry-after"),
            content,
            model=model,
            api_key=self._api_key,
        )

    async def _fetch_json(
        self, method: str, url: str, payload: bytes | None, model: str | None
    ) -> Any:
        attempt = 0
        while True:
            try:
                headers = self._json_headers if payload is not None else self._get_headers
                response = await self._send(method, url, payload, headers, model)
                try:
                    content = await response.aread()
                except httpx.TimeoutException as exc:
                    raise UpstreamTimeout("The model server stopped sending the answer.") from exc
                except httpx.TransportError as exc:
                    raise ConnectionFailed("The connection to the model server was lost.") from exc
                finally:
                    await response.aclose()
                try:
                    return orjson.loads(content)
                except orjson.JSONDecodeError as exc:
                    raise MalformedStream(
                        "The model server sent an unreadable answer.", status=200
                    ) from exc
            except MistralError as err:
                await self._pause_before_retry(err, attempt)
                attempt += 1

    async def _pause_before_retry(self, err: MistralError, attempt: int) -> None:
        """Sleep before retry number `attempt + 1`, or raise `err` when it must not be retried."""
        if not err.retryable or attempt >= self._max_retries:
            raise err
        cap = min(self._backoff_max, self._backoff_base * 2**attempt)
        delay = random.uniform(0, cap)  # noqa: S311 -- full jitter, not cryptography
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            if retry_after > self._backoff_max:
                raise err  # too long to hold the user: tell them the wait instead
            delay = max(delay, retry_after)
        logger.info(
            "Mistral request failed (%s, status %s); retry %d of %d in %.2f s",
            err.code,
            err.status,
            attempt + 1,
            self._max_retries,
            delay,
        )
        await asyncio.sleep(delay)


class _SSEDecoder:
    """Turns raw network reads into StreamBatches.

    It works on bytes, so an event (or a UTF-8 character) split across reads is completed by the
    next read, and every complete event of one read goes into one batch. After a read, `done`
    says `data: [DONE]` came and `error` holds a failure to raise once the batch is handed on.
    """

    __slots__ = ("_pending", "done", "error", "model")

    def __init__(self) -> None:
        self._pending = b""
        self.done = False
        self.error: MistralError | None = None
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
                        text = content if isinstance(content, str) else _content_text(content)
                        if text:
                            parts.append(text)
                    if choice.get("finish_reason") is not None:
                        finish_reason = choice["finish_reason"]
                if chunk.get("usage") is not None:
                    usage = _usage(chunk["usage"])
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
        if parts or finish_reason is not None or usage is not None:
            return StreamBatch("".join(parts), finish_reason, usage, self.model)
        return None


def _event_data(event: bytes) -> bytes | None:
    """The data of one SSE event, or None for comments and events without data."""
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]  # what Mistral sends: one data line per event
    lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[6:] if line[5:6] == b" " else line[5:] for line in lines)


async def _drain(response: "http_stream.StreamingResponse | _ProxiedStream") -> None:
    """Read the body to its end after [DONE] so the connection goes back to the pool; leaving
    early closes it. Only reuse is at stake, so a failure or a slow end is ignored."""
    with contextlib.suppress(http_stream.HTTPStreamError, TimeoutError):
        async with asyncio.timeout(2.0):
            while await response.read():
                pass


def _proxied(url: str) -> bool:
    """Whether the environment sends requests to `url` through a proxy (HTTPS_PROXY,
    ALL_PROXY, ... and NO_PROXY, as httpx reads them)."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(parts.hostname or "", proxies)


class _ProxiedStream:
    """A stream through a proxy, which http_stream does not speak: httpx reads it, behind
    http_stream's interface, so streams still work for servers behind a corporate proxy."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        encoded = "content-encoding" in response.headers
        self._reads = response.aiter_bytes() if encoded else response.aiter_raw()

    async def read(self) -> bytes:
        try:
            return await anext(self._reads, b"")
        except httpx.TimeoutException as exc:
            raise http_stream.ReadTimeout("no data within the read timeout") from exc
        except httpx.TransportError as exc:
            raise http_stream.ConnectionCut("the connection was cut") from exc

    async def aclose(self) -> None:
        await self._response.aclose()


def _content_text(content: Any) -> str:
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


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    prompt = data.get("prompt_tokens") or 0
    completion = data.get("completion_tokens") or 0
    return Usage(prompt, completion, data.get("total_tokens") or prompt + completion)


def _model_card(raw: dict) -> ModelCard:
    capabilities = raw.get("capabilities") or {}
    return ModelCard(
        id=raw["id"],
        name=raw.get("name") or raw["id"],
        description=raw.get("description") or "",
        max_context_length=int(raw.get("max_context_length") or 32768),
        aliases=tuple(raw.get("aliases") or ()),
        vision=bool(capabilities.get("vision")),
        function_calling=bool(capabilities.get("function_calling")),
        completion_chat=bool(capabilities.get("completion_chat")),
        deprecation=raw.get("deprecation"),
        raw=raw,
    )


_DETAIL_LIMIT = 300


def _status_error(
    status: int,
    retry_after_header: str | None,
    content: bytes,
    *,
    model: str | None,
    api_key: str,
) -> MistralError:
    """Map a non-200 answer to its error. Bodies change shape over time and by gateway layer,
    so the message is looked for leniently; the key is scrubbed before anything is cut short."""

    def scrub(text: str) -> str:
        return text.replace(api_key, "[redacted]") if api_key else text

    detail, data = _error_detail(content)
    detail = scrub(detail)
    if len(detail) > _DETAIL_LIMIT:
        detail = detail[: _DETAIL_LIMIT - 1] + "…"
    suffix = f": {detail}" if detail else "."
    err: MistralError
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


_CLIENTS_PER_POOL = 8
_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=8)
# The pooled clients' defaults; every request carries its MistralClient's own timeout.
_DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=10.0)

_Pool = tuple[list[httpx.AsyncClient], Iterator[httpx.AsyncClient]]
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Pool]] = (
    weakref.WeakKeyDictionary()
)
_ssl_context: ssl.SSLContext | None = None


def _pooled_client(base_url: str) -> httpx.AsyncClient:
    """The next client of this loop's pool for `base_url`, created on first use."""
    loop = asyncio.get_running_loop()
    pools = _pools.get(loop)
    if pools is None:
        pools = _pools[loop] = {}
    pool = pools.get(base_url)
    if pool is None:
        verify = _shared_ssl_context()
        clients = [
            httpx.AsyncClient(limits=_LIMITS, timeout=_DEFAULT_TIMEOUT, verify=verify)
            for _ in range(_CLIENTS_PER_POOL)
        ]
        pool = pools[base_url] = (clients, itertools.cycle(clients))
    return next(pool[1])


def _shared_ssl_context() -> ssl.SSLContext:
    """One certificate store for all clients: loading it costs milliseconds per client."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


async def aclose_clients() -> None:
    """Close every pooled HTTP client and kept-alive stream connection of the running loop
    (at shutdown, and in test teardown)."""
    pools = _pools.pop(asyncio.get_running_loop(), None)
    if pools:
        await asyncio.gather(
            *(client.aclose() for clients, _ in pools.values() for client in clients)
        )
    await http_stream.aclose_connections()
