"""The lean streaming HTTP reader: framing, timeouts, keep-alive reuse, IPv6 and TLS."""

import asyncio
import socket
import ssl
from importlib import metadata
from urllib.parse import urlsplit

import pytest
import trustme

from conversations.modelservers import http_stream

CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"X-Twice: a\r\nX-Twice: b\r\n\r\n"
    b"5\r\nhello\r\n7;ext=1\r\n, world\r\n1\r\n!\r\n0\r\nTrailer: x\r\n\r\n"
)


async def serve(handler, *, host="127.0.0.1", ssl_context=None):
    """A server on `host` running `handler(reader, writer)` per connection; https with
    `ssl_context`."""

    async def run(reader, writer):
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(run, host, 0, ssl=ssl_context)
    scheme = "https" if ssl_context else "http"
    authority = f"[{host}]" if ":" in host else host
    return server, f"{scheme}://{authority}:{server.sockets[0].getsockname()[1]}/v1/x"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


async def get(url: str, **options) -> http_stream.StreamingResponse:
    settings = {"headers": {"Accept": "*/*"}, "body": b"{}", "connect_timeout": 2.0}
    return await http_stream.open_stream(
        "POST", url, **(settings | {"read_timeout": 2.0} | options)
    )


@pytest.fixture(autouse=True)
async def _close_pool():
    yield
    await http_stream.aclose_connections()


@pytest.mark.parametrize("step", [1, 2, 3, 7, len(CHUNKED)])
async def test_a_chunked_answer_split_anywhere_reads_the_same(step):
    async def handler(reader, writer):
        await read_request(reader)
        for i in range(0, len(CHUNKED), step):
            writer.write(CHUNKED[i : i + step])
            await writer.drain()
        await reader.read()  # keep the connection open, as keep-alive servers do

    server, url = await serve(handler)
    async with server:
        response = await get(url)
        body = await response.read_all()
        response.close()

    assert response.status == 200
    assert response.headers["x-twice"] == "a, b"
    assert body == b"hello, world!"


async def test_a_finished_answer_leaves_its_connection_for_the_next_request():
    connections = []

    async def handler(reader, writer):
        connections.append(writer)
        while True:
            try:
                request = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            assert b"Host: 127.0.0.1:" in request and b"Content-Length: 2\r\n" in request
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server, url = await serve(handler)
    async with server:
        for _ in range(3):
            response = await get(url)
            assert await response.read_all() == b"ok"
            response.close()

    assert len(connections) == 1


async def test_an_idle_connection_the_server_closed_is_replaced_once():
    connections = []

    async def handler(reader, writer):
        connections.append(writer)
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # a server closing kept-alive connections between requests

    server, url = await serve(handler)
    async with server:
        for _ in range(3):
            response = await get(url)
            assert await response.read_all() == b"ok"
            response.close()

    assert len(connections) == 3


async def test_silence_beyond_the_read_timeout_is_a_read_timeout():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await reader.read()  # silent until the client gives up and closes

    server, url = await serve(handler)
    async with server:
        response = await get(url, read_timeout=0.2)
        assert await response.read() == b"abc"
        with pytest.raises(http_stream.ReadTimeout):
            await response.read()
        response.close()


async def test_a_cut_mid_body_is_a_cut_connection():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    server, url = await serve(handler)
    async with server:
        response = await get(url)
        with pytest.raises(http_stream.ConnectionCut):
            await response.read_all()
        response.close()


async def test_broken_chunk_framing_is_a_cut_connection():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
        await reader.read()

    server, url = await serve(handler)
    async with server:
        response = await get(url)
        with pytest.raises(http_stream.ConnectionCut):
            await response.read_all()
        response.close()


async def test_nothing_listening_is_a_connect_failure():
    async def handler(reader, writer):
        pass

    server, url = await serve(handler)
    server.close()
    await server.wait_closed()

    with pytest.raises(http_stream.ConnectFailed):
        await get(url)


def test_a_header_with_a_line_break_is_refused():
    with pytest.raises(ValueError, match="line break"):
        asyncio.run(get("http://127.0.0.1:9/x", headers={"X-Bad": "a\r\nInjected: 1"}))


def test_an_ipv6_host_is_bracketed_in_the_host_header():
    def head(url):
        parts = urlsplit(url)
        return http_stream._request_bytes("GET", parts, parts.hostname, {}, None)

    assert b"\r\nHost: [::1]:11434\r\n" in head("http://[::1]:11434/v1/models")
    assert b"\r\nHost: [::1]\r\n" in head("http://[::1]/v1/models")
    assert b"\r\nHost: 127.0.0.1:8000\r\n" in head("http://127.0.0.1:8000/v1/models")


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_a_server_on_ipv6_loopback_answers():
    requests = []

    async def handler(reader, writer):
        requests.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await reader.read()

    server, url = await serve(handler, host="::1")
    async with server:
        response = await get(url)
        body = await response.read_all()
        response.close()

    port = urlsplit(url).port
    assert (response.status, body) == (200, b"ok")
    assert f"\r\nHost: [::1]:{port}\r\n".encode() in requests[0]


@pytest.mark.parametrize("together", [True, False])
async def test_informational_answers_are_skipped_for_the_final_one(together):
    writes = [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]

    async def handler(reader, writer):
        await read_request(reader)
        for data in [b"".join(writes)] if together else writes:
            writer.write(data)
            await writer.drain()
        await reader.read()

    server, url = await serve(handler)
    async with server:
        response = await get(url)
        body = await response.read_all()
        response.close()

    assert (response.status, body) == (200, b"ok")
    assert "link" not in response.headers


async def test_requests_name_this_site_as_their_user_agent():
    requests = []

    async def handler(reader, writer):
        while True:
            try:
                requests.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server, url = await serve(handler)
    async with server:
        for headers in ({"Accept": "*/*"}, {"user-agent": "probe/1"}):
            response = await get(url, headers=headers)
            await response.read_all()
            response.close()

    version = metadata.version("mistral-chat")
    assert f"\r\nUser-Agent: mistral-chat/{version}\r\n".encode() in requests[0]
    assert requests[1].lower().count(b"user-agent:") == 1  # the caller's own, alone
    assert b"\r\nuser-agent: probe/1\r\n" in requests[1]


# TLS, with certificates from trustme's throwaway certificate authority


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def server_context(ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def client_context(ca):
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_an_https_answer_streams_with_a_trusted_certificate(ca):
    async def handler(reader, writer):
        await read_request(reader)
        for i in range(0, len(CHUNKED), 7):
            writer.write(CHUNKED[i : i + 7])
            await writer.drain()
        await reader.read()

    server, url = await serve(handler, ssl_context=server_context(ca))
    async with server:
        response = await get(url, ssl_context=client_context(ca))
        body = await response.read_all()
        response.close()

    assert url.startswith("https://127.0.0.1:")
    assert (response.status, body) == (200, b"hello, world!")


async def test_an_untrusted_certificate_is_a_connect_failure(ca):
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server, url = await serve(handler, ssl_context=server_context(ca))
    async with server:
        with pytest.raises(http_stream.ConnectFailed, match="certificate verify failed"):
            await get(url, ssl_context=client_context(trustme.CA()))
