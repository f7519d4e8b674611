"""The model client: Mistral's chat API (and, through the same transport, any
OpenAI-compatible server), with nothing from Django.

It builds request bodies from an allow-list (the API answers any unknown field with 422),
turns every failure into one exception tree (modelservers/errors.py), and retries what is
safe to retry: only while nothing has reached the caller, so a stream is never silently
restarted after its first batch. Configuration comes through the constructor.

Streams are read with http_stream, a lean HTTP/1.1 reader made for the relay's hot path
(through httpx when the environment names a proxy, which http_stream does not speak), and
parsed by modelservers/sse.py; the other calls (titles, the model list, OCR, embeddings) go
through httpx's pooled clients (modelservers/transport.py).

Over 400 lines: MistralClient is one class, whose calls share its retry policy and error
mapping; the body builder beside it is the allow-list every request goes through.
"""

import asyncio
import logging
import random
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from conversations.modelservers import http_stream, transport
from conversations.modelservers.errors import (
    ConnectionFailed,
    MalformedStream,
    ModelError,
    ModelServerError,
    StreamInterrupted,
    UpstreamTimeout,
    status_error,
)
from conversations.modelservers.results import (
    ChatResult,
    EmbeddingsResult,
    ModelCard,
    OcrResult,
    StreamBatch,
    content_text,
    usage_from,
)
from conversations.modelservers.sse import SSEDecoder
from conversations.modelservers.transport import ProxiedStream, drain, proxied

logger = logging.getLogger(__name__)

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
    response_format: dict | None = None,
    tools: list[dict] | None = None,
    tool_choice: str | None = None,
) -> dict:
    """The one place a chat request body is made: from an allow-list, because the API rejects
    every field it does not know (`stream_options`, `max_completion_tokens`, `name`...)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [body_message(message) for message in messages],
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
    if response_format is not None:
        body["response_format"] = response_format
    if tools:
        body["tools"] = tools
        body["tool_choice"] = tool_choice or "auto"
    return body


def body_message(message: dict) -> dict:
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
        # How messages and logs name the server: its host and port, never a user or key.
        parts = urllib.parse.urlsplit(base_url)
        self._where = parts.hostname or "?"
        if ":" in self._where:
            self._where = f"[{self._where}]"
        if parts.port:
            self._where += f":{parts.port}"
        self._chat_url = base_url + "/chat/completions"
        # Read once, as httpx reads the environment once per client: scanning it per
        # request cost nearly as much as the rest of opening a stream (docs/performance.md).
        self._stream_proxied = proxied(self._chat_url)
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
            except ModelServerError as err:
                await self._pause_before_retry(err, attempt)
                attempt += 1
                continue
            yielded = False
            decoder = SSEDecoder()
            try:
                try:
                    while raw := await response.read():
                        batch = decoder.feed(raw)
                        if decoder.done:
                            await drain(response)
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
            except ModelServerError as err:
                if yielded:
                    raise
                await response.aclose()  # free the connection before the pause
                await self._pause_before_retry(err, attempt)
            finally:
                await response.aclose()
            attempt += 1

    async def _open_stream(
        self, payload: bytes, model: str | None
    ) -> "http_stream.StreamingResponse | ProxiedStream":
        """POST a streaming chat request and wait for the status line; a non-200 answer
        becomes its typed error."""
        if self._stream_proxied:
            return ProxiedStream(
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
                ssl_context=transport.shared_ssl_context()
                if self._chat_url.startswith("https:")
                else None,
            )
        except http_stream.ReadTimeout as exc:
            raise UpstreamTimeout(
                f"The model server at {self._where} did not answer in time."
            ) from exc
        except http_stream.ConnectFailed as exc:
            raise ConnectionFailed(
                f"Could not connect to the model server at {self._where}."
            ) from exc
        except http_stream.HTTPStreamError as exc:
            raise ConnectionFailed(
                f"The connection to the model server at {self._where} failed."
            ) from exc
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
        raise status_error(
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
            text = content_text(choice["message"].get("content"))
            finish_reason = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise MalformedStream(
                "The model server sent an answer in an unknown shape.", status=200
            ) from exc
        if finish_reason == "error":
            raise ModelError("The model stopped with an error.", status=200)
        return ChatResult(text, finish_reason, usage_from(data.get("usage")), data.get("model"))

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

    def listed_models(self) -> list[ModelCard]:
        """The models of the last listing, without asking the server (none before one)."""
        return list(self._models or ())

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
        usage = usage_from(data.get("usage"))
        return EmbeddingsResult(vectors, usage.prompt_tokens if usage else 0)

    async def _send(
        self, method: str, url: str, payload: bytes | None, headers: dict, model: str | None
    ) -> httpx.Response:
        """Send and wait for the status line; a non-200 answer becomes its typed error."""
        client = transport.pooled_client(self._base_url)
        request = client.build_request(
            method, url, content=payload, headers=headers, timeout=self._timeout
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(
                f"The model server at {self._where} did not answer in time."
            ) from exc
        except httpx.ConnectError as exc:
            raise ConnectionFailed(
                f"Could not connect to the model server at {self._where}."
            ) from exc
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                f"The connection to the model server at {self._where} failed."
            ) from exc
        if response.status_code == 200:
            return response
        try:
            content = await response.aread()
        except httpx.HTTPError:
            content = b""
        finally:
            await response.aclose()
        raise status_error(
            response.status_code,
            response.headers.get("retry-after"),
            content,
            model=model,
            api_key=self._api_key,
        )

    async def fetch_json(self, method: str, url: str, body: dict | None = None) -> Any:
        """One JSON call to another API of this server (Ollama's /api/show), with this
        client's key, pool and timeouts but no retry: its callers can do without the answer,
        and retries would hold up the model list they are building."""
        payload = orjson.dumps(body) if body is not None else None
        return await self._fetch_json(method, url, payload, None, retry=False)

    async def _fetch_json(
        self, method: str, url: str, payload: bytes | None, model: str | None, *, retry: bool = True
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
            except ModelServerError as err:
                if not retry:
                    raise
                await self._pause_before_retry(err, attempt)
                attempt += 1

    async def _pause_before_retry(self, err: ModelServerError, attempt: int) -> None:
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
            "Request to the model server at %s failed (%s, status %s); retry %d of %d in %.2f s",
            self._where,
            err.code,
            err.status,
            attempt + 1,
            self._max_retries,
            delay,
        )
        await asyncio.sleep(delay)


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
