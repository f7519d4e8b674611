"""Twisted TCP writes go out at once when nothing is queued, and never overtake queued bytes."""

import socket

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol

from chatsite.fast_path import twisted_writes


class RecordingReactor:
    """Just enough of a reactor for a tcp.Connection: it records writer registration."""

    def __init__(self) -> None:
        self.writers: list[object] = []

    def addWriter(self, writer: object) -> None:  # noqa: N802 (Twisted's name)
        if writer not in self.writers:
            self.writers.append(writer)

    def removeWriter(self, writer: object) -> None:  # noqa: N802
        if writer in self.writers:
            self.writers.remove(writer)


@pytest.fixture
def connection():
    stock = tcp.Connection.write
    twisted_writes.install()
    ours, peer = socket.socketpair()
    reactor = RecordingReactor()
    conn = tcp.Connection(ours, Protocol(), reactor)
    conn.connected = True
    peer.setblocking(False)
    yield conn, peer, reactor
    ours.close()
    peer.close()
    tcp.Connection.write = stock  # as the run's own fast path setting left it


def read_all(peer: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_a_write_reaches_the_peer_without_waiting_for_the_loop(connection):
    conn, peer, reactor = connection
    conn.write(b"frame one")
    conn.write(b"frame two")
    assert read_all(peer) == b"frame oneframe two"
    assert reactor.writers == []  # no selector registration, no extra loop turn


def test_bytes_queued_behind_a_full_socket_keep_their_order(connection):
    conn, peer, reactor = connection
    big = bytes(range(256)) * 40_000  # far more than a socket buffer holds
    conn.write(big)
    assert reactor.writers == [conn]  # the rest waits for the socket to drain
    conn.write(b"after")  # must queue behind the rest of `big`, not jump ahead
    received = read_all(peer)
    while reactor.writers:
        conn.doWrite()
        received += read_all(peer)
        if len(conn.dataBuffer) == conn.offset and not conn._tempDataBuffer:
            conn.stopWriting()
    assert received == big + b"after"


def test_a_closed_peer_leaves_the_error_to_twisted(connection):
    conn, peer, reactor = connection
    peer.close()
    conn.write(b"x" * 10)  # may succeed into the kernel buffer or fail; must not raise
    conn.write(b"y" * 10)
