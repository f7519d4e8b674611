"""An OpenAI-compatible server as self-hosters run one: bodies it reads, a context window it
may not report, usage it does not send in a stream, and labels that name it. The fake
server plays it here (its faults on demand); tests/test_llama_server.py runs the real one."""

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from conversations import checks
from conversations.images import prepare_image
from conversations.models import ApiCall, Conversation
from conversations.modelservers import ollama as ollama_api
from conversations.modelservers import providers
from conversations.modelservers.openai_compat import build_openai_chat_body
from conversations.uploads import attachment_create
from tests import imagefiles
from tests.fake_mistral import Reply, ollama_show
from tests.helpers import amessage_create, frames_until, is_final

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "lab/llama3.2:1b"


async def ask(socket, conversation: Conversation, text: str, **extra) -> dict:
    frame = {"type": "send", "conversation": conversation.pk, "text": text, **extra}
    await socket.send_to(text_data=orjson.dumps(frame).decode())
    return [f for f in await frames_until(socket, is_final) if is_final(f)][-1]["message"]


def chat_requests(server) -> list:
    """The chat requests the server got (model lists aside); the answer has ended by now."""
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


def windowed(settings, lab, tokens: int) -> None:
    settings.CHAT_ENDPOINTS = [settings.CHAT_ENDPOINTS[0] | {"context_length": tokens}]


def test_text_parts_go_to_an_openai_compatible_server_as_one_string():
    body = build_openai_chat_body(
        model="m",
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "A doc"}, {"type": "text", "text": "Q?"}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "See"},
                    {"type": "image_url", "image_url": "data:x"},
                ],
            },
        ],
        stream=True,
    )
    assert body["messages"][0]["content"] == "A doc\n\nQ?"  # llama.cpp drops or crashes on parts
    assert body["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:x"},
    }


async def test_a_conversation_longer_than_the_window_sends_its_newest_turns_and_says_so(
    user, open_socket, offline, lab, settings
):
    windowed(settings, lab, 2048)
    conversation = await Conversation.objects.acreate(owner=user, model=MODEL)
    for n in range(10):
        await amessage_create(conversation=conversation, role="user", text=f"q{n} " * 120)
        await amessage_create(conversation=conversation, role="assistant", text=f"a{n} " * 120)
    socket = await open_socket(user)
    final = await ask(socket, conversation, "And now?")

    assert final["status"] == "complete"
    assert "left out to fit lab/llama3.2:1b's context window of 2,048 tokens" in final["notice"]
    [request] = chat_requests(lab)
    sent = request.json["messages"]
    assert sent[0]["role"] == "user" and sent[-1]["content"] == "And now?"
    assert len(sent) < 21  # the oldest turns stayed home
    assert sent[-2]["content"].startswith("a9 ")  # the newest ones went


async def test_a_question_longer_than_the_window_fails_naming_the_limit_and_sends_nothing(
    user, open_socket, offline, lab, settings
):
    windowed(settings, lab, 2048)
    conversation = await Conversation.objects.acreate(owner=user, model=MODEL)
    socket = await open_socket(user)
    final = await ask(socket, conversation, "lorem ipsum dolor " * 1500)

    assert (final["status"], final["error_code"]) == ("failed", "context_too_long")
    assert "2,048 tokens" in final["error_text"]
    assert chat_requests(lab) == []


async def test_an_answer_without_reported_usage_gets_an_estimate_marked_as_such(
    user, open_socket, offline, lab, client
):
    lab.stream_usage = False  # as llama.cpp's server streams
    conversation = await Conversation.objects.acreate(owner=user, model=MODEL)
    lab.enqueue(Reply.tokens(["Hello", " there", " friend"]))
    socket = await open_socket(user)
    final = await ask(socket, conversation, "Say hello to my friend, please.")

    assert final["status"] == "complete" and final["usage_estimated"] is True
    assert final["prompt_tokens"] > 5 and final["completion_tokens"] > 0
    call = await ApiCall.objects.aget(message_id=final["id"])
    assert (call.prompt_tokens, call.completion_tokens, call.usage_estimated) == (
        final["prompt_tokens"],
        final["completion_tokens"],
        True,
    )
    await sync_to_async(client.force_login)(user)
    page = await sync_to_async(client.get)(f"/c/{conversation.pk}/")
    assert "(estimated)" in page.content.decode()


