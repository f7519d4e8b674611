import asyncio
import email.utils
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
import trustme

from conversations.modelservers import transport
from conversations.modelservers.errors import (
    AuthenticationError,
    ConnectionFailed,
    InvalidModel,
    InvalidRequest,
    MalformedStream,
    ModelError,
    ModelServerError,
    RateLimited,
    StreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from conversations.modelservers.mistral import MistralClient, build_chat_body
from conversations.modelservers.results import ChatResult, Usage
from conversations.modelservers.transport import aclose_clients
from tests.fake_mistral import FakeMistral, Reply, chat_request_errors

# Fixtures: to move to tests/conftest.py.


@pytest.fixture(scope="session")
def fake_mistral_server():
    with FakeMistral() as server:
        yield server


@pytest.fixture
def fake_mistral(fake_mistral_server):
    fake_mistral_server.reset()
    return fake_mistral_server


@pytest.fixture
async def make_client(fake_mistral):
    """MistralClient factory pointed at the fake, with fast backoff; closes the pools after."""

    def make(**options):
        settings = {
            "base_url": fake_mistral.base_url,
            "api_key": KEY,
            "backoff_base": 0.01,
            "backoff_max": 1.0,
            "read_timeout": 5.0,
            "max_retries": 2,
        }
        return MistralClient(**(settings | options))

    yield make
    await aclose_clients()


class RawServer:
    """An HTTP/1.1 server on 127.0.0.1 that answers each request with hand-written bytes:
    `reply(request)` returns (status, headers, writes); each write goes out as its own
    chunk of a chunked body, a moment apart, so it arrives as its own network read.
    Requests are recorded with the number of the connection they came on."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.reply = None
        self.bodies_finished = 0
        self._connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        connection = self._connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ")
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                request = {
                    "connection": connection,
                    "method": method,
                    "path": path,
                    "headers": headers,
                    "body": body,
                }
                self.requests.append(request)
                status, extra_headers, writes = self.reply(request)
                head_lines = [f"HTTP/1.1 {status} X", "Transfer-Encoding: chunked"]
                head_lines += [f"{name}: {value}" for name, value in extra_headers.items()]
                writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode())
                for data in writes:
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data) if data else b"")
                    await writer.drain()
                    await asyncio.sleep(0.001)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                self.bodies_finished += 1
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()


@pytest.fixture
async def raw_client():
    """MistralClient factory over a RawServer: `raw_client(reply, **options)` returns
    (client, server); `reply(request)` gives (status, headers, writes)."""
    servers = []

    async def make(reply, **options):
        server = RawServer()
        server.reply = reply
        base_url = await server.start()
        servers.append(server)
        settings = {
            "base_url": base_url,
            "api_key": KEY,
            "backoff_base": 0.01,
            "max_retries": 0,
            "read_timeout": 5.0,
        }
        return MistralClient(**(settings | options)), server

    yield make
    await aclose_clients()
    for server in servers:
        await server.stop()


KEY = "sk-test-DO-NOT-LEAK-7f3a9c2e"
MODEL = "mistral-small-latest"


def chat_body(text="Hello there", **options):
    return build_chat_body(
        model=MODEL, messages=[{"role": "user", "content": text}], stream=True, **options
    )


async def collect(client, body):
    """All batches of one stream, and the error that ended it (or None)."""
    batches = []
    try:
        async for batch in client.stream_chat(body):
            batches.append(batch)
    except ModelServerError as err:
        return batches, err
    return batches, None


def text_of(batches):
    return "".join(batch.text for batch in batches)


def sse(*chunks, done=True, newline=b"\n"):
    """Hand-written SSE bytes, as Mistral sends them."""
    events = [b"data: " + orjson.dumps(chunk) for chunk in chunks]
    if done:
        events.append(b"data: [DONE]")
    return b"".join(event + newline + newline for event in events)


def chunk(content=None, finish_reason=None, usage=None, role=None):
    delta = {} if content is None else {"content": content}
    if role:
        delta["role"] = role
    data = {
        "id": "f798",
        "object": "chat.completion.chunk",
        "created": 1732548656,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage:
        data["usage"] = usage
    return data


USAGE = {"prompt_tokens": 34, "total_tokens": 37, "completion_tokens": 3}
# A realistic stream: role-only first chunk, a multi-byte character and an emoji, usage and
# finish_reason in the last content chunk.
STREAM = sse(
    chunk("", role="assistant"),
    chunk("Caf"),
    chunk("é ☕"),
    chunk(" 🙂!", finish_reason="stop", usage=USAGE),
)
STREAM_TEXT = "Café ☕ 🙂!"


def streaming(reads):
    """A RawServer reply: 200 with `reads()` as separate network reads."""
    return lambda request: (200, {"Content-Type": "text/event-stream"}, reads())


# build_chat_body


def test_build_chat_body_plain_is_exact_and_valid():
    body = chat_body("Hi")

    assert body == {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    assert chat_request_errors(body) == []


def test_build_chat_body_all_sampling_params_are_valid():
    body = chat_body(temperature=0.7, top_p=0.9, max_tokens=512, random_seed=7, safe_prompt=True)

    assert body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hello there"}],
        "stream": True,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 512,
        "random_seed": 7,
        "safe_prompt": True,
    }
    assert chat_request_errors(body) == []


def test_build_chat_body_none_params_and_false_safe_prompt_are_omitted():
    body = chat_body(temperature=None, top_p=None, max_tokens=None, random_seed=None)

    assert set(body) == {"model", "messages", "stream"}


def test_build_chat_body_multimodal_content_is_valid():
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": "data:image/png;base64,iVBORw0KGgo="},
    ]
    body = build_chat_body(
        model=MODEL, messages=[{"role": "user", "content": content}], stream=True
    )

    assert body["messages"] == [{"role": "user", "content": content}]
    assert chat_request_errors(body) == []


def test_build_chat_body_history_is_valid():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Who are you?"},
    ]
    body = build_chat_body(model=MODEL, messages=messages, stream=False)

    assert body["messages"] == messages
    assert chat_request_errors(body) == []


def test_build_chat_body_tool_fields_kept_where_the_spec_allows_them():
    call = {"id": "D681PevKs", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call], "prefix": False},
        {"role": "tool", "content": "Sunny", "tool_call_id": "D681PevKs", "name": "f"},
    ]
    body = build_chat_body(model=MODEL, messages=messages, stream=True)

    assert body["messages"] == messages
    assert chat_request_errors(body) == []


def test_build_chat_body_drops_fields_the_api_rejects():
    messages = [
        {"role": "user", "content": "Hi", "name": "bob", "tool_calls": [], "id": 3},
        {"role": "assistant", "content": "Hello", "reasoning_content": "...", "name": "bot"},
        {"role": "user", "content": "Again"},
    ]
    body = build_chat_body(model=MODEL, messages=messages, stream=True)
    wire = orjson.dumps(body)

    assert body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Again"},
    ]
    for field in (b"stream_options", b"max_completion_tokens", b"name", b"reasoning_content"):
        assert field not in wire
    assert chat_request_errors(body) == []


def test_build_chat_body_unknown_role_raises_value_error():
    with pytest.raises(ValueError, match="developer"):
        build_chat_body(model=MODEL, messages=[{"role": "developer", "content": "x"}], stream=True)


def test_build_chat_body_unknown_keyword_is_impossible():
    with pytest.raises(TypeError):
        build_chat_body(model=MODEL, messages=[], stream=True, stream_options={})  # type: ignore[call-arg]


async def test_stream_chat_sends_exact_body_and_headers(raw_client):
    client, server = await raw_client(streaming(lambda: [STREAM]))
    body = chat_body(temperature=0.2)

    batches, err = await collect(client, body)

    request = server.requests[0]
    assert err is None
    assert orjson.loads(request["body"]) == body
    assert (request["method"], request["path"]) == ("POST", "/v1/chat/completions")
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["headers"]["accept"] == "text/event-stream"
    assert request["headers"]["content-type"] == "application/json"
    assert request["headers"]["accept-encoding"] == "identity"


async def test_stream_chat_without_api_key_sends_no_authorization(raw_client):
    client, server = await raw_client(streaming(lambda: [STREAM]), api_key="")

    await collect(client, chat_body())

    assert "authorization" not in server.requests[0]["headers"]


# SSE parsing (hand-written bytes over a real socket)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
async def test_stream_split_at_every_byte_yields_same_result(raw_client, newline):
    data = sse(
        chunk("", role="assistant"),
        chunk("Caf"),
        chunk("é ☕"),
        chunk(" 🙂!", finish_reason="stop", usage=USAGE),
        newline=newline,
    )
    split = {"at": 0}
    client, server = await raw_client(streaming(lambda: [data[: split["at"]], data[split["at"] :]]))
    assert "☕".encode() in data  # a three-byte character, split mid-way on some passes

    for at in range(1, len(data)):
        split["at"] = at
        batches, err = await collect(client, chat_body())

        assert err is None
        assert text_of(batches) == STREAM_TEXT
        assert batches[-1].finish_reason == "stop"
        assert batches[-1].usage == Usage(34, 3, 37)
    # Every body was read to its end, so one connection served every request.
    assert {request["connection"] for request in server.requests} == {1}


async def test_stream_one_byte_per_read_yields_same_text(raw_client):
    client, _ = await raw_client(streaming(lambda: [STREAM[i : i + 1] for i in range(len(STREAM))]))

    batches, err = await collect(client, chat_body())

    assert err is None
    assert text_of(batches) == STREAM_TEXT
    assert all(batch.text or batch.finish_reason for batch in batches)


async def test_stream_many_tokens_in_one_read_give_one_batch(raw_client):
    tokens = [f" t{i}" for i in range(40)]
    data = sse(
        chunk("", role="assistant"),
        *(chunk(token) for token in tokens[:-1]),
        chunk(tokens[-1], finish_reason="length", usage=USAGE),
    )
    client, _ = await raw_client(streaming(lambda: [data]))

    batches, err = await collect(client, chat_body())

    assert err is None
    assert len(batches) == 1
    assert batches[0].text == "".join(tokens)
    assert batches[0].finish_reason == "length"
    assert batches[0].usage == Usage(34, 3, 37)
    assert batches[0].model == MODEL


async def test_stream_role_only_first_chunk_gives_no_batch(raw_client):
    data = sse(chunk("Hi", finish_reason="stop", usage=USAGE))
    role = sse(chunk("", role="assistant"), done=False)
    client, _ = await raw_client(streaming(lambda: [role, data]))

    batches, err = await collect(client, chat_body())

    assert err is None
    assert [batch.text for batch in batches] == ["Hi"]


async def test_stream_usage_and_finish_reason_without_text_are_a_batch(raw_client):
    data = sse(chunk("Hi"), done=False) + sse(chunk("", finish_reason="stop", usage=USAGE))
    client, _ = await raw_client(streaming(lambda: [data[:40], data[40:]]))

    batches, err = await collect(client, chat_body())

    assert err is None
    assert text_of(batches) == "Hi"
    assert batches[-1].finish_reason == "stop"
    assert batches[-1].usage == Usage(34, 3, 37)


async def test_stream_comments_and_event_fields_are_ignored(raw_client):
    data = (
        b": keep-alive\n\n"
        b"event: message\nid: 1\ndata: " + orjson.dumps(chunk("Hi")) + b"\n\n"
        b"retry: 100\n\n" + sse(chunk(" there", finish_reason="stop"))
    )
    client, _ = await raw_client(streaming(lambda: [data]))

    batches, err = await collect(client, chat_body())

    assert err is None
    assert text_of(batches) == "Hi there"


async def test_stream_list_content_takes_text_chunks_only(raw_client):
    thinking = {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}
    data = sse(
        chunk([thinking]),
        chunk([{"type": "text", "text": "Answer"}], finish_reason="stop"),
    )
    client, _ = await raw_client(streaming(lambda: [data]))

    batches, err = await collect(client, chat_body())

    assert err is None
    assert text_of(batches) == "Answer"


async def test_stream_done_ends_stream_and_ignores_the_rest(raw_client):
    data = sse(chunk("Hi", finish_reason="stop")) + sse(chunk(" never"), done=False)
    client, server = await raw_client(streaming(lambda: [data, b"data: {garbage\n\n"]))

    batches, err = await collect(client, chat_body())
    again, again_err = await collect(client, chat_body())

    assert (err, again_err) == (None, None)
    assert text_of(batches) == text_of(again) == "Hi"
    # The rest was read (and ignored), so the connection was reused for the second request.
    assert [request["connection"] for request in server.requests] == [1, 1]


async def test_stream_non_chunk_json_is_malformed(raw_client):
    data = sse(chunk("Hi"), done=False) + b'data: {"unexpected": true}\n\n'
    client, _ = await raw_client(streaming(lambda: [data]))

    batches, err = await collect(client, chat_body())

    assert text_of(batches) == "Hi"
    assert isinstance(err, MalformedStream)
    assert err.code == "malformed_stream"


async def test_stream_retry_after_http_date_beyond_backoff_max_raises_at_once(raw_client):
    when = datetime.now(UTC) + timedelta(hours=1)

    def reply(request):
        headers = {
            "Retry-After": email.utils.format_datetime(when, usegmt=True),
            "Content-Type": "application/json",
        }
        return 429, headers, [orjson.dumps({"message": "Requests rate limit exceeded"})]

    client, server = await raw_client(reply, max_retries=3, backoff_max=20.0)

    batches, err = await collect(client, chat_body())

    assert isinstance(err, RateLimited)
    assert 3500 < err.retry_after <= 3600
    assert len(server.requests) == 1


async def test_stream_compressed_answer_is_refused_plainly(raw_client):
    client, _ = await raw_client(
        lambda request: (200, {"Content-Encoding": "gzip"}, [b"\x1f\x8b\x08\x00"])
    )

    batches, err = await collect(client, chat_body())

    assert batches == []
    assert isinstance(err, MalformedStream)
    assert "compressed" in str(err)


# Against the fake server, over a real socket


async def test_stream_normal_answer(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.tokens(["Hello", ",", " world", "!"], usage=(11, 4)))

    batches, err = await collect(make_client(), chat_body())

    assert err is None
    assert text_of(batches) == "Hello, world!"
    assert batches[-1].finish_reason == "stop"
    assert batches[-1].usage == Usage(11, 4, 15)
    assert batches[-1].model == MODEL
    assert all(batch.text for batch in batches)
    request = fake_mistral.requests[0]
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "text/event-stream"


async def test_stream_default_reply_echoes_the_question(fake_mistral, make_client):
    batches, err = await collect(make_client(), chat_body("ping pong"))

    assert err is None
    assert text_of(batches) == "Hello! You said: ping pong"
    assert len(batches) > 1 or len(batches[0].text) > 0


async def test_stream_burst_gives_few_batches(fake_mistral, make_client):
    tokens = [f" w{i}" for i in range(60)]
    fake_mistral.enqueue(Reply.burst(tokens, per_event=10, usage=(5, 60)))

    batches, err = await collect(make_client(), chat_body())

    assert err is None
    assert text_of(batches) == "".join(tokens)
    assert len(batches) < len(tokens) // 10
    assert batches[-1].usage == Usage(5, 60, 65)


async def test_stream_any_finish_reason_is_accepted(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.tokens(["Long"], finish_reason="model_length"))

    batches, err = await collect(make_client(), chat_body())

    assert err is None
    assert batches[-1].finish_reason == "model_length"


async def test_stream_connection_reused_after_done(fake_mistral, make_client):
    client = make_client()

    for _ in range(3):
        batches, err = await collect(client, chat_body())
        assert err is None

    assert {request.connection for request in fake_mistral.requests} == {
        fake_mistral.requests[0].connection
    }


@pytest.mark.parametrize(
    ("reply", "error_type", "code"),
    [
        (Reply.cut, StreamInterrupted, "interrupted"),
        (Reply.no_done, StreamInterrupted, "interrupted"),
        (Reply.model_error, ModelError, "model_error"),
        (Reply.malformed, MalformedStream, "malformed_stream"),
    ],
)
async def test_stream_fault_after_tokens_keeps_text_and_raises(
    fake_mistral, make_client, reply, error_type, code
):
    tokens = ["The", " answer", " is", " 4", "2"]
    fake_mistral.enqueue(reply(tokens))

    batches, err = await collect(make_client(), chat_body())

    assert type(err) is error_type
    assert err.code == code
    assert text_of(batches) == "".join(tokens)
    assert len(fake_mistral.requests) == 1


async def test_stream_cut_before_first_token_is_interrupted(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.cut([]))

    batches, err = await collect(make_client(), chat_body())

    assert isinstance(err, StreamInterrupted)
    assert batches == []


async def test_stream_rate_limited_then_success_is_retried(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.rate_limited(retry_after=0.2))
    fake_mistral.enqueue(Reply.tokens(["OK"]))
    started = time.monotonic()

    batches, err = await collect(make_client(), chat_body())

    assert err is None
    assert text_of(batches) == "OK"
    assert len(fake_mistral.requests) == 2
    assert time.monotonic() - started >= 0.2  # Retry-After is the minimum wait


async def test_stream_server_unavailable_then_success_is_retried(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.server_error(503))
    fake_mistral.enqueue(Reply.tokens(["OK"]))

    batches, err = await collect(make_client(), chat_body())

    assert err is None
    assert text_of(batches) == "OK"
    assert len(fake_mistral.requests) == 2


async def test_stream_server_errors_exhaust_retries(fake_mistral, make_client):
    for status in (500, 502, 503):
        fake_mistral.enqueue(Reply.server_error(status))

    batches, err = await collect(make_client(max_retries=2), chat_body())

    assert isinstance(err, UpstreamUnavailable)
    assert err.code == "upstream_unavailable"
    assert err.status == 503
    assert err.retryable
    assert len(fake_mistral.requests) == 3


async def test_stream_retries_are_logged_without_the_key(fake_mistral, make_client, caplog):
    fake_mistral.enqueue(Reply.server_error(502))
    caplog.set_level(logging.INFO, logger="conversations.modelservers.mistral")

    batches, err = await collect(make_client(), chat_body())

    assert err is None
    assert "retry 1 of 2" in caplog.text
    assert "502" in caplog.text
    assert KEY not in caplog.text


async def test_stream_unauthorized_is_not_retried(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.unauthorized())

    batches, err = await collect(make_client(), chat_body())

    assert isinstance(err, AuthenticationError)
    assert err.code == "auth"
    assert err.status == 401
    assert str(err) == "The model server rejected the API key (401)."
    assert len(fake_mistral.requests) == 1


async def test_stream_forbidden_is_authentication_error(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.error(403, {"message": "Forbidden"}))

    batches, err = await collect(make_client(), chat_body())

    assert isinstance(err, AuthenticationError)
    assert "(403)" in str(err)


async def test_stream_wrong_key_is_rejected_by_the_server(fake_mistral, make_client):
    fake_mistral.api_key = "the-right-key"

    batches, err = await collect(make_client(api_key="a-wrong-key"), chat_body())
    ok_batches, ok_err = await collect(make_client(api_key="the-right-key"), chat_body())

    assert isinstance(err, AuthenticationError)
    assert ok_err is None
    assert text_of(ok_batches).startswith("Hello!")


async def test_stream_invalid_model_names_the_model(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.invalid_model("pixtral-large-latest"))
    body = build_chat_body(
        model="pixtral-large-latest", messages=[{"role": "user", "content": "Hi"}], stream=True
    )

    batches, err = await collect(make_client(), body)

    assert isinstance(err, InvalidModel)
    assert err.code == "invalid_model"
    assert err.status == 400
    assert "pixtral-large-latest" in str(err)
    assert len(fake_mistral.requests) == 1


async def test_stream_not_found_is_invalid_model(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.error(404, {"detail": "Not Found"}))

    batches, err = await collect(make_client(), chat_body())

    assert isinstance(err, InvalidModel)
    assert err.status == 404


async def test_stream_unknown_field_is_invalid_request_with_mistral_message(
    fake_mistral, make_client
):
    body = chat_body() | {"stream_options": {"include_usage": True}}

    batches, err = await collect(make_client(), body)

    assert isinstance(err, InvalidRequest)
    assert err.code == "invalid_request"
    assert err.status == 422
    assert "Extra inputs are not permitted" in str(err)
    assert "stream_options" in str(err)
    assert len(fake_mistral.requests) == 1


async def test_stream_enveloped_422_message_is_read(fake_mistral, make_client):
    detail = [{"type": "missing", "loc": ["body", "model"], "msg": "Field required"}]
    body = {"object": "error", "message": {"detail": detail}, "type": "invalid_request_error"}
    fake_mistral.enqueue(Reply.error(422, body))

    batches, err = await collect(make_client(), chat_body())

    assert isinstance(err, InvalidRequest)
    assert "Field required at body.model" in str(err)


async def test_stream_bad_request_keeps_mistral_message(fake_mistral, make_client):
    message = "Tool call id was abc but must be a-z, A-Z, 0-9, with a length of 9."
    body = {"object": "error", "message": message, "type": "invalid_function_call", "code": "3280"}
    fake_mistral.enqueue(Reply.error(400, body))

    batches, err = await collect(make_client(), chat_body())

    assert isinstance(err, InvalidRequest)
    assert message in str(err)


async def test_stream_retry_after_beyond_backoff_max_raises_at_once(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.rate_limited(retry_after=120))

    batches, err = await collect(make_client(backoff_max=5.0, max_retries=3), chat_body())

    assert isinstance(err, RateLimited)
    assert err.code == "rate_limited"
    assert err.retry_after == 120
    assert len(fake_mistral.requests) == 1


async def test_stream_rate_limited_exhausts_retries(fake_mistral, make_client):
    for _ in range(3):
        fake_mistral.enqueue(Reply.rate_limited(retry_after=0))

    batches, err = await collect(make_client(max_retries=2), chat_body())

    assert isinstance(err, RateLimited)
    assert len(fake_mistral.requests) == 3


async def test_stream_stall_before_first_token_times_out_after_retries(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.stall(before_first_token=True))
    fake_mistral.enqueue(Reply.stall(before_first_token=True))

    batches, err = await collect(make_client(read_timeout=0.2, max_retries=1), chat_body())

    assert isinstance(err, UpstreamTimeout)
    assert err.code == "timeout"
    assert batches == []
    assert len(fake_mistral.requests) == 2


async def test_stream_stall_before_first_token_then_success_is_retried(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.stall(before_first_token=True))
    fake_mistral.enqueue(Reply.tokens(["Late"]))

    batches, err = await collect(make_client(read_timeout=0.2, max_retries=1), chat_body())

    assert err is None
    assert text_of(batches) == "Late"


async def test_stream_stall_after_tokens_raises_timeout_without_retry(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.stall(before_first_token=False, tokens=["Partial", " answer"]))

    batches, err = await collect(make_client(read_timeout=0.2, max_retries=3), chat_body())

    assert isinstance(err, UpstreamTimeout)
    assert text_of(batches) == "Partial answer"
    assert len(fake_mistral.requests) == 1


async def test_stream_gate_holds_the_answer_after_its_first_token(fake_mistral, make_client):
    gate = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["One", " two", " three"], gate=gate))
    stream = make_client().stream_chat(chat_body())

    first = await anext(stream)
    pending = asyncio.ensure_future(anext(stream))
    done, _ = await asyncio.wait({pending}, timeout=0.1)
    held = not done
    gate.set()
    rest = [await pending] + [batch async for batch in stream]

    assert first.text == "One"
    assert held
    assert text_of(rest) == " two three"


async def test_stream_connection_refused_is_connection_failed(make_client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)

    batches, err = await collect(client, chat_body())

    assert isinstance(err, ConnectionFailed)
    assert err.code == "connection_failed"
    assert err.retryable


async def test_error_messages_never_contain_the_api_key(fake_mistral, make_client):
    replies = [
        Reply.error(400, {"message": f"Bad header Authorization: Bearer {KEY}"}),
        Reply.error(401, {"detail": f"Unknown key {KEY}"}),
        Reply.error(403, {"message": KEY}),
        Reply.error(404, {"detail": f"no model for {KEY}"}),
        Reply.error(422, {"detail": [{"loc": ["body", KEY], "msg": f"bad {KEY}", "type": "x"}]}),
        Reply.error(429, {"message": KEY}, {"Retry-After": "999"}),
        Reply.error(500, f"<html>{KEY}</html>"),
        Reply.error(400, "x" * 285 + KEY),  # the cut at ~300 characters falls inside the key
    ]
    client = make_client(max_retries=0)

    for reply in replies:
        fake_mistral.enqueue(reply)
        batches, err = await collect(client, chat_body())

        assert isinstance(err, ModelServerError)
        for text in (str(err), err.message, repr(err)):
            assert KEY[:12] not in text


async def test_complete_chat_returns_result(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.tokens(["Short", " title"], usage=(9, 2)))
    body = build_chat_body(
        model=MODEL, messages=[{"role": "user", "content": "Name this chat"}], stream=False
    )

    result = await make_client().complete_chat(body)

    assert result == ChatResult("Short title", "stop", Usage(9, 2, 11), MODEL)
    request = fake_mistral.requests[0]
    assert request.json == body
    assert request.headers["accept"] == "application/json"


async def test_complete_chat_retries_server_error(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.server_error(500))
    body = build_chat_body(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=False)

    result = await make_client().complete_chat(body)

    assert result.text == "Hello! You said: Hi"
    assert len(fake_mistral.requests) == 2


async def test_complete_chat_model_error_raises(fake_mistral, make_client):
    fake_mistral.enqueue(Reply.model_error(["x"]))
    body = build_chat_body(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=False)

    with pytest.raises(ModelError):
        await make_client().complete_chat(body)


async def test_complete_chat_rejects_a_stream_body(make_client):
    with pytest.raises(ValueError, match="stream=False"):
        await make_client().complete_chat(chat_body())


async def test_list_models_returns_cards_with_capabilities(fake_mistral, make_client):
    cards = {card.id: card for card in await make_client().list_models()}

    assert cards["mistral-small-latest"].vision
    assert cards["mistral-small-latest"].function_calling
    assert cards["mistral-small-latest"].max_context_length == 262144
    assert cards["mistral-medium-latest"].vision
    assert "mistral-medium-3" in cards["mistral-medium-latest"].aliases
    assert not cards["codestral-latest"].vision
    assert not cards["mistral-embed"].completion_chat
    assert cards["mistral-large-latest"].raw["type"] == "base"
    assert fake_mistral.requests[0].method == "GET"
    assert fake_mistral.requests[0].path == "/v1/models"


async def test_list_models_is_cached_until_refresh(fake_mistral, make_client):
    client = make_client()

    first = await client.list_models()
    fake_mistral.models = fake_mistral.models[:1]
    cached = await client.list_models()
    requests_after_cache = len(fake_mistral.requests)
    refreshed = await client.list_models(refresh=True)

    assert requests_after_cache == 1
    assert cached == first
    assert [card.id for card in refreshed] == ["mistral-small-latest"]
    assert len(fake_mistral.requests) == 2


async def test_list_models_refetches_after_ttl(fake_mistral, make_client):
    client = make_client(models_ttl=0.0)

    await client.list_models()
    await client.list_models()

    assert len(fake_mistral.requests) == 2


async def test_aclose_clients_then_new_requests_work(fake_mistral, make_client):
    client = make_client()
    await collect(client, chat_body())

    await aclose_clients()
    batches, err = await collect(client, chat_body())

    assert err is None
    assert text_of(batches).startswith("Hello!")


# The fake server itself is as strict as the real API


async def test_fake_rejects_unknown_field_with_mistral_422(fake_mistral):
    fake_mistral.enqueue(Reply.tokens(["kept for the next valid request"]))
    body = chat_body() | {"stream_options": {"include_usage": True}}

    async with httpx.AsyncClient() as http:
        response = await http.post(f"{fake_mistral.base_url}/chat/completions", json=body)
        valid = await http.post(
            f"{fake_mistral.base_url}/chat/completions", json=chat_body() | {"stream": False}
        )

    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "extra_forbidden",
                "loc": ["body", "stream_options"],
                "msg": "Extra inputs are not permitted",
                "input": {"include_usage": True},
            }
        ]
    }
    assert valid.json()["choices"][0]["message"]["content"] == "kept for the next valid request"


async def test_fake_rejects_name_on_user_message(fake_mistral):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi", "name": "bob"}]}

    async with httpx.AsyncClient() as http:
        response = await http.post(f"{fake_mistral.base_url}/chat/completions", json=body)

    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "type": "extra_forbidden",
            "loc": ["body", "messages", 0, "user", "name"],
            "msg": "Extra inputs are not permitted",
            "input": "bob",
        }
    ]


async def test_fake_reports_missing_and_out_of_range_fields(fake_mistral):
    body = {"messages": [{"role": "user", "content": "Hi"}], "temperature": 3}

    async with httpx.AsyncClient() as http:
        response = await http.post(f"{fake_mistral.base_url}/chat/completions", json=body)

    details = response.json()["detail"]
    assert response.status_code == 422
    assert {
        "type": "missing",
        "loc": ["body", "model"],
        "msg": "Field required",
        "input": body,
    } in (details)
    assert any(item["loc"] == ["body", "temperature"] for item in details)


async def test_fake_unknown_path_is_not_found(fake_mistral):
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{fake_mistral.base_url}/completions", json={})

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


class ForwardingProxy:
    """An HTTP proxy on 127.0.0.1 for plain-http targets: it records each request line
    (absolute-form, as clients send to a proxy) and pipes the connection to the target."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader, writer) -> None:
        upstream_writer = None
        try:
            line = (await reader.readline()).decode("latin-1")
            method, target, version = line.split()
            self.request_lines.append(f"{method} {target}")
            url = urllib.parse.urlsplit(target)
            upstream_reader, upstream_writer = await asyncio.open_connection(url.hostname, url.port)
            upstream_writer.write(f"{method} {url.path} {version}\r\n".encode("latin-1"))

            async def pipe(source, sink):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
                sink.close()

            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            if upstream_writer is not None:
                upstream_writer.close()


async def test_stream_goes_through_the_proxy_the_environment_names(
    fake_mistral, make_client, monkeypatch
):
    proxy = ForwardingProxy()
    proxy_url = await proxy.start()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("http_proxy", proxy_url)
    fake_mistral.enqueue(Reply.tokens(["through ", "the proxy"]))
    try:
        batches, err = await collect(make_client(), chat_body())
    finally:
        await proxy.stop()

    assert err is None
    assert text_of(batches) == "through the proxy"
    assert proxy.request_lines == [f"POST {fake_mistral.base_url}/chat/completions"]


async def test_stream_over_https_with_a_trusted_certificate(monkeypatch):
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    monkeypatch.setattr(transport, "shared_ssl_context", lambda: client_context)
    with FakeMistral(ssl_context=server_context) as fake:
        fake.enqueue(Reply.tokens(["Over", " TLS"]))
        client = MistralClient(base_url=fake.base_url, api_key=KEY, max_retries=0)
        try:
            batches, err = await collect(client, chat_body())
            models = await client.list_models()
        finally:
            await aclose_clients()

    assert fake.base_url.startswith("https://127.0.0.1:")
    assert err is None
    assert text_of(batches) == "Over TLS"
    assert MODEL in {card.id for card in models}
