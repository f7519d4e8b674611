"""The fast path runs only where it was written to: with the setting on, in the pinned
releases, with the internals it reads still there; anywhere else answers still stream, on the
frameworks' own road."""

import dataclasses
import logging
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import channels.consumer
import pytest
from autobahn.websocket.protocol import WebSocketProtocol
from channels.consumer import AsyncConsumer
from channels_redis.core import RedisChannelLayer
from daphne.server import Server
from twisted.internet import _newtls, tcp

import chatsite.asgi  # noqa: F401 (its import installs the fast path, as in production)
from chatsite import fast_path
from chatsite.fast_path import redis_groups, twisted_writes
from chatsite.fast_path.consumer_dispatch import DirectDispatch
from tests.fake_mistral import Reply
from tests.helpers import frames_until, is_final, streamed_text

ROOT = Path(__file__).resolve().parent.parent
PIECES = [piece.name for piece in dataclasses.fields(fast_path.Pieces)]


@pytest.fixture(autouse=True)
def _restore_fast_path():
    """Tests decide the pieces themselves; the run's own decision comes back after each."""
    pieces = dataclasses.replace(fast_path.active)
    write = tcp.Connection.write
    yield
    vars(fast_path.active).update(vars(pieces))
    tcp.Connection.write = write


def warnings_from(caplog) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "chatsite.fast_path" and record.levelno == logging.WARNING
    ]


def running() -> list[str]:
    return [piece for piece in PIECES if getattr(fast_path.active, piece)]


def test_every_piece_runs_where_its_releases_and_internals_are_found(caplog):
    fast_path.install(enabled=True)
    assert running() == PIECES
    assert tcp.Connection.write is twisted_writes._write
    assert warnings_from(caplog) == []


@pytest.mark.parametrize(
    ("piece", "owner", "name", "package"),
    [
        ("twisted_writes", _newtls.ConnectionMixin, "TLS", "twisted"),
        ("daphne_frames", WebSocketProtocol, "STATE_OPEN", "autobahn"),
        ("daphne_frames", Server, "handle_reply", "daphne"),
        ("consumer_dispatch", channels.consumer, "get_handler_name", "channels"),
        ("redis_groups", RedisChannelLayer, "_group_key", "channels-redis"),
    ],
)
def test_a_missing_internal_leaves_its_piece_on_the_stock_path(
    piece, owner, name, package, monkeypatch, caplog
):
    fast_path.install(enabled=True)
    stock_write = twisted_writes._twisted_write
    monkeypatch.delattr(owner, name)  # as if a new release had renamed it
    fast_path.install(enabled=True)

    assert running() == [other for other in PIECES if other != piece]
    [warning] = warnings_from(caplog)
    assert piece in warning
    assert f"{package} {metadata.version(package)} has no " in warning
    assert f".{name}" in warning
    if piece == "twisted_writes":
        assert tcp.Connection.write is stock_write


class Recorder:
    def __init__(self):
        self.send_queue = []


def test_an_instance_attribute_no_code_of_the_class_uses_is_missing():
    needs = fast_path.Internals(
        "autobahn",
        f"{__name__}:Recorder",
        instance_attributes=("send_queue", "_perMessageCompress"),
    )
    assert needs.missing() == [f"{__name__}.Recorder._perMessageCompress"]


@pytest.mark.parametrize(
    ("low", "high", "runs"),
    [
        ("26.10", "26.11", True),
        ("26.10.0", "26.10.1", True),
        ("9", "27", True),  # numbers, not strings: 26 is above 9
        ("26.9", "26.10", False),  # the upper bound is excluded
        ("26.11", "27", False),
    ],
)
def test_a_release_outside_the_pinned_range_leaves_its_piece_on_the_stock_path(
    low, high, runs, monkeypatch, caplog
):
    monkeypatch.setattr(fast_path, "_installed_version", lambda package: "26.10.0")
    monkeypatch.setitem(fast_path.WRITTEN_FOR, "twisted", (low, high))
    fast_path.install(enabled=True)

    assert fast_path.active.twisted_writes is runs
    warnings = [w for w in warnings_from(caplog) if "twisted_writes" in w]
    if runs:
        assert warnings == []
    else:
        [warning] = warnings
        assert f"twisted 26.10.0 is not a release it was written for (>={low},<{high})" in warning


