"""The benchmark harness's own correctness (no timing is asserted): websocket framing, the
fake model server read by the app's own client, the load generator's accounting, and the
statistics helpers. Fast, no sleeps."""

import asyncio
import base64
import math
import os
import random

import numpy as np
import pytest

from bench import wsclient
from bench.fake_upstream import (
    TITLE,
    Shape,
    answer_text,
    answer_tokens,
    parse_model,
    serve,
    shape_for_model,
)
from bench.loadgen import AppRun, DirectRun, Expected, TabAnswer
from bench.stats import percentile, quantile_percentile, quantiles, summary
from conversations.modelservers.mistral import MistralClient, build_chat_body
from conversations.modelservers.transport import aclose_clients

# Websocket framing


def test_masked_frame_matches_rfc6455_example():
    frame = wsclient.encode_frame(wsclient.OP_TEXT, b"Hello", mask_key=bytes.fromhex("37fa213d"))
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


def test_unmasked_frame_matches_rfc6455_example():
    assert wsclient.encode_frame(wsclient.OP_TEXT, b"Hello", mask=False) == bytes.fromhex(
        "810548656c6c6f"
    )


def test_frame_of_256_bytes_uses_16_bit_length():
    frame = wsclient.encode_frame(wsclient.OP_BINARY, bytes(256), mask=False)
    assert frame[:4] == bytes.fromhex("827e0100")
    assert len(frame) == 4 + 256


def test_frame_of_64_kib_uses_64_bit_length():
    frame = wsclient.encode_frame(wsclient.OP_BINARY, bytes(65536), mask=False)
    assert frame[:10] == bytes.fromhex("827f0000000000010000")
    assert len(frame) == 10 + 65536


def test_accept_key_matches_rfc6455_example():
    assert wsclient.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("mask", [True, False])
def test_parser_round_trips_every_length_form_fed_in_pieces(mask):
    rng = random.Random(7)
    payloads = [os.urandom(n) for n in (0, 1, 125, 126, 127, 65535, 65536, 70001)]
    stream = b"".join(wsclient.encode_frame(wsclient.OP_BINARY, p, mask=mask) for p in payloads)
    parser = wsclient.FrameParser()
    frames = []
    pos = 0
    while pos < len(stream):
        step = rng.choice((1, 2, 3, 9, 100, 5000))
        frames += parser.feed(stream[pos : pos + step])
        pos += step
    assert [(fin, op) for fin, op, _ in frames] == [(True, wsclient.OP_BINARY)] * len(payloads)
    assert [payload for _, _, payload in frames] == payloads


def test_mask_is_its_own_inverse():
    data = os.urandom(1001)
    key = os.urandom(4)
    assert wsclient.apply_mask(wsclient.apply_mask(data, key), key) == data


async def _tiny_server(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _accept(reader, writer, seen: dict) -> wsclient.FrameParser:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
    seen.update(headers)
    key = headers["Sec-WebSocket-Key"]
    assert len(base64.b64decode(key)) == 16
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {wsclient.accept_key(key)}\r\n\r\n".encode()
    )
    return wsclient.FrameParser()


async def test_client_round_trips_text_through_a_tiny_server_and_closes():
    seen: dict = {}
    wire = bytearray()

    async def echo(reader, writer):
        parser = await _accept(reader, writer, seen)
        writer.write(wsclient.encode_frame(wsclient.OP_PING, b"hi", mask=False))
        while data := await reader.read(65536):
            wire.extend(data)
            for _, opcode, payload in parser.feed(data):
                if opcode == wsclient.OP_CLOSE:
                    writer.write(wsclient.encode_frame(wsclient.OP_CLOSE, payload, mask=False))
                    await writer.drain()
                    writer.close()
                    return
                if opcode == wsclient.OP_PONG:
                    seen["pong"] = payload
                    continue
                writer.write(wsclient.encode_frame(opcode, payload, mask=False))

    server, port = await _tiny_server(echo)
    async with server:
        ws = await wsclient.connect(
            "127.0.0.1", port, "/ws/chat/", origin="http://127.0.0.1", cookie="sessionid=abc"
        )
        texts = ["Hello", "é" * 200, "x" * 70000]
        for text in texts:
            ws.send_text(text)
            opcode, received, _ = await ws.recv()
            assert (opcode, received) == (wsclient.OP_TEXT, text)
        assert await ws.close(1000) == 1000
    assert seen["Origin"] == "http://127.0.0.1"
    assert seen["Cookie"] == "sessionid=abc"
    assert seen["pong"] == b"hi"
    # Masked on the wire: the plain text never appears in what the server read.
    assert b"Hello" not in wire
    assert b"x" * 64 not in wire


async def test_client_reports_the_servers_close_code():
    async def refuse(reader, writer):
        await _accept(reader, writer, {})
        writer.write(
            wsclient.encode_frame(wsclient.OP_CLOSE, (4401).to_bytes(2, "big"), mask=False)
        )
        await reader.read(100)  # the client's answering close frame
        writer.close()

    server, port = await _tiny_server(refuse)
    async with server:
        ws = await wsclient.connect("127.0.0.1", port, "/")
        with pytest.raises(wsclient.ConnectionClosed) as info:
            await ws.recv()
    assert info.value.code == 4401


