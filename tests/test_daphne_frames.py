"""Frames written straight to daphne's connection are the frames RFC 6455 describes; the
whole path under daphne is exercised by the browser tests (tests/e2e/test_chat.py)."""

import functools

from chatsite.fast_path.daphne_frames import text_frame, text_writer


def test_text_frames_match_the_rfc_examples():
    # RFC 6455 §5.7: "A single-frame unmasked text message ... 0x81 0x05 0x48 0x65 0x6c
    # 0x6c 0x6f (contains "Hello")"; 256 and 65,536-byte messages in a single unmasked
    # frame carry the length in 2 and 8 bytes after 0x7E and 0x7F.
    assert text_frame(b"Hello") == bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    assert text_frame(b"x" * 256) == b"\x81\x7e\x01\x00" + b"x" * 256
    assert (
        text_frame(b"x" * 65536) == b"\x81\x7f" + bytes.fromhex("0000000000010000") + b"x" * 65536
    )


def test_lengths_at_each_boundary_use_the_shortest_form():
    assert text_frame(b"")[:2] == b"\x81\x00"
    assert text_frame(b"x" * 125)[:2] == b"\x81\x7d"
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"x" * 65535)[:4] == b"\x81\x7e\xff\xff"


def test_no_writer_is_offered_for_a_send_that_is_not_daphnes():
    async def send(message):
        pass

    assert text_writer(send) is None
    assert text_writer(functools.partial(send)) is None
