"""Structured answers: the format a conversation asks for reaches each model server as it
documents it (or not at all), a JSON answer is shown pretty-printed and checked against its
schema, and the settings refuse a schema that is not one."""

import json

import orjson
import pytest
from django.urls import reverse

from conversations.models import Conversation
from tests.fake_mistral import Reply
from tests.helpers import frames_until, is_final

pytestmark = pytest.mark.django_db(transaction=True)

BOOK = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "authors": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "authors"],
    "additionalProperties": False,
}


async def ask(socket, conversation: Conversation, text: str = "A book, please") -> dict:
    frame = {"type": "send", "conversation": conversation.pk, "text": text}
    await socket.send_to(text_data=orjson.dumps(frame).decode())
    return [f for f in await frames_until(socket, is_final) if is_final(f)][-1]["message"]


def chat_bodies(server) -> list[dict]:
    return [r.json for r in server.requests if r.path.endswith("/chat/completions")]


async def conversation_with(user, model: str = "mistral-small-latest", **fields) -> Conversation:
    return await Conversation.objects.acreate(owner=user, model=model, **fields)


async def test_text_format_sends_no_response_format(user, open_socket, fake_mistral):
    conversation = await conversation_with(user)
    fake_mistral.enqueue(Reply.tokens(["Hello"]))
    final = await ask(await open_socket(user), conversation)
    assert final["status"] == "complete"
    [body] = chat_bodies(fake_mistral)
    assert "response_format" not in body
    assert final["html"].strip() == "<p>Hello</p>"


async def test_json_format_is_sent_and_the_answer_is_pretty_printed(
    user, open_socket, fake_mistral
):
    conversation = await conversation_with(user, answer_format="json_object")
    fake_mistral.enqueue(Reply.tokens(['{"title": "Dune",', ' "year": 1965}']))
    final = await ask(await open_socket(user), conversation)

    [body] = chat_bodies(fake_mistral)  # the fake server validated it against the spec
    assert body["response_format"] == {"type": "json_object"}
    assert final["text"] == '{"title": "Dune", "year": 1965}'
    html = final["html"]
    assert '<code class="language-json">' in html
    assert '<span class="hl-nt">"title"</span>' in html  # highlighted
    assert "\n<span" in html  # one key a line: pretty-printed
    assert 'class="copy-code"' in html
    assert '<button type="button" class="download-json"' in html
    assert 'aria-label="Download the answer as a .json file"' in html
    assert final["notice"] == ""


async def test_schema_format_is_sent_and_a_match_is_marked(user, open_socket, fake_mistral):
    conversation = await conversation_with(
        user, answer_format="json_schema", answer_schema_name="book", answer_schema=BOOK
    )
    fake_mistral.enqueue(Reply.tokens(['{"title": "Dune", "authors": ["Frank Herbert"]}']))
    final = await ask(await open_socket(user), conversation)

    [body] = chat_bodies(fake_mistral)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "book", "schema": BOOK, "strict": True},
    }
    assert final["notice"] == "Matches the schema “book”."
    assert "download-json" in final["html"]


async def test_schema_mismatch_is_marked_with_the_first_error(user, open_socket, fake_mistral):
    conversation = await conversation_with(
        user, answer_format="json_schema", answer_schema_name="book", answer_schema=BOOK
    )
    fake_mistral.enqueue(Reply.tokens(['{"title": "Dune", "authors": [1965]}']))
    final = await ask(await open_socket(user), conversation)

    assert final["notice"] == (
        "Does not match the schema “book”: 1965 is not of type 'string' (at $.authors[0])."
    )
    assert '<code class="language-json">' in final["html"]
    stored = await conversation.messages.aget(pk=final["id"])
    assert stored.notice == final["notice"]


async def test_invalid_json_is_kept_as_markdown_and_marked(user, open_socket, fake_mistral):
    conversation = await conversation_with(user, answer_format="json_object")
    fake_mistral.enqueue(Reply.tokens(["Sure! **Here** it is: {title: Dune"]))
    final = await ask(await open_socket(user), conversation)

    assert final["notice"] == "The answer is not valid JSON."
    assert "<strong>Here</strong>" in final["html"]
    assert "download-json" not in final["html"]


async def test_openai_compatible_endpoint_gets_the_response_format(user, open_socket, offline, lab):
    conversation = await conversation_with(
        user,
        model="lab/llama3.2:1b",
        answer_format="json_schema",
        answer_schema_name="book",
        answer_schema=BOOK,
    )
    lab.enqueue(Reply.tokens(['{"title": "Dune", "authors": []}']))
    final = await ask(await open_socket(user), conversation)

    [body] = chat_bodies(lab)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "book", "schema": BOOK, "strict": True},
    }
    assert final["notice"] == "Matches the schema “book”."


async def test_local_model_is_not_sent_the_format_and_says_so(user, open_socket, offline, settings):
    settings.LOCAL_MODEL_ENABLED = True
    settings.LOCAL_MODEL_MAX_TOKENS = 8
    conversation = await conversation_with(
        user, model="local/smollm2-135m", answer_format="json_object"
    )
    socket = await open_socket(user)
    frame = {"type": "send", "conversation": conversation.pk, "text": "Say hi"}
    await socket.send_to(text_data=orjson.dumps(frame).decode())
    frames = await frames_until(socket, is_final, within=30)
    final = [f for f in frames if is_final(f)][-1]["message"]

    assert final["status"] == "complete"
    assert "The answer format was not applied" in final["notice"]


