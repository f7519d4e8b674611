"""`GET /health`: whether this process can take questions, for the load balancer and for
monitoring, with no login.

200 when the database answers, Redis answers (when REDIS_URL is set) and the process is not
draining; 503 otherwise, so a balancer takes the process out of rotation. The model servers
are reported but never make it 503: with one down the site still shows every conversation,
and another process would fare no better.

A probe comes every few seconds, so the model servers are not asked on each: their state is
what the picker's model list cache holds (`MistralClient.list_models`, re-asked at most every
5 minutes while it works), and a listing that failed is tried again at most every
`MODEL_SERVER_RECHECK` seconds, each try bounded by `MODEL_SERVER_TIMEOUT`.

The body names hosts, never a key, a URL's path or an error's text (a driver's message can
carry addresses and user names): failures are given by their class or code.
"""

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

from conversations.modelservers import providers
from conversations.modelservers.errors import ModelServerError

MODEL_SERVER_RECHECK = 30.0
MODEL_SERVER_TIMEOUT = 2.0
REDIS_TIMEOUT = 2.0

# Each provider's last report and when it was made, forgotten with the provider (the registry
# is rebuilt when the settings change).
_model_server_reports: weakref.WeakKeyDictionary[providers.Provider, tuple[float, dict]] = (
    weakref.WeakKeyDictionary()
)


def health_view(
    *, draining: Callable[[], bool]
) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    """The view, told how to ask whether this process is draining (stopping after SIGTERM),
    so the URL conf wires it to the process's lifecycle and the view imports nothing live."""

    @require_safe
    async def health(request: HttpRequest) -> HttpResponse:
        report = await health_report(draining=draining())
        return JsonResponse(
            report, status=200 if report["ok"] else 503, headers={"Cache-Control": "no-store"}
        )

    return health


async def health_report(*, draining: bool) -> dict[str, Any]:
    """The database, Redis and every configured model server, checked at the same time."""
    database, channel_layer, model_servers = await asyncio.gather(
        sync_to_async(_database)(), _redis(), _model_servers()
    )
    ok = database["ok"] and (channel_layer is None or channel_layer["ok"]) and not draining
    return {
        "ok": ok,
        "draining": draining,
        "database": database,
        "redis": channel_layer,
        "model_servers": model_servers,
    }


def _database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as err:
        return {"ok": False, "vendor": connection.vendor, "error": type(err).__name__}
    return {"ok": True, "vendor": connection.vendor, "ms": _ms_since(started)}


async def _redis() -> dict[str, Any] | None:
    """A PING on a connection of its own, None without REDIS_URL (one process, no Redis)."""
    if not settings.REDIS_URL:
        return None
    host = urlsplit(settings.REDIS_URL).hostname or ""
    client = redis.asyncio.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
    )
    started = time.perf_counter()
    try:
        await client.ping()
    except (redis.RedisError, OSError) as err:
        return {"ok": False, "host": host, "error": type(err).__name__}
    finally:
        await client.aclose()
    return {"ok": True, "host": host, "ms": _ms_since(started)}


async def _model_servers() -> list[dict[str, Any]]:
    registry = providers.registry()
    reports = await asyncio.gather(*(_model_server(p) for p in registry.providers))
    return [
        *reports,
        *({"name": n, "ok": False, "error": "misconfigured"} for n, _ in registry.problems),
    ]


async def _model_server(provider: providers.Provider) -> dict[str, Any]:
    now = time.monotonic()
    cached = _model_server_reports.get(provider)
    if cached is not None and now - cached[0] < MODEL_SERVER_RECHECK:
        return cached[1]
    report: dict[str, Any] = {"name": provider.name, "label": provider.label}
    if provider.base_url:
        report["host"] = urlsplit(provider.base_url).hostname or ""
    try:
        async with asyncio.timeout(MODEL_SERVER_TIMEOUT):
            models = await provider.models()  # the cached list while it is fresh
    except ModelServerError as err:
        report |= {"ok": False, "error": err.code}
    except TimeoutError:
        report |= {"ok": False, "error": "timeout"}
    else:
        report |= {"ok": True, "models": len(models)}
    _model_server_reports[provider] = (now, report)
    return report


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