async def test_a_refused_image_question_does_not_refuse_later_questions(
    user, open_socket, offline, lab, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    conversation = await Conversation.objects.acreate(owner=user, model=MODEL)
    photo = await sync_to_async(attachment_create)(
        owner=user, image=prepare_image(name="p.jpg", data=imagefiles.jpeg(), max_side=1540)
    )
    socket = await open_socket(user)
    refused = await ask(socket, conversation, "What is it?", attachments=[photo.pk])
    assert refused["error_code"] == "no_vision_model"

    final = await ask(socket, conversation, "Then tell me a joke.")
    assert (final["status"], final["notice"]) == ("complete", "")
    [request] = chat_requests(lab)
    # The refused question goes no further, nor twice: one question, as text.
    assert request.json["messages"] == [{"role": "user", "content": "Then tell me a joke."}]


async def test_earlier_images_are_left_out_for_a_model_without_eyes(
    user, open_socket, offline, lab, settings, tmp_path
):
    """A conversation about a photo, answered by a model that could see, moved on to a model
    that cannot: its next questions go without the photo, and say so."""
    settings.MEDIA_ROOT = tmp_path
    conversation = await Conversation.objects.acreate(owner=user, model=MODEL)
    question = await amessage_create(conversation=conversation, role="user", text="")
    photo = await sync_to_async(attachment_create)(
        owner=user, image=prepare_image(name="p.jpg", data=imagefiles.jpeg(), max_side=1540)
    )
    photo.message = question
    await photo.asave()
    await amessage_create(conversation=conversation, role="assistant", text="A cat.")
    socket = await open_socket(user)
    final = await ask(socket, conversation, "Write a poem about it.")

    assert final["status"] == "complete"
    assert final["notice"] == "1 earlier image left out: no model here can see."
    [request] = chat_requests(lab)
    assert request.json["messages"] == [
        {"role": "user", "content": "[an image, no longer included]"},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "Write a poem about it."},
    ]


async def test_with_only_an_endpoint_new_chats_start_on_a_model_it_lists(offline, lab, settings):
    settings.LOCAL_MODEL_ENABLED = False
    await providers.model_catalog()  # what the picker asks as a page opens
    assert providers.default_model() == "lab/llama3.2:1b"


# Ollama: its /v1/models says no window; its own /api/show does, when the Modelfile sets one


@pytest.fixture
def ollama(lab):
    """The lab endpoint as Ollama serves it: llama3.2:1b's Modelfile sets num_ctx 2048 (it
    was trained for 131,072); llava:7b's sets none, so Ollama serves its default unsaid."""
    lab.models = [
        {"id": "llama3.2:1b", "object": "model", "created": 1, "owned_by": "library"},
        {"id": "llava:7b", "object": "model", "created": 1, "owned_by": "library"},
    ]
    lab.ollama = {
        "llama3.2:1b": ollama_show(num_ctx=2048, trained=131072),
        "llava:7b": ollama_show(num_ctx=None, arch="clip", trained=32768),
    }
    return lab


async def picker(async_client, user) -> dict:
    """The models the picker offers, by id, as a page asks for them."""
    await async_client.aforce_login(user)
    data = (await async_client.get(reverse("models_json"))).json()
    assert data["problems"] == []
    return {m["id"]: m for m in data["models"]}


def show_requests(server) -> list:
    return [r.json["model"] for r in server.requests if r.path == "/api/show"]


