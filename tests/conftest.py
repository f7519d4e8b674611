import asyncio
import importlib
import json
import os

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.apps import apps as django_apps
from django.conf import settings as django_settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections

from conversations.documents import ranking
from conversations.live import broadcast, consumers, control, draining, generation, recovery
from conversations.modelservers import providers
from conversations.modelservers.transport import aclose_clients
from conversations.tools import mcp_servers
from tests.fake_mistral import FakeMistral

LAB_KEY = "lab-secret-key-123"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    yield
    # The database thread keeps its connection (CONN_MAX_AGE), and PostgreSQL will not drop
    # a test database that a connection is still using.
    asyncio.run(sync_to_async(connections.close_all)())


@pytest.fixture(scope="session", autouse=True)
def _redis_keys_of_this_run():
    """With REDIS_URL set, this run's channel layer keys get a prefix of their own, deleted
    at the end: the Redis may be shared with a site or another run (tests flush the layer)."""
    layer = django_settings.CHANNEL_LAYERS["default"]
    if layer["BACKEND"] != "channels_redis.core.RedisChannelLayer":
        yield
        return
    layer["CONFIG"]["prefix"] = f"test-{os.getpid()}"
    yield
    asyncio.run(RedisChannelLayer(**layer["CONFIG"]).flush())


@pytest.fixture(autouse=True)
def _tasks_in_process(settings):
    """Tasks (reading a document) run at once, in the thread that enqueues them, so a test
    sees the result without a worker; tests/test_worker.py runs the real one."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}


@pytest.fixture(autouse=True)
def _no_user_limits(settings):
    """Tests ask many questions and upload many files quickly: the per-user limits are off
    unless a test turns one on (tests/test_limits.py proves each default)."""
    settings.CHAT_QUESTIONS_PER_MINUTE = 0
    settings.CHAT_ANSWERS_AT_ONCE = 0
    settings.CHAT_CONVERSATIONS_PER_MINUTE = 0
    settings.CHAT_UPLOADS_PER_DAY = 0
    settings.CHAT_UPLOAD_BYTES_PER_DAY = 0


@pytest.fixture(scope="session")
def fake_server():
    with FakeMistral() as server:
        yield server


@pytest.fixture
def fake_mistral(fake_server, settings):
    """The fake model server, reset, with the site pointed at it and quick timings."""
    fake_server.reset()
    fake_server.api_key = "test-key"
    settings.MISTRAL_BASE_URL = fake_server.base_url
    settings.MISTRAL_API_KEY = "test-key"
    settings.MISTRAL_READ_TIMEOUT = 10.0  # gated answers wait on the test, even under load
    settings.MISTRAL_CONNECT_TIMEOUT = 2.0
    settings.MISTRAL_MAX_RETRIES = 2
    settings.CHAT_SAVE_INTERVAL = 0.05
    yield fake_server
    fake_server.reset()


@pytest.fixture(autouse=True)
async def _process_state():
    """Each test starts as a fresh process: no running answers, no watchers, no pools."""
    generation._running.clear()
    providers._cache = None  # clients and their model lists
    recovery._keeper = None
    draining._draining = False
    consumers._open_tabs.clear()
    control._control = None
    broadcast._watchers.clear()
    broadcast._elsewhere.clear()
    ranking.process_state_reset()
    yield
    tasks = [g.task for g in generation._running.values() if g.task] + list(generation._background)
    if control._control is not None:
        tasks.append(control._control[2])
    await _cancel_until_done(tasks)
    # A cancelled task's database call goes on in the database thread (an answer's ending
    # in its transaction): wait for that thread to be idle, or a transactional test's flush
    # meets it half-way (a deadlock on PostgreSQL).
    await sync_to_async(lambda: None, thread_sensitive=True)()
    generation._running.clear()
    await aclose_clients()
    await mcp_servers.connections_close()
    # And whatever else the test left on its loop (a refused socket still waits on its channel).
    await _cancel_until_done(asyncio.all_tasks() - {asyncio.current_task()})


async def _cancel_until_done(tasks, within: float = 5.0) -> None:
    """Cancels the tasks, again until they end. On Python 3.11 asyncio.wait_for, which
    redis-py sends every command through, can swallow a cancel that lands while it sends:
    with REDIS_URL set, one cancel left tasks, and the test's teardown, waiting for ever."""
    left = set(tasks)
    async with asyncio.timeout(within):
        while left:
            for task in left:
                task.cancel()
            _, left = await asyncio.wait(left, timeout=0.1)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved, so none is logged as "never retrieved"


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="ada", password="pw-for-tests-1")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw-for-tests-2")


@sync_to_async
def session_cookie(user) -> bytes:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{django_settings.SESSION_COOKIE_NAME}={session.session_key}".encode()


@pytest.fixture
async def open_socket():
    """Opens sockets through the real ASGI application, so origin and session checks
    run; signed in as `user` when given. All are closed at the end of the test."""
    from chatsite.asgi import application

    opened: list[WebsocketCommunicator] = []

    async def _open(user=None) -> WebsocketCommunicator:
        headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
        if user is not None:
            headers.append((b"cookie", await session_cookie(user)))
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        opened.append(communicator)
        return communicator

    yield _open
    for communicator in opened:
        if not communicator.future.done():
            await communicator.disconnect()


@pytest.fixture
def user_events(user):
    """What the user's sockets would receive through the channel layer."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(broadcast.user_group(user.pk), channel)

    async def receive(within):
        async with asyncio.timeout(within):
            return await layer.receive(channel)

    def next_event(within: float = 1.0) -> dict:
        event = async_to_sync(receive)(within)
        if event["type"] == "relay.frame":
            return json.loads(event["text"])
        return event

    yield next_event
    async_to_sync(layer.flush)()


@pytest.fixture
def review_seed():
    """The Reviewer group and the model prices migration 0004 seeds, made again: a
    transactional test run before this one flushes every table. Runs the migration's own
    function, so tests also prove what a fresh database gets."""
    migration = importlib.import_module("conversations.migrations.0004_review_usage")
    migration.seed(django_apps, None)


# An OpenAI-compatible endpoint, and a checkout with nothing configured


@pytest.fixture(scope="session")
def lab_server():
    with FakeMistral(strict=False) as server:
        yield server


@pytest.fixture
def lab(lab_server, settings):
    """An OpenAI-compatible server named `lab`, with two models, one of which can see."""
    lab_server.reset()
    lab_server.api_key = LAB_KEY
    lab_server.models = [
        {"id": "llama3.2:1b", "object": "model", "created": 1, "owned_by": "library"},
        {"id": "llava:7b", "object": "model", "created": 1, "owned_by": "library"},
        {"id": "org/big", "object": "model", "owned_by": "vllm", "max_model_len": 32768},
    ]
    settings.CHAT_ENDPOINTS = [
        {
            "name": "lab",
            "base_url": lab_server.base_url,
            "api_key": LAB_KEY,
            "vision_models": ["llava:7b"],
        }
    ]
    settings.MISTRAL_MAX_RETRIES = 0
    yield lab_server
    lab_server.reset()


@pytest.fixture
def offline(settings):
    """No Mistral key, Mistral's own URL, no endpoints: what a fresh checkout runs with."""
    settings.MISTRAL_API_KEY = ""
    settings.MISTRAL_BASE_URL = providers.MISTRAL_DEFAULT_BASE_URL
    settings.CHAT_ENDPOINTS = []
    settings.CHAT_DEFAULT_MODEL = ""
