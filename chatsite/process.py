"""The daphne process's start and graceful stop, hooked into Twisted's reactor (daphne runs
on it) through its public API.

Start: when the reactor runs, before any socket connects, the process looks for answers
left running by a process that died and keeps looking (conversations/live/recovery.py), and
starts the processes uploads are parsed in (conversations/parsing.py).

Stop: Twisted stops the reactor at once on SIGTERM and SIGINT, and daphne then cancels every
connection's application, so an answer would end as if the process had crashed. Once the
reactor runs, these two signals are taken over here: the first starts the drain
(conversations/live/shutdown.py: no new question, running answers finish or are stored as
interrupted, every tab told and closed with 4012), then the reactor stops as before; a
second signal stops it at once. Under another server, or none (tests), nothing is hooked.
"""

import asyncio
import logging
import signal
import sys
import threading

from django.conf import settings

from conversations import parsing
from conversations.live import draining, shutdown

logger = logging.getLogger(__name__)

# The drain, while it runs, kept referenced.
_drain: asyncio.Task | None = None


def install() -> None:
    """Hook start and stop into the reactor, when daphne has installed one (it does before
    it imports the application)."""
    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import reactor

    _uploads_parsed_once()
    reactor.callWhenRunning(_started, reactor)


def _uploads_parsed_once() -> None:
    """Twisted parses a multipart POST body into `request.args` (with the email package,
    copying the body over and over) before daphne hands the body to Django, which parses it
    again; daphne never reads `request.args`. That first parse took a 9.4 MB upload's peak
    in daphne to +140 MB (and as much CPU again as Django's). Twisted's `Request` has a
    parameter to skip it, `parsePOSTFormSubmission=False`, which daphne does not pass: its
    request class passes it from here. If a release of either moves it, a warning says so
    and uploads are parsed twice, as before."""
    import inspect

    from daphne.http_protocol import WebRequest
    from twisted.web import http

    if "parsePOSTFormSubmission" not in inspect.signature(http.Request.__init__).parameters:
        logger.warning("Twisted's Request has no parsePOSTFormSubmission: uploads parsed twice")
        return
    daphne_init = WebRequest.__init__
    if getattr(daphne_init, "parses_once", False):
        return

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("parsePOSTFormSubmission", False)
        daphne_init(self, *args, **kwargs)

    __init__.parses_once = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__  # type: ignore[method-assign]


def _started(reactor) -> None:
    _oversize_frames_closed_with_a_reason(reactor)
    parsing.sandbox_start()
    loop = asyncio.get_event_loop()
    loop.create_task(shutdown.process_start())

    def on_signal(signum: int, frame) -> None:
        loop.call_soon_threadsafe(_stop_requested, reactor, signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        return  # `runserver` with its reloader: signals are the reloader's business
    # After Twisted's own handlers: they are installed "during startup", this runs after.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _oversize_frames_closed_with_a_reason(reactor) -> None:
    """A frame over daphne's limit (`--websocket-max-message-size`, 1 MB by default) makes
    autobahn drop the TCP connection without a close frame, so the page saw a bare cut and
    reconnected without a word. With autobahn's `failByDrop` off it sends 1009 "message too
    big", with its reason, first. daphne has no option for it: its websocket factory is
    reached through the listening ports' factory (daphne's `HTTPFactory.server` and
    `Server.ws_factory`); if a release moves them, a warning says so and such frames are
    dropped as before."""
    factories = {
        getattr(getattr(getattr(reader, "factory", None), "server", None), "ws_factory", None)
        for reader in reactor.getReaders()
    } - {None}
    if not factories:
        logger.warning("daphne's websocket factory was not found: oversize frames drop the socket")
    for factory in factories:
        factory.setProtocolOptions(failByDrop=False)


def _stop_requested(reactor, name: str) -> None:
    global _drain
    if draining.draining():
        logger.warning("%s again: stopping now", name)
        reactor.stop()
        return
    logger.warning("%s: draining for up to %.0f s", name, settings.CHAT_DRAIN_SECONDS)
    _drain = asyncio.ensure_future(shutdown.process_drain(settings.CHAT_DRAIN_SECONDS))
    _drain.add_done_callback(lambda _: reactor.callLater(0.2, _stop, reactor))


def _stop(reactor) -> None:
    """After the close frames had a moment to leave."""
    if reactor.running:
        reactor.stop()