# The settings form


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def settings_post(client, conversation, **fields):
    url = reverse("conversation_settings", kwargs={"pk": conversation.pk})
    data = {"model": "mistral-small-latest"} | fields
    return client.post(url, data, HTTP_ACCEPT="application/json")


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("{not json", "This is not valid JSON"),
        ("[1, 2]", "A schema is a JSON object"),
        ('{"type": "strnig"}', "This is not a valid JSON schema: 'strnig' is not valid"),
        ('{"type": "object", "required": "title"}', "(at $.required)"),
    ],
)
def test_settings_refuse_an_invalid_schema_and_store_nothing(signed_in, user, schema, message):
    conversation = Conversation.objects.create(owner=user, model="mistral-small-latest")
    response = settings_post(
        signed_in,
        conversation,
        system_prompt="Changed",
        answer_format="json_schema",
        answer_schema_name="book",
        answer_schema=schema,
    )
    assert response.status_code == 400
    assert message in " ".join(response.json()["errors"]["answer_schema"])
    conversation.refresh_from_db()
    assert (conversation.answer_format, conversation.answer_schema) == ("text", None)
    assert conversation.system_prompt == ""


def test_settings_need_a_schema_and_its_name_for_the_schema_format(signed_in, user):
    conversation = Conversation.objects.create(owner=user, model="mistral-small-latest")
    response = settings_post(signed_in, conversation, answer_format="json_schema")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["answer_schema"] == ["Paste the schema the answers should match."]
    assert errors["answer_schema_name"] == ["Name the schema."]
    response = settings_post(
        signed_in, conversation, answer_format="json_schema", answer_schema_name="a b"
    )
    assert "Letters, digits" in response.json()["errors"]["answer_schema_name"][0]
    conversation.refresh_from_db()
    assert conversation.answer_format == "text"


def test_settings_store_the_format_and_schema(signed_in, user):
    conversation = Conversation.objects.create(owner=user, model="mistral-small-latest")
    response = settings_post(
        signed_in,
        conversation,
        answer_format="json_schema",
        answer_schema_name="book",
        answer_schema=json.dumps(BOOK),
    )
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.answer_format == "json_schema"
    assert (conversation.answer_schema_name, conversation.answer_schema) == ("book", BOOK)
    saved = response.json()["settings"]
    assert saved["answer_format"] == "json_schema"
    assert json.loads(saved["answer_schema"]) == BOOK


async def test_an_answer_in_a_json_fence_is_read_as_json(user, open_socket, fake_mistral):
    """A server that ignores `response_format` often fences the JSON for people."""
    conversation = await conversation_with(user, answer_format="json_object")
    fake_mistral.enqueue(Reply.tokens(["```json\n", '{"title": "Dune"}', "\n```"]))
    final = await ask(await open_socket(user), conversation)
    assert final["notice"] == ""
    assert '<span class="hl-nt">"title"</span>' in final["html"]
    assert "download-json" in final["html"]


def test_a_schema_saved_from_the_settings_is_offered_again(signed_in, user, other_user):
    from conversations.models import SavedSchema

    first = Conversation.objects.create(owner=user, model="mistral-small-latest")
    schema = json.dumps(BOOK)
    response = settings_post(
        signed_in,
        first,
        answer_format="json_schema",
        answer_schema_name="book",
        answer_schema=schema,
        save_schema="on",
    )
    assert response.status_code == 200
    [saved] = response.json()["saved_schemas"]
    assert saved["name"] == "book" and json.loads(saved["schema"]) == BOOK
    # Saved under the same name again: replaced, not doubled.
    settings_post(
        signed_in,
        first,
        answer_format="json_schema",
        answer_schema_name="book",
        answer_schema=json.dumps({**BOOK, "required": ["title"]}),
        save_schema="on",
    )
    assert SavedSchema.objects.filter(owner=user).count() == 1
    # Another conversation's page offers it in the settings dialog.
    second = Conversation.objects.create(owner=user, model="mistral-small-latest")
    page = signed_in.get(reverse("conversation", args=[second.pk])).content.decode()
    assert f'<option value="{saved["id"]}">book</option>' in page
    # Not saved when the format is not a schema, nor without the box ticked.
    settings_post(signed_in, second, answer_format="json_object", answer_schema_name="other")
    assert SavedSchema.objects.filter(owner=user).count() == 1
    # Only its owner can delete it.
    signed_in.force_login(other_user)
    url = reverse("saved_schema_delete", args=[saved["id"]])
    assert signed_in.post(url).status_code == 404
    signed_in.force_login(user)
    response = signed_in.post(url, HTTP_ACCEPT="application/json")
    assert response.json() == {"saved_schemas": []}
    first.refresh_from_db()
    assert first.answer_schema["required"] == ["title"]  # the conversation keeps its copy


def test_saving_past_the_limit_stores_nothing(signed_in, user, monkeypatch):
    from conversations import services
    from conversations.models import SavedSchema

    monkeypatch.setattr(services, "SAVED_SCHEMAS_MAX", 1)
    SavedSchema.objects.create(owner=user, name="old", schema={"type": "object"})
    conversation = Conversation.objects.create(owner=user, model="mistral-small-latest")
    response = settings_post(
        signed_in,
        conversation,
        system_prompt="New",
        answer_format="json_schema",
        answer_schema_name="book",
        answer_schema=json.dumps(BOOK),
        save_schema="on",
    )
    assert response.status_code == 400
    assert response.json()["errors"]["save_schema"] == ["You keep 1 schemas: delete one first."]
    conversation.refresh_from_db()
    assert (conversation.system_prompt, conversation.answer_format) == ("", "text")