def test_the_pins_in_pyproject_are_the_releases_it_was_written_for():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for package, (low, high) in fast_path.WRITTEN_FOR.items():
        assert f"{package}>={low},<{high}" in dependencies


def test_setting_off_puts_every_piece_on_the_stock_path_without_checking(monkeypatch, caplog):
    fast_path.install(enabled=True)
    stock = twisted_writes._twisted_write
    monkeypatch.delattr(WebSocketProtocol, "STATE_OPEN")
    fast_path.install(enabled=False)

    assert running() == []
    assert tcp.Connection.write is stock
    assert warnings_from(caplog) == []


@pytest.mark.parametrize(("value", "pieces"), [("false", []), ("true", PIECES)])
def test_the_environment_variable_decides_at_start_up(value, pieces):
    """As daphne starts the site: the ASGI module, with CHAT_FAST_PATH from the environment."""
    script = (
        "import chatsite.asgi as asgi, dataclasses\n"
        "from chatsite import fast_path\n"
        "from chatsite.fast_path.daphne_frames import DirectFrames\n"
        "print([p for p, on in dataclasses.asdict(fast_path.active).items() if on])\n"
        "print(isinstance(asgi.websocket_app, DirectFrames))\n"
    )
    result = subprocess.run(  # noqa: S603 (fixed arguments)
        [sys.executable, "-c", script],
        env={**os.environ, "CHAT_FAST_PATH": value, "LOG_LEVEL": "WARNING"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.splitlines() == [repr(pieces), str(bool(pieces))]


class Counter:
    def __init__(self):
        self.calls = 0

    async def __call__(self):
        self.calls += 1


@pytest.fixture
def channels_hops(monkeypatch):
    """Counts Channels' hop to the database thread before a handler."""
    counter = Counter()
    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counter)
    return counter


async def stream_an_answer(user, open_socket, fake_mistral):
    fake_mistral.enqueue(Reply.tokens([f"t{i} " for i in range(20)], interval=0.002))
    tab = await open_socket(user)
    await tab.send_to(text_data='{"type": "send", "conversation": null, "text": "hi"}')
    frames = await frames_until(tab, is_final)
    return frames[-1]["message"], streamed_text(frames, frames[-1]["message"]["id"])


@pytest.mark.django_db(transaction=True)
async def test_answers_stream_with_the_fast_path_off(
    user, open_socket, fake_mistral, channels_hops
):
    fast_path.install(enabled=False)
    final, streamed = await stream_an_answer(user, open_socket, fake_mistral)

    expected = "".join(f"t{i} " for i in range(20))
    assert (final["status"], final["text"]) == ("complete", expected)
    assert streamed == expected
    assert channels_hops.calls > 0  # Channels' own dispatch handled the socket's events


@pytest.mark.django_db(transaction=True)
async def test_events_skip_channels_hop_with_the_fast_path_on(
    user, open_socket, fake_mistral, channels_hops
):
    fast_path.install(enabled=True)
    final, streamed = await stream_an_answer(user, open_socket, fake_mistral)

    assert final["status"] == "complete"
    assert streamed == final["text"]
    assert channels_hops.calls == 0


@pytest.mark.parametrize("on", [True, False])
async def test_an_event_without_a_handler_is_refused_either_way(on, channels_hops):
    class Consumer(DirectDispatch, AsyncConsumer):
        pass

    fast_path.install(enabled=on)
    with pytest.raises(ValueError, match="No handler for message type nothing.here"):
        await Consumer().dispatch({"type": "nothing.here"})


async def test_group_members_are_not_read_with_the_fast_path_off():
    fast_path.install(enabled=False)
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1"])  # never reached
    assert await redis_groups.group_members(layer, "conversation.1") is None
