"""Which model server answers which model id, what each one is sent, what the picker offers,
and what `manage.py check` says about a configuration that cannot work. An OpenAI-compatible
server is played by a second fake server that does not check Mistral's schema, so its bodies
are asserted exactly."""

import io

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import reverse

from conversations import checks
from conversations.errors import ModelUnavailable
from conversations.images import prepare_image
from conversations.models import Conversation, Message
from conversations.modelservers import providers
from conversations.modelservers.mistral import build_chat_body
from conversations.modelservers.openai_compat import build_openai_chat_body
from conversations.uploads import attachment_create
from tests import imagefiles
from tests.conftest import LAB_KEY
from tests.fake_mistral import Reply
from tests.helpers import frames_until, is_final, until


def endpoint(name, base_url, api_key="", vision_models=()):
    return {"name": name, "base_url": base_url, "api_key": api_key, "vision_models": vision_models}


# Provider selection


def test_without_a_key_new_conversations_use_the_local_model(offline):
    assert providers.default_model() == "local/smollm2-135m"
    assert providers.provider_for("local/smollm2-135m").kind == "local"
    assert [p.kind for p in providers.registry().providers] == ["local"]


def test_without_a_key_a_mistral_model_is_unavailable_with_a_reason(offline):
    with pytest.raises(ModelUnavailable) as caught:
        providers.provider_for("mistral-small-latest")
    assert caught.value.message == (
        "mistral-small-latest is one of Mistral's models, and this server has no Mistral API "
        "key. Choose another model."
    )


def test_with_a_key_mistral_answers_plain_ids_and_is_the_default(offline, settings):
    settings.MISTRAL_API_KEY = "k"
    provider = providers.provider_for("mistral-small-latest")
    assert (provider.kind, provider.upstream("mistral-small-latest")) == (
        "mistral",
        "mistral-small-latest",
    )
    assert providers.default_model() == "mistral-small-latest"


def test_a_changed_mistral_base_url_enables_mistral_without_a_key(offline, settings):
    settings.MISTRAL_BASE_URL = "http://127.0.0.1:9/v1"
    assert providers.provider_for("codestral-latest").kind == "mistral"


def test_endpoint_models_are_prefixed_by_the_endpoint_name(lab):
    provider = providers.provider_for("lab/llama3.2:1b")
    assert (provider.kind, provider.upstream("lab/llama3.2:1b")) == ("openai", "llama3.2:1b")
    assert providers.provider_for("lab/org/big").upstream("lab/org/big") == "org/big"


def test_chat_default_model_wins(offline, settings):
    settings.CHAT_DEFAULT_MODEL = "lab/llama3.2:1b"
    assert providers.default_model() == "lab/llama3.2:1b"


def test_local_model_turned_off_is_unavailable(offline, settings):
    settings.LOCAL_MODEL_ENABLED = False
    with pytest.raises(ModelUnavailable, match="local model is turned off"):
        providers.provider_for("local/smollm2-135m")


def test_a_misconfigured_endpoint_names_its_problem(offline, settings):
    settings.CHAT_ENDPOINTS = [endpoint("lab", "127.0.0.1:11434")]
    with pytest.raises(ModelUnavailable) as caught:
        providers.provider_for("lab/llama3")
    assert "must be an http:// or https:// URL" in caught.value.message
    assert [p.kind for p in providers.registry().providers] == ["local"]


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([endpoint("Lab", "http://x/v1")], "must start with a letter"),
        ([endpoint("local", "http://x/v1")], "used twice or reserved"),
        ([endpoint("a", "http://x/v1"), endpoint("a", "http://y/v1")], "used twice"),
        ([endpoint("a", "")], "has no base URL: write name=base_url"),
        ([endpoint("a", "ftp://x")], "must be an http:// or https:// URL"),
        ([endpoint("a", "http://user:hunter2@x/v1")], "must not carry a user or password"),
    ],
)
def test_bad_endpoint_entries_are_problems(offline, settings, entries, problem):
    settings.CHAT_ENDPOINTS = entries
    problems = providers.registry().problems
    assert any(problem in message for _, message in problems)
    assert all("hunter2" not in message for _, message in problems)