async def test_refused_handshake_raises():
    async def forbid(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server, port = await _tiny_server(forbid)
    async with server:
        with pytest.raises(wsclient.HandshakeError, match="403"):
            await wsclient.connect("127.0.0.1", port, "/")


# The fake model server, read by the app's own client


@pytest.fixture
async def upstream():
    server, state = await serve(port=0)
    try:
        yield server.sockets[0].getsockname()[1], state
    finally:
        server.close()
        await server.wait_closed()
        await aclose_clients()


def _client(port: int) -> MistralClient:
    return MistralClient(base_url=f"http://127.0.0.1:{port}/v1", api_key="bench", max_retries=0)


@pytest.mark.parametrize("model", ["bench-57x0ms", "bench-57x0ms-b10", "bench-57x0ms-b57"])
async def test_fake_stream_parses_with_the_apps_client(upstream, model):
    port, state = upstream
    body = build_chat_body(model=model, messages=[{"role": "user", "content": "Hi"}], stream=True)
    batches = [batch async for batch in _client(port).stream_chat(body)]
    assert "".join(b.text for b in batches) == answer_text(57)
    assert batches[-1].finish_reason == "stop"
    assert batches[-1].usage.completion_tokens == 57
    assert {b.model for b in batches} == {model}
    assert state.counters.tokens == 57
    assert state.counters.completed == 1


async def test_fake_answers_a_title_request_without_streaming(upstream):
    port, _ = upstream
    body = build_chat_body(
        model="ministral-8b-latest", messages=[{"role": "user", "content": "x"}], stream=False
    )
    result = await _client(port).complete_chat(body)
    assert result.text == TITLE
    assert result.finish_reason == "stop"


async def test_fake_lists_models(upstream):
    port, _ = upstream
    cards = await _client(port).list_models()
    assert "bench-200x10ms" in {card.id for card in cards}
    assert all(card.completion_chat for card in cards)


def test_model_names_round_trip_to_shapes():
    shape = Shape(tokens=300, interval=0.0125, per_write=4, first_delay=0.2)
    assert shape.model == "bench-300x12.5ms-b4-f200ms"
    assert shape_for_model(shape.model, Shape()) == shape
    assert shape_for_model("mistral-small-latest", Shape(tokens=9)) == Shape(tokens=9)
    assert parse_model("mistral-small-latest") is None


def test_answer_tokens_are_non_empty_and_fixed_per_length():
    tokens = answer_tokens(500)
    assert len(tokens) == 500
    assert all(tokens)
    assert answer_tokens(500) == tokens
    assert "\n\n" in "".join(tokens)


# The load generator's accounting


def test_expected_counts_whole_tokens_up_to_the_first_wrong_character():
    expected = Expected("bench-10x1ms")
    tokens = expected.tokens
    assert expected.tokens_in(expected.text) == 10
    assert expected.tokens_in("".join(tokens[:3])) == 3
    assert expected.tokens_in("".join(tokens[:3]) + tokens[3][:-1]) == 3
    assert expected.tokens_in("".join(tokens[:2]) + "#" + "".join(tokens[3:])) == 2


async def test_direct_client_reads_every_token_of_every_round(upstream):
    port, state = upstream
    spec = {"host": "127.0.0.1", "upstream_port": port}
    phase = {"model": "bench-40x0ms-b3", "clients": [{}] * 3, "rounds": 2}
    run = DirectRun(spec, phase)
    await run.open_all()
    try:
        await run.run()
    finally:
        await run.close_all()
    m = run.measure
    assert (m.answers, m.complete, m.errors) == (6, 6, {})
    assert m.tokens_delivered == m.tokens_expected == 240 == state.counters.tokens
    assert state.counters.connections == 3  # each client's rounds on one keep-alive socket
    assert len(m.ttft) == 6
    assert m.chars == 6 * len(answer_text(40))


def _app_run() -> AppRun:
    spec = {"host": "127.0.0.1", "port": 1}
    phase = {"model": "bench-4x1ms", "clients": [{"cookie": "c", "conversation": 5}], "tabs": 2}
    return AppRun(spec, phase)


def _feed(tab, frames: list[dict], start: float = 1.0) -> None:
    import orjson

    for i, frame in enumerate(frames):
        tab.on_message(wsclient.OP_TEXT, orjson.dumps(frame).decode(), start + i * 0.01)


def _frames(text_parts: list[str], seqs: list[int], final_text: str) -> list[dict]:
    frames: list[dict] = [
        {"type": "message", "message": {"id": 10, "role": "user", "status": "complete"}},
        {"type": "message", "message": {"id": 11, "role": "assistant", "status": "pending"}},
    ]
    for seq, text in zip(seqs, text_parts, strict=True):
        frames.append({"type": "delta", "conversation": 5, "message": 11, "seq": seq, "text": text})
    final = {"id": 11, "role": "assistant", "status": "complete", "text": final_text}
    frames.append({"type": "message", "message": final | {"duration_ms": 30}})
    return frames


def test_app_tabs_account_for_frames_gaps_and_text():
    from bench.loadgen import TabAnswer

    run = _app_run()
    client = run.clients[0]
    expected = run.expected
    parts = ["".join(expected.tokens[:2]), "".join(expected.tokens[2:])]
    client.pending = 2
    for tab in client.tabs:
        tab.answer = TabAnswer(sent_at=0.5, sender=tab.sender)
    _feed(client.tabs[0], _frames(parts, [1, 2], expected.text))
    _feed(client.tabs[1], _frames(parts[:1] + ["?"], [1, 3], expected.text))  # a lost frame
    for tab in client.tabs:
        run.record(tab)
    m = run.measure
    assert m.answers == 2
    assert m.complete == 1
    assert m.errors == {"text_mismatch": 1}
    assert m.seq_gaps == 1
    assert m.tokens_delivered == 4 + 2
    assert m.ttft == [pytest.approx(1.02 - 0.5)]
    assert m.ttft_other_tabs == [pytest.approx(1.02 - 0.5)]
    assert m.gaps == [pytest.approx(0.01), pytest.approx(0.01)]
    assert m.records == [
        {
            "question": 10,
            "answer": 11,
            "total_ms": pytest.approx(540),
            "duration_ms": 30,
            "ok": True,
        }
    ]


# Statistics


def test_percentile_matches_numpy_linear_method():
    rng = random.Random(3)
    values = [rng.expovariate(1) for _ in range(1001)]
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_percentile_of_small_samples():
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([7], 99) == 7
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summary_of_samples_and_of_none():
    s = summary([1, 2, 3, 4, 5])
    assert (s["n"], s["mean"], s["min"], s["p50"], s["max"]) == (5, 3, 1, 3, 5)
    assert s["p90"] == pytest.approx(4.6)
    empty = summary([])
    assert empty["n"] == 0 and math.isnan(empty["p99"])


def test_quantiles_read_back_as_percentiles_on_their_grid():
    values = list(range(1000))
    qs = quantiles(values, 101)
    assert len(qs) == 101
    assert qs[0] == 0 and qs[-1] == 999
    for q in (0, 50, 90, 99, 100):
        assert quantile_percentile(qs, q) == pytest.approx(percentile(values, q))
    assert quantiles([], 11) == []


def test_a_socket_closed_mid_answer_ends_that_tab_with_an_error():
    from types import SimpleNamespace

    from bench.loadgen import TabAnswer

    run = _app_run()
    client = run.clients[0]
    client.pending = 2
    closed, open_tab = client.tabs
    for tab in client.tabs:
        tab.answer = TabAnswer(sent_at=0.0, sender=tab.sender)
    closed.ws = SimpleNamespace(close_code=1011, transport=None)
    closed.on_closed(None)
    assert client.pending == 1
    run.record(closed)
    assert run.measure.errors == {"socket_closed_1011": 1}
    assert open_tab.answer.error == ""


# The baseline relays of (a)


@pytest.mark.parametrize("relay", ["lean", "floor"])
async def test_baseline_relay_speaks_the_protocol_the_load_generator_reads(
    upstream, monkeypatch, relay
):
    from channels.testing import WebsocketCommunicator

    from bench import floor_relay, lean_relay

    port, state = upstream
    monkeypatch.setattr(lean_relay, "UPSTREAM", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(lean_relay, "MODEL", "bench-30x0ms-b4")
    monkeypatch.setattr(lean_relay, "_pool", [])
    app = {"lean": lean_relay.application, "floor": floor_relay.application}[relay]
    tab = _app_run().clients[0].tabs[0]
    communicator = WebsocketCommunicator(app, "/ws/chat/")
    connected, _ = await communicator.connect()
    assert connected
    try:
        for round_no in range(2):  # the second on a kept-alive connection
            await communicator.send_json_to({"type": "subscribe", "conversation": 1})
            assert await communicator.receive_json_from() == {"type": "subscribed"}
            tab.answer = TabAnswer(sent_at=0.0, sender=True)
            tab.client.pending = 1
            await communicator.send_json_to({"type": "send", "conversation": 1, "text": "Hi"})
            while tab.answer.end is None:
                tab.on_message(1, await communicator.receive_from(), 1.0 + round_no)
            answer = tab.answer
            assert (answer.status, answer.error) == ("complete", "")
            assert "".join(answer.parts) == answer.final_text == answer_text(30)
            # A delta per upstream read (8 writes of 4 tokens; reads may join writes).
            assert answer.seq == answer.frames
            assert 1 <= answer.frames <= 8
            assert answer.question_id is not None
            assert answer.answer_id not in (None, answer.question_id)
    finally:
        await communicator.disconnect()
        await lean_relay.close_clients()
    assert state.counters.completed == 2
    assert state.counters.connections == (2 if relay == "lean" else 1)
