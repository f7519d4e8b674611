"""How the model clients reach their servers, below the requests themselves: the pooled
httpx clients (titles, model lists, OCR, embeddings, and streams through a proxy), the one
certificate store, proxy detection, and the httpx-backed stand-in for a streamed answer when
a proxy is in the way. Streams without a proxy go through http_stream. No Django.

httpcore scans its whole pool on every request, so several small clients used round-robin
beat one big pool under many concurrent requests (encode/httpx#3215). They are made lazily
per event loop, because an AsyncClient must never be shared between loops.
"""

import asyncio
import contextlib
import itertools
import ssl
import urllib.parse
import urllib.request
import weakref
from collections.abc import Iterator

import httpx

from conversations.modelservers import http_stream


async def drain(response: "http_stream.StreamingResponse | ProxiedStream") -> None:
    """Read the body to its end after [DONE] so the connection goes back to the pool; leaving
    early closes it. Only reuse is at stake, so a failure or a slow end is ignored."""
    with contextlib.suppress(http_stream.HTTPStreamError, TimeoutError):
        async with asyncio.timeout(2.0):
            while await response.read():
                pass


def proxied(url: str) -> bool:
    """Whether the environment sends requests to `url` through a proxy (HTTPS_PROXY,
    ALL_PROXY, ... and NO_PROXY, as httpx reads them)."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(parts.hostname or "", proxies)


class ProxiedStream:
    """A stream through a proxy, which http_stream does not speak: httpx reads it, behind
    http_stream's interface, so streams still work for servers behind a corporate proxy."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        encoded = "content-encoding" in response.headers
        self._reads = response.aiter_bytes() if encoded else response.aiter_raw()

    async def read(self) -> bytes:
        try:
            return await anext(self._reads, b"")
        except httpx.TimeoutException as exc:
            raise http_stream.ReadTimeout("no data within the read timeout") from exc
        except httpx.TransportError as exc:
            raise http_stream.ConnectionCut("the connection was cut") from exc

    async def aclose(self) -> None:
        await self._response.aclose()


_CLIENTS_PER_POOL = 8
_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=8)
# The pooled clients' defaults; every request carries its MistralClient's own timeout.
_DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=10.0)

_Pool = tuple[list[httpx.AsyncClient], Iterator[httpx.AsyncClient]]
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Pool]] = (
    weakref.WeakKeyDictionary()
)
_ssl_context: ssl.SSLContext | None = None


def pooled_client(base_url: str) -> httpx.AsyncClient:
    """The next client of this loop's pool for `base_url`, created on first use."""
    loop = asyncio.get_running_loop()
    pools = _pools.get(loop)
    if pools is None:
        pools = _pools[loop] = {}
    pool = pools.get(base_url)
    if pool is None:
        verify = shared_ssl_context()
        clients = [
            httpx.AsyncClient(limits=_LIMITS, timeout=_DEFAULT_TIMEOUT, verify=verify)
            for _ in range(_CLIENTS_PER_POOL)
        ]
        pool = pools[base_url] = (clients, itertools.cycle(clients))
    return next(pool[1])


def shared_ssl_context() -> ssl.SSLContext:
    """One certificate store for all clients: loading it costs milliseconds per client."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


async def aclose_clients() -> None:
    """Close every pooled HTTP client and kept-alive stream connection of the running loop
    (at shutdown, and in test teardown)."""
    pools = _pools.pop(asyncio.get_running_loop(), None)
    if pools:
        await asyncio.gather(
            *(client.aclose() for clients, _ in pools.values() for client in clients)
        )
    await http_stream.aclose_connections()
