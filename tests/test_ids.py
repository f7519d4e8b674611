"""Every id, number and model a URL or a socket frame takes, fuzzed: out of range, negative,
zero, not a number or empty gives 404 or a clear error, never a 500, on every database."""

import orjson
import pytest
from django.urls import URLPattern

from conversations.models import Conversation, Message
from conversations.web.urls import urlpatterns
from tests.helpers import frames_until, message_create

BAD_IDS = [str(2**63), str(2**64), str(10**30), str(2**63 - 1), "-1", "0", "abc", "1e3", ""]

# What each query parameter a view reads is given when it is not the one fuzzed.
QUERY_ARGS = ["before", "conversation", "documents", "model"]

ROUTES = [p.pattern._route for p in urlpatterns if isinstance(p, URLPattern)]


def with_path_args(route: str, value: str) -> str:
    return "/" + route.replace("<id:pk>", value).replace("<id:number>", value).replace(
        "<str:kind>", "sent"
    ).replace("<str:token>", "unknown-share-token-" + "x" * 24)


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def mine(user):
    conversation = Conversation.objects.create(owner=user, model="mistral-small-latest")
    message_create(conversation=conversation, role="user", text="hi")
    return conversation


def test_every_url_pattern_is_fuzzed():
    """A pattern added later is fuzzed too, or this fails: its path arguments must be known."""
    for route in ROUTES:
        assert "<" not in with_path_args(route, "1"), route


@pytest.mark.django_db
@pytest.mark.parametrize("route", [r for r in ROUTES if "<" in r])
def test_bad_id_in_a_path_is_not_found(route, signed_in, mine, fake_mistral):
    for value in BAD_IDS:
        url = with_path_args(route, value)
        for method in (signed_in.get, signed_in.post):
            status = method(url).status_code
            assert status in (404, 405), (method.__name__, url, status)


@pytest.mark.django_db
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name", QUERY_ARGS)
def test_bad_id_in_a_query_is_a_clear_error(route, name, signed_in, mine, fake_mistral):
    url = with_path_args(route, str(mine.pk))
    for value in [*BAD_IDS, f"{2**64}_1", f"1_{2**64}", f"{10**30}_{2**63}", "1_", "_1", "1,x"]:
        query = {"before": "1", "conversation": str(mine.pk), "documents": "", "model": ""}
        query[name] = value
        response = signed_in.get(url, query)
        assert response.status_code in (200, 302, 400, 404, 405), (url, query, response)
        if response.status_code == 400 and response["Content-Type"] == "application/json":
            assert response.json()["error"]["message"]


FRAMES = [
    {"type": "subscribe", "conversation": "ID"},
    {"type": "subscribe", "conversation": "MINE", "since": "ID"},
    {"type": "send", "conversation": "ID", "text": "hi"},
    {"type": "send", "conversation": None, "text": "hi", "attachments": ["ID"]},
    {"type": "send", "conversation": None, "text": "hi", "documents": ["ID"]},
    {"type": "stop", "conversation": "ID"},
    {"type": "retry", "message": "ID"},
    {"type": "resync", "message": "ID"},
    {"type": "tool_approve", "call": "ID", "approve": True},
]


FRAME_VALUES = [str(2**63), str(2**64), str(10**30), "-1", "0", '"1"', "1.5", "true", '""']


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: f"{f['type']}-{list(f)[-1]}")
async def test_bad_id_in_a_frame_is_an_error_frame(frame, user, open_socket):
    mine = await Conversation.objects.acreate(owner=user, model="mistral-small-latest")
    socket = await open_socket(user)
    for value in FRAME_VALUES:
        raw = orjson.dumps(frame).decode().replace('"MINE"', str(mine.pk)).replace('"ID"', value)
        await socket.send_to(text_data=raw)
        reply = (await frames_until(socket, lambda f: f["type"] in ("error", "subscribed")))[-1]
        if reply["type"] == "error":
            assert reply["code"] in ("invalid", "not_found"), (raw, reply)
    assert not await Message.objects.aexists()