# What each server is sent


def test_openai_body_renames_the_seed_and_drops_mistral_only_fields():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, _image_part()]},
        {"role": "assistant", "content": "Hello", "prefix": False},
        {"role": "user", "content": "Again"},
    ]
    body = build_openai_chat_body(
        model="llama3.2:1b",
        messages=messages,
        stream=True,
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        random_seed=7,
        safe_prompt=True,
    )
    assert body == {
        "model": "llama3.2:1b",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hi"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                ],
            },
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Again"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "seed": 7,
    }


def test_each_provider_builds_its_own_body(lab, settings):
    settings.MISTRAL_API_KEY = "k"
    assert providers.provider_for("mistral-small-latest").build_body is build_chat_body
    assert providers.provider_for("lab/llama3.2:1b").build_body is build_openai_chat_body
    assert providers.provider_for("local/smollm2-135m").build_body is build_openai_chat_body


def _image_part():
    return {"type": "image_url", "image_url": "data:image/png;base64,iVBO"}


@pytest.mark.django_db(transaction=True)
async def test_endpoint_conversation_streams_with_the_openai_subset(
    user, open_socket, lab, fake_mistral
):
    conversation = await Conversation.objects.acreate(
        owner=user,
        model="lab/llama3.2:1b",
        system_prompt="Be brief.",
        temperature=0.4,
        top_p=0.8,
        max_tokens=64,
        random_seed=3,
        safe_prompt=True,
    )
    lab.enqueue(Reply.tokens(["Bonjour", " !"], usage=(9, 2)))
    lab.enqueue(Reply.tokens(["Greeting"]))  # the title
    socket = await open_socket(user)
    await socket.send_to(
        text_data=orjson.dumps(
            {"type": "send", "conversation": conversation.pk, "text": "Say hi"}
        ).decode()
    )
    frames = await frames_until(socket, is_final)
    final = [f for f in frames if is_final(f)][-1]["message"]
    assert (final["status"], final["text"]) == ("complete", "Bonjour !")
    assert (final["prompt_tokens"], final["completion_tokens"]) == (9, 2)
    assert final["model"] == "lab/llama3.2:1b"
    assert final["author"] == "llama3.2:1b"  # not headed "Mistral"
    started = next(
        f for f in frames if f["type"] == "message" and f["message"]["role"] == "assistant"
    )
    assert started["message"]["author"] == "llama3.2:1b"

    chat, title = await lab.wait_for_requests(2)
    assert chat.headers["authorization"] == f"Bearer {LAB_KEY}"
    assert chat.json == {
        "model": "llama3.2:1b",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hi"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.4,
        "top_p": 0.8,
        "max_tokens": 64,
        "seed": 3,
    }
    assert title.json["model"] == "llama3.2:1b"  # an endpoint names with its own model
    assert "stream_options" not in title.json and title.json["stream"] is False
    assert fake_mistral.requests == []  # nothing went to Mistral
    # The title is stored once its answer has come back, a moment after the request.
    await until(lambda: Conversation.objects.filter(pk=conversation.pk, title="Greeting").exists())


@pytest.mark.django_db(transaction=True)
async def test_mistral_model_without_a_key_fails_plainly(user, open_socket, offline):
    conversation = await Conversation.objects.acreate(owner=user, model="mistral-large-latest")
    socket = await open_socket(user)
    await socket.send_to(
        text_data=orjson.dumps(
            {"type": "send", "conversation": conversation.pk, "text": "Hi"}
        ).decode()
    )
    final = [f for f in await frames_until(socket, is_final) if is_final(f)][-1]["message"]
    assert (final["status"], final["error_code"]) == ("failed", "model_unavailable")
    assert "this server has no Mistral API key" in final["error_text"]
    row = await Message.objects.aget(pk=final["id"])
    assert row.status == Message.Status.FAILED