async def test_ollama_models_get_the_window_their_modelfile_serves_not_their_training_one(
    async_client, user, offline, ollama
):
    models = await picker(async_client, user)
    served = models["lab/llama3.2:1b"]
    assert (served["max_context_length"], served["context_assumed"]) == (2048, False)
    # No num_ctx: Ollama's default is served and not said, so the picker marks a guess.
    unsaid = models["lab/llava:7b"]
    assert (unsaid["max_context_length"], unsaid["context_assumed"]) == (4096, True)

    await picker(async_client, user)  # a second page, and every question, reads the same cards
    assert sorted(show_requests(ollama)) == ["llama3.2:1b", "llava:7b"]  # once per model


async def test_a_conversation_longer_than_ollamas_served_window_is_cut_to_it(
    user, open_socket, offline, ollama
):
    conversation = await Conversation.objects.acreate(owner=user, model=MODEL)
    for n in range(10):
        await amessage_create(conversation=conversation, role="user", text=f"q{n} " * 120)
        await amessage_create(conversation=conversation, role="assistant", text=f"a{n} " * 120)
    socket = await open_socket(user)
    final = await ask(socket, conversation, "And now?")

    assert final["status"] == "complete"
    assert "left out to fit lab/llama3.2:1b's context window of 2,048 tokens" in final["notice"]
    [request] = chat_requests(ollama)
    assert len(request.json["messages"]) < 21
    assert request.json["messages"][-1]["content"] == "And now?"


async def test_one_failing_ollama_model_leaves_the_others_and_the_list_whole(
    async_client, user, offline, ollama
):
    ollama.ollama = {
        "llama3.2:1b": Reply.server_error(500),
        "llava:7b": ollama_show(num_ctx=8192),
    }
    models = await picker(async_client, user)
    failed, told = models["lab/llama3.2:1b"], models["lab/llava:7b"]
    assert (failed["max_context_length"], failed["context_assumed"]) == (4096, True)
    assert (told["max_context_length"], told["context_assumed"]) == (8192, False)


async def test_an_ollama_that_does_not_answer_its_show_still_lists_its_models(
    async_client, user, offline, ollama, monkeypatch
):
    monkeypatch.setattr(ollama_api, "LOOKUP_DEADLINE", 0.3)
    ollama.ollama = {"llama3.2:1b": Reply.stall(), "llava:7b": ollama_show(num_ctx=8192)}
    models = await picker(async_client, user)
    assert models["lab/llama3.2:1b"]["context_assumed"] is True
    assert models["lab/llava:7b"]["max_context_length"] == 8192


async def test_servers_that_state_their_windows_are_asked_nothing_more(
    async_client, user, offline, ollama, settings
):
    settings.CHAT_ENDPOINTS = [settings.CHAT_ENDPOINTS[0] | {"context_length": 16384}]
    models = await picker(async_client, user)
    assert models["lab/llama3.2:1b"]["max_context_length"] == 16384  # the operator's word wins
    ollama.ollama = None  # and a vLLM, whose list says each model's window
    ollama.models = [
        {"id": "org/big", "object": "model", "owned_by": "vllm", "max_model_len": 32768}
    ]
    settings.CHAT_ENDPOINTS = [settings.CHAT_ENDPOINTS[0] | {"context_length": 0}]
    assert (await picker(async_client, user))["lab/org/big"]["max_context_length"] == 32768
    assert {r.path for r in ollama.requests} == {"/v1/models"}


def test_check_warns_only_about_ollama_models_whose_window_is_not_said(offline, ollama):
    [warning] = checks.check_model_servers_online()
    assert warning.id == "conversations.W004"
    assert "(llava:7b)" in warning.msg and "4,096 tokens are assumed" in warning.msg
    assert warning.hint == "Set CHAT_ENDPOINT_LAB_CONTEXT_LENGTH to the window it serves."

    ollama.ollama["llava:7b"] = ollama_show(num_ctx=4096)
    assert checks.check_model_servers_online() == []
