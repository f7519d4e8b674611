"""GET /health, as the load balancer and monitoring see it: no login, 200 while this process
can take questions, 503 when its database or Redis is gone or it is draining."""

import json
import socket
from unittest import mock

import pytest
from django.db import OperationalError, connection, connections
from django.test import AsyncRequestFactory

from conversations.web.health import health_view

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-very-secret-key-0123456789"


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_running() -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", 6379)) == 0


def model_server(body: dict, name: str) -> dict:
    [report] = [m for m in body["model_servers"] if m["name"] == name]
    return report


async def test_health_is_200_with_the_database_and_model_servers(
    async_client, fake_mistral, settings
):
    settings.REDIS_URL = ""
    response = await async_client.get("/health")  # no login

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["ok"] is True
    assert body["draining"] is False
    assert body["database"]["ok"] is True
    assert body["database"]["vendor"] == connection.vendor
    assert body["database"]["ms"] >= 0
    assert body["redis"] is None
    mistral = model_server(body, "mistral")
    assert (mistral["ok"], mistral["host"]) == (True, "127.0.0.1")
    assert mistral["models"] > 0


async def test_health_answers_head_and_refuses_post(async_client, fake_mistral):
    assert (await async_client.head("/health")).status_code == 200
    assert (await async_client.post("/health")).status_code == 405


async def test_health_is_503_when_the_database_is_unreachable(async_client, fake_mistral):
    down = OperationalError('connection to server at "10.9.8.7", port 5432 failed: refused')
    with mock.patch.object(type(connections["default"]), "cursor", side_effect=down):
        response = await async_client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["database"] == {
        "ok": False,
        "vendor": connection.vendor,
        "error": "OperationalError",
    }
    assert "10.9.8.7" not in response.content.decode()


async def test_health_is_503_when_redis_is_down(async_client, fake_mistral, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    response = await async_client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert body["database"]["ok"] is True
    assert body["redis"]["ok"] is False
    assert body["redis"]["host"] == "127.0.0.1"
    assert "error" in body["redis"]


async def test_health_pings_redis_when_it_is_set(async_client, fake_mistral, settings):
    if not redis_running():
        pytest.skip("needs Redis on 127.0.0.1:6379")
    settings.REDIS_URL = "redis://127.0.0.1:6379/15"
    response = await async_client.get("/health")

    assert response.status_code == 200
    redis_report = response.json()["redis"]
    assert (redis_report["ok"], redis_report["host"]) == (True, "127.0.0.1")


async def test_health_is_503_while_the_process_drains(fake_mistral, settings):
    settings.REDIS_URL = ""
    view = health_view(draining=lambda: True)
    response = await view(AsyncRequestFactory().get("/health"))

    assert response.status_code == 503
    body = json.loads(response.content)
    assert (body["ok"], body["draining"], body["database"]["ok"]) == (False, True, True)


async def test_a_model_server_down_is_reported_but_the_site_stays_in_rotation(
    async_client, fake_mistral, settings
):
    settings.REDIS_URL = ""
    settings.MISTRAL_BASE_URL = f"http://127.0.0.1:{closed_port()}/v1"
    response = await async_client.get("/health")

    assert response.status_code == 200
    mistral = model_server(response.json(), "mistral")
    assert (mistral["ok"], mistral["error"]) == (False, "connection_failed")


async def test_health_body_carries_no_key_nor_the_servers_urls(
    async_client, fake_mistral, settings
):
    settings.MISTRAL_API_KEY = SECRET
    settings.REDIS_URL = f"redis://:{SECRET}@127.0.0.1:{closed_port()}/3"
    fake_mistral.api_key = "another-key"  # refused: the error path must not echo it either
    response = await async_client.get("/health")

    text = response.content.decode()
    assert SECRET not in text
    assert fake_mistral.base_url not in text
    assert settings.REDIS_URL not in text
    assert model_server(response.json(), "mistral")["error"] == "auth"


async def test_model_servers_are_not_asked_on_every_probe(async_client, fake_mistral, settings):
    settings.REDIS_URL = ""
    for _ in range(3):
        assert (await async_client.get("/health")).status_code == 200
    fake_mistral.api_key = "another-key"  # a failing listing is not re-asked each time either
    settings.MISTRAL_API_KEY = "refused-key"
    for _ in range(3):
        await async_client.get("/health")

    listings = [r for r in fake_mistral.requests if r.path.endswith("/models")]
    assert len(listings) == 2  # one per configured key: the first probe of each