# Capabilities


async def test_can_see_images_comes_from_each_providers_list(lab, fake_mistral):
    assert await providers.can_see_images("mistral-large-latest") is True
    assert await providers.can_see_images("mistral-medium-3-5") is True  # an alias
    assert await providers.can_see_images("codestral-latest") is False
    assert await providers.can_see_images("lab/llava:7b") is True
    assert await providers.can_see_images("lab/llama3.2:1b") is False
    assert await providers.can_see_images("local/smollm2-135m") is False


@pytest.mark.django_db(transaction=True)
async def test_image_for_the_local_model_is_refused_and_goes_nowhere_else(
    user, open_socket, fake_mistral, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    conversation = await Conversation.objects.acreate(owner=user, model="local/smollm2-135m")
    photo = await sync_to_async(attachment_create)(
        owner=user,
        image=prepare_image(name="p.jpg", data=imagefiles.jpeg(), max_side=1540),
    )
    socket = await open_socket(user)
    frame = {"type": "send", "conversation": conversation.pk, "text": "What is it?"}
    await socket.send_to(text_data=orjson.dumps(frame | {"attachments": [photo.pk]}).decode())
    final = [f for f in await frames_until(socket, is_final) if is_final(f)][-1]["message"]
    assert (final["status"], final["error_code"]) == ("failed", "no_vision_model")
    assert final["error_text"] == (
        "local/smollm2-135m cannot see images. Choose a model marked “vision” in the model list."
    )
    # Mistral is configured and can see, but the user chose the local model.
    assert [r for r in fake_mistral.requests if r.path.endswith("/chat/completions")] == []


@pytest.mark.django_db(transaction=True)
async def test_picker_lists_every_provider_with_capabilities(async_client, user, lab, fake_mistral):
    await async_client.aforce_login(user)
    data = (await async_client.get(reverse("models_json"))).json()
    models = {m["id"]: m for m in data["models"]}
    assert data["problems"] == []
    assert models["mistral-large-latest"]["vision"] is True
    assert models["mistral-large-latest"]["provider"] == "Mistral"
    assert models["lab/llava:7b"]["vision"] is True
    assert models["lab/llama3.2:1b"] | {"description": ""} == {
        "id": "lab/llama3.2:1b",
        "name": "llama3.2:1b",
        "description": "",
        "provider": "lab",
        "author": "llama3.2:1b",  # an endpoint's answers are headed by its model, not "Mistral"
        "safe_prompt": False,  # Mistral's option alone: not offered for another server
        "local": False,
        "vision": False,
        "function_calling": False,
        # The server does not say: a conservative window, marked as assumed (never 0).
        "max_context_length": 4096,
        "context_assumed": True,
    }
    assert models["lab/org/big"]["max_context_length"] == 32768
    assert models["lab/org/big"]["context_assumed"] is False
    local = models["local/smollm2-135m"]
    assert local["local"] is True
    assert (local["author"], models["mistral-large-latest"]["author"]) == (
        "Small local model",
        "Mistral",
    )
    assert local["name"] == "SmolLM2 135M — small local model, runs on this server"
    assert (local["vision"], local["max_context_length"]) == (False, 2048)


@pytest.mark.django_db(transaction=True)
async def test_picker_says_which_provider_is_unreachable_or_refuses_its_key(
    async_client, user, lab, fake_mistral, settings
):
    settings.CHAT_ENDPOINTS = [
        endpoint("lab", lab.base_url, "wrong-key-456"),
        endpoint("gone", "http://127.0.0.1:9/v1"),
        endpoint("Bad", "http://x/v1"),
    ]
    await async_client.aforce_login(user)
    response = await async_client.get(reverse("models_json"))
    data = response.json()
    problems = {p["provider"]: p["message"] for p in data["problems"]}
    assert problems["lab"] == "The model server rejected the API key (401). Check its API key."
    assert problems["gone"].startswith("Could not connect to the model server at 127.0.0.1:")
    assert "must start with a letter" in problems["Bad"]
    assert "mistral-large-latest" in {m["id"] for m in data["models"]}  # the others still work
    assert b"wrong-key-456" not in response.content


# manage.py check


def run_check(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("check", *args, stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def run_online_check() -> str:
    """The network probe alone, as an operator asks for it."""
    return run_check("--deploy", "--tag", "model_servers_online")


def test_check_passes_with_the_default_setup(offline):
    assert checks.check_model_servers() == []
    assert checks.check_model_servers_online() == []
    assert "no issues" in run_check()


def test_check_reports_a_malformed_base_url_as_an_error(offline, settings):
    settings.CHAT_ENDPOINTS = [endpoint("lab", "localhost:11434/v1")]
    with pytest.raises(SystemCheckError) as caught:
        run_check()
    assert "(conversations.E001)" in str(caught.value)
    assert "The base URL of CHAT_ENDPOINTS entry 'lab' must be an http://" in str(caught.value)


def test_check_reports_an_unreachable_server(offline, settings):
    settings.MISTRAL_API_KEY = "sk-unreachable-789"
    settings.MISTRAL_BASE_URL = "http://127.0.0.1:9/v1"
    output = run_online_check()
    assert (
        "(conversations.W003) The model server Mistral (http://127.0.0.1:9/v1) cannot be "
        "reached: Could not connect to the model server at 127.0.0.1:" in output
    )
    assert "sk-unreachable-789" not in output


def test_check_reports_a_wrong_key(offline, lab, settings):
    settings.CHAT_ENDPOINTS = [endpoint("lab", lab.base_url, "wrong-key-456")]
    output = run_online_check()
    assert "(conversations.W002) The model server lab" in output
    assert "refused its API key: The model server rejected the API key (401)." in output
    assert "HINT: Check CHAT_ENDPOINT_LAB_API_KEY." in output
    assert "wrong-key-456" not in output


def test_check_accepts_a_right_key(offline, lab, settings):
    settings.CHAT_ENDPOINTS = [settings.CHAT_ENDPOINTS[0] | {"context_length": 8192}]
    assert checks.check_model_servers_online() == []
    assert [r.path for r in lab.requests] == ["/v1/models"]


def test_check_warns_when_a_server_does_not_say_its_context_window(offline, lab):
    [warning] = checks.check_model_servers_online()
    assert warning.id == "conversations.W004"
    assert "llama3.2:1b" in warning.msg and "4,096 tokens are assumed" in warning.msg
    assert "org/big" not in warning.msg  # vLLM's max_model_len says it
    assert warning.hint == "Set CHAT_ENDPOINT_LAB_CONTEXT_LENGTH to the window it serves."


@pytest.mark.django_db
def test_only_a_deploy_check_contacts_the_model_servers(offline, lab, settings):
    settings.CHAT_ENDPOINTS = [endpoint("lab", lab.base_url, "wrong-key-456")]
    call_command("migrate", verbosity=0, skip_checks=False)  # as `manage.py migrate` runs
    assert lab.requests == []
    assert "no issues" in run_check()
    assert lab.requests == []
    assert "(conversations.W002)" in run_check("--deploy")
    assert [r.path for r in lab.requests] == ["/v1/models"]


def test_check_warns_about_a_remote_endpoint_without_a_key(offline, settings):
    settings.CHAT_ENDPOINTS = [endpoint("cloud", "https://llm.example.invalid/v1")]
    assert [m.id for m in checks.check_model_servers()] == ["conversations.W001"]
    assert [m.id for m in checks.check_model_servers_online()] == ["conversations.W003"]


def test_check_needs_some_model_server(offline, settings):
    settings.LOCAL_MODEL_ENABLED = False
    assert [m.id for m in checks.check_model_servers()] == ["conversations.E004"]
