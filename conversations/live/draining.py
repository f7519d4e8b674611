"""Whether this process is shutting down. Set once, on SIGTERM or SIGINT
(live/shutdown.py): from then on the socket takes no new question, and /health answers 503
so the load balancer sends new tabs elsewhere, while running answers finish."""

_draining = False


def draining() -> bool:
    return _draining


def drain_begin() -> None:
    global _draining
    _draining = True
