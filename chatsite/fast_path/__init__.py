"""The fast path: every place the streaming hot path reaches past its frameworks' public APIs.

Each piece took a measured share off the cost of a streamed token (docs/performance.md), and
each depends on internals of a package that may change them in any release:

- `twisted_writes`: Twisted's TCP connections send at once instead of on the next loop turn
  (patches `tcp.Connection.write`, reads its buffers);
- `daphne_frames`: websocket text frames written straight to daphne's connection (recognises
  daphne's `send`, reads autobahn's protocol state);
- `consumer_dispatch`: channel-layer events handled without Channels' hop to the database
  thread (replaces `AsyncConsumer.dispatch`);
- `redis_groups`: a group's members read from channels_redis's keys, so a frame goes through
  Redis only when a tab in another process listens.

`install()`, called once by `chatsite/asgi.py`, decides which pieces run: none while the
`CHAT_FAST_PATH` setting is off; otherwise each piece whose packages are releases it was
written for (`WRITTEN_FOR`) and whose internals are still there (`NEEDS`). A piece that fails
its check logs one warning and stays on the stock path, which is slower but always works.
The hot path reads the flags in `active`, never the settings.

To move to a new release of one of these packages: read the pieces that use it against the
new code, run the socket tests with `CHAT_FAST_PATH` on and off (and the browser tests, the
only ones under a real daphne), then move its bounds here and in pyproject.toml together
(tests/test_fast_path.py holds them equal).
"""

import dataclasses
import importlib
import logging
import re
import types
from importlib import metadata

from chatsite.fast_path import twisted_writes

logger = logging.getLogger(__name__)

# The releases the fast path was written for and tested with, as [lowest, first excluded).
WRITTEN_FOR: dict[str, tuple[str, str]] = {
    "twisted": ("26.10", "26.11"),
    "autobahn": ("26.11", "26.12"),
    "daphne": ("4.2.2", "4.3"),
    "channels": ("4.3", "4.4"),
    "channels-redis": ("4.2", "4.4"),
}


@dataclasses.dataclass
class Pieces:
    """Which pieces run (set by `install()`; read per event by the pieces themselves)."""

    twisted_writes: bool = False
    daphne_frames: bool = False
    consumer_dispatch: bool = False
    redis_groups: bool = False


# Nothing runs until install() has checked it.
active = Pieces()


@dataclasses.dataclass(frozen=True)
class Internals:
    """What a piece uses of one class or module (`path`: "module" or "module:Class") of
    `package`. `attributes` must be found on it; `instance_attributes` are only set on
    instances (in `__init__`, or when a connection opens), so they are looked for among the
    names the class's own code uses."""

    package: str
    path: str
    attributes: tuple[str, ...] = ()
    instance_attributes: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        module_name, _, class_name = self.path.partition(":")
        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            return [module_name]
        if class_name:
            owner = getattr(owner, class_name, None)
            if not isinstance(owner, type):
                return [self.path]
        where = self.path.replace(":", ".")
        missing = [f"{where}.{name}" for name in self.attributes if not hasattr(owner, name)]
        if self.instance_attributes:
            used = _names_used_by(owner)
            missing += [f"{where}.{name}" for name in self.instance_attributes if name not in used]
        return missing


NEEDS: dict[str, tuple[Internals, ...]] = {
    "twisted_writes": (
        Internals(
            "twisted",
            "twisted.internet.tcp:Connection",
            attributes=(
                "write",
                "connected",
                "disconnecting",
                "_writeDisconnected",
                "TLS",
                "producer",
                "streamingProducer",
                "dataBuffer",
                "offset",
            ),
            instance_attributes=("_tempDataBuffer", "socket"),
        ),
    ),
    "daphne_frames": (
        # daphne's ASGI `send` is a partial of this coroutine over the connection's protocol.
        # Importing daphne.server installs Twisted's reactor; the daphne app has done so by
        # the time Django is set up, before install() runs.
        Internals("daphne", "daphne.server:Server", attributes=("handle_reply",)),
        Internals(
            "autobahn",
            "autobahn.websocket.protocol:WebSocketProtocol",
            attributes=("STATE_OPEN", "SEND_STATE_GROUND"),
            instance_attributes=("state", "send_state", "send_queue", "_perMessageCompress"),
        ),
    ),
    "consumer_dispatch": (
        Internals("channels", "channels.consumer:AsyncConsumer", attributes=("dispatch",)),
        Internals("channels", "channels.consumer", attributes=("get_handler_name",)),
    ),
    "redis_groups": (
        Internals(
            "channels-redis",
            "channels_redis.core:RedisChannelLayer",
            attributes=("_group_key", "consistent_hash", "connection"),
            instance_attributes=("group_expiry", "client_prefix"),
        ),
    ),
}


def install(*, enabled: bool) -> None:
    """Decide which pieces run and put the Twisted patch in or take it out. `enabled` is the
    `CHAT_FAST_PATH` setting. Never raises: a piece that cannot run stays on the stock path.
    Called once at start-up, before the ASGI app is built (it reads `active`); the tests call
    it again to turn the fast path off and on."""
    for piece in dataclasses.fields(Pieces):
        setattr(active, piece.name, enabled and _usable(piece.name))
    if active.twisted_writes:
        twisted_writes.install()
    else:
        twisted_writes.uninstall()
    running = [piece.name for piece in dataclasses.fields(Pieces) if getattr(active, piece.name)]
    if not enabled:
        logger.info("Fast path off (CHAT_FAST_PATH): every piece on the stock path")
    else:
        logger.info("Fast path: %s", ", ".join(running) or "no piece passed its check")


def _usable(piece: str) -> bool:
    """Whether `piece` can run here; if not, one warning that says why."""
    problems = []
    versions: dict[str, str | None] = {}
    for internals in NEEDS[piece]:
        package = internals.package
        if package not in versions:
            versions[package] = _installed_version(package)
            problem = _version_problem(package, versions[package])
            if problem:
                problems.append(problem)
        if missing := internals.missing():
            problems.append(f"{package} {versions[package]} has no {', '.join(missing)}")
    if problems:
        logger.warning("Fast path: %s left on the stock path: %s", piece, "; ".join(problems))
    return not problems


def _installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _version_problem(package: str, version: str | None) -> str | None:
    low, high = WRITTEN_FOR[package]
    if version is None:
        return f"{package} is not installed"
    if not _release(low) <= _release(version) < _release(high):
        return f"{package} {version} is not a release it was written for (>={low},<{high})"
    return None


def _release(version: str) -> tuple[int, ...]:
    """A version's release numbers: "26.10.0rc1" -> (26, 10, 0)."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def _names_used_by(cls: type) -> set[str]:
    """Every attribute name the code of `cls` and its bases uses."""
    codes = [
        code
        for klass in cls.__mro__
        for value in vars(klass).values()
        if (code := getattr(getattr(value, "__func__", value), "__code__", None)) is not None
    ]
    names: set[str] = set()
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    return names
