"""The app against llama.cpp's own OpenAI-compatible server (tests/llama_server.py), run on
the GGUF the project ships with a 2,048-token window: the journeys a person takes with a
model served that way, end to end through the socket, the pages and the rows.

The model is a 135M one: answers are asserted by their shape and by what the rows record,
and by content only loosely. Answers are kept short (max_tokens), and each server variant
is started once for the whole run: its own chat template with no alias (its model id is a
long file path), and `--chat_format chatml` with an alias.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from channels.db import database_sync_to_async
from django.urls import reverse

from conversations.models import ApiCall, Conversation, Message
from conversations.modelservers import providers
from conversations.modelservers.local_model import find_model_file
from tests.helpers import frames_until, is_final, link_in_order, streamed_text, until
from tests.llama_server import CHATML, CONTEXT_TOKENS, OWN_TEMPLATE, LlamaServer, model_in_hf_cache
from tests.test_document_chat import answer_of, ingested

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINT = "llama"
# A real model on a shared CPU, possibly behind the previous test's title request.
ANSWER_WITHIN = 60.0

FACT = "The access code for the north vault is 9931, changed every Monday by the guard."
NOTES = (
    "Operations notes for the first quarter.\n\n"
    "Revenue grew by twelve percent in the first quarter of the year.\n\n"
    "The Lyon office opened in March with forty engineers on staff.\n\n"
    f"{FACT}\n\n"
    "The risks are currency exchange, supply chains and hiring in a tight market.\n"
)
QUESTION = "What is the access code for the north vault?"


@dataclass(frozen=True)
class Served:
    """A llama.cpp server as the app knows it: the model id people pick, and the server."""

    model: str  # "llama/<the server's model id>"
    server: LlamaServer

    @property
    def upstream(self) -> str:
        return self.server.model_id


@pytest.fixture(scope="session")
def llama_servers(tmp_path_factory):
    """Starts a variant's server the first time a test asks for it; all are stopped at the
    end of the run. A server that failed to start fails every test that needs it, at once."""
    root = tmp_path_factory.mktemp("llama-server")
    model = model_in_hf_cache(find_model_file(), root / "models")
    started: dict[str, LlamaServer | Exception] = {}

    def server_for(variant) -> LlamaServer:
        if variant.name not in started:
            try:
                started[variant.name] = LlamaServer(
                    variant, model=model, log_path=root / f"{variant.name}.log"
                ).start()
            except RuntimeError as exc:
                started[variant.name] = exc
        server = started[variant.name]
        if isinstance(server, Exception):
            pytest.fail(str(server), pytrace=False)
        return server

    yield server_for
    for server in started.values():
        if isinstance(server, LlamaServer):
            server.stop()


def endpoint(server: LlamaServer, *, context_length: int) -> dict:
    """A CHAT_ENDPOINTS entry as chatsite/settings.py builds it from the environment
    (context_length 0: CHAT_ENDPOINT_LLAMA_CONTEXT_LENGTH unset)."""
    return {
        "name": ENDPOINT,
        "base_url": server.base_url,
        "api_key": "",
        "vision_models": [],
        "context_length": context_length,
    }


def _serve(variant, llama_servers, settings, tmp_path):
    """The site with no Mistral and one endpoint, the llama.cpp server, its window set."""
    server = llama_servers(variant)
    settings.MISTRAL_API_KEY = ""
    settings.MISTRAL_BASE_URL = providers.MISTRAL_DEFAULT_BASE_URL
    settings.MISTRAL_MAX_RETRIES = 0  # a failure shows its own cause, not a retry's
    settings.CHAT_DEFAULT_MODEL = ""
    settings.CHAT_ENDPOINTS = [endpoint(server, context_length=CONTEXT_TOKENS)]
    settings.MEDIA_ROOT = tmp_path
    return Served(f"{ENDPOINT}/{server.model_id}", server)


@pytest.fixture
def _server_log_on_failure():
    """What the server wrote during the test, printed at teardown: pytest shows it only
    when the test failed."""
    watched: list[tuple[LlamaServer, int]] = []
    yield lambda server: watched.append((server, server.log_size()))
    for server, offset in watched:
        print(server.log_since(offset))


@pytest.fixture(params=[OWN_TEMPLATE, CHATML], ids=lambda variant: variant.name)
def llama(request, llama_servers, settings, tmp_path, _server_log_on_failure):
    """Each variant in turn: the GGUF's own chat template (no alias), then chatml."""
    served = _serve(request.param, llama_servers, settings, tmp_path)
    _server_log_on_failure(served.server)
    return served


@pytest.fixture
def llama_own(llama_servers, settings, tmp_path, _server_log_on_failure):
    """The GGUF's own chat template, no alias: the model id is the file's long path."""
    served = _serve(OWN_TEMPLATE, llama_servers, settings, tmp_path)
    _server_log_on_failure(served.server)
    return served


@pytest.fixture
def llama_chatml(llama_servers, settings, tmp_path, _server_log_on_failure):
    """`--chat_format chatml`, the model aliased `smollm2-chatml`."""
    served = _serve(CHATML, llama_servers, settings, tmp_path)
    _server_log_on_failure(served.server)
    return served


async def new_conversation(user, llama: Served, **fields) -> Conversation:
    """Short, reproducible answers unless a test asks otherwise."""
    fields = {"max_tokens": 32, "temperature": 0.2, "random_seed": 7} | fields
    return await Conversation.objects.acreate(owner=user, model=llama.model, **fields)


async def send(socket, text: str, *, conversation: int | None, **extra) -> None:
    frame = {"type": "send", "conversation": conversation, "text": text} | extra
    await socket.send_to(text_data=orjson.dumps(frame).decode())


async def ask(socket, text: str, *, conversation: int | None, within=ANSWER_WITHIN, **extra):
    """Send a question; every frame until its answer ends. A refused frame fails at once."""
    await send(socket, text, conversation=conversation, **extra)
    frames = await frames_until(
        socket, lambda f: is_final(f) or f["type"] == "error", within=within
    )
    assert frames[-1]["type"] != "error", f"the question was refused: {frames[-1]}"
    return frames


def sent_chars(call: ApiCall) -> int:
    """How much text the request carried, from its summary (texts are stored as lengths)."""
    return sum(
        part.get("chars", 0) for message in call.request["messages"] for part in message["parts"]
    )


def chat_call(answer_id: int):
    return lambda: ApiCall.objects.filter(kind=ApiCall.Kind.CHAT, message_id=answer_id).first()


# Streaming


async def test_question_streams_deltas_then_a_complete_answer(user, open_socket, llama):
    conversation = await new_conversation(user, llama)
    socket = await open_socket(user)
    frames = await ask(socket, "Name three colours of the rainbow.", conversation=conversation.pk)

    answer = answer_of(frames)
    deltas = [f for f in frames if f["type"] == "delta" and f["message"] == answer["id"]]
    assert len(deltas) >= 3  # it streamed, not one block at the end
    assert answer["status"] == "complete", answer
    assert answer["text"].strip()
    assert streamed_text(frames, answer["id"]) == answer["text"]
    stored = await Message.objects.aget(pk=answer["id"])
    assert (stored.status, stored.text, stored.model) == ("complete", answer["text"], llama.model)


async def test_stop_mid_answer_keeps_the_text_and_frees_the_server(user, open_socket, llama_own):
    # Greedy, this prompt runs to max_tokens: unstopped, the server would write for half a
    # minute and, one request at a time, hold up every later question meanwhile.
    story = await new_conversation(user, llama_own, max_tokens=1500, temperature=0.0)
    socket = await open_socket(user)
    await send(
        socket,
        "Write a long story about a lighthouse keeper, at least 1500 words, in many chapters.",
        conversation=story.pk,
    )
    frames = await frames_until(
        socket, lambda f: f["type"] in ("delta", "error") or is_final(f), within=ANSWER_WITHIN
    )
    assert frames[-1]["type"] == "delta", frames[-1]
    await socket.send_to(
        text_data=orjson.dumps({"type": "stop", "conversation": story.pk}).decode()
    )
    frames += await frames_until(socket, is_final, within=10)

    answer = answer_of(frames)
    assert answer["status"] == "stopped", answer
    assert answer["text"] and answer["text"].startswith(streamed_text(frames, answer["id"]))
    stored = await Message.objects.aget(pk=answer["id"])
    assert (stored.status, stored.text) == ("stopped", answer["text"])

    # The server is free again: a short question is answered in seconds, not after the story.
    quick = await new_conversation(user, llama_own, max_tokens=16)
    frames = await ask(socket, "Say hello.", conversation=quick.pk, within=15)
    assert answer_of(frames)["status"] == "complete"


# Documents


async def test_document_question_sends_the_whole_document_and_completes(user, open_socket, llama):
    document = await ingested(user, "notes.txt", NOTES.encode())
    conversation = await new_conversation(user, llama, max_tokens=48)
    socket = await open_socket(user)
    frames = await ask(socket, QUESTION, conversation=conversation.pk, documents=[document.pk])

    answer = answer_of(frames)
    # Not failed with "The model server ended the answer before it was complete."
    assert answer["status"] == "complete", answer
    assert "Sent the full text of 1 document" in answer["notice"], answer["notice"]
    # The request carried the document: far more than the question's dozen tokens.
    assert answer["prompt_tokens"] > 60
    call = await until(chat_call(answer["id"]), within=5)
    assert call.prompt_tokens == answer["prompt_tokens"]
    assert sent_chars(call) >= len(NOTES) + len(QUESTION)
    # What it says is left alone: a 135M model often talks about the document instead.
    assert answer["text"].strip()


async def test_long_document_question_sends_passages_that_fit_the_window(
    user, open_socket, llama_chatml
):
    filler = (
        "This section of the facilities handbook describes the routine maintenance of the "
        "warehouse lighting, the cleaning rota for the loading bays, the parking rules for "
        "visitors and the canteen menu for the week, in some detail."
    )
    paragraphs = [f"Section {i}. {filler}" for i in range(1, 141)]  # about 5,500 words
    paragraphs[96] = f"Section 97. {filler} {FACT}"
    text = "\n\n".join(paragraphs)
    document = await ingested(user, "handbook.txt", text.encode())
    assert document.tokens > 2 * CONTEXT_TOKENS  # far too long to go whole
    conversation = await new_conversation(user, llama_chatml, max_tokens=48)
    socket = await open_socket(user)
    frames = await ask(socket, QUESTION, conversation=conversation.pk, documents=[document.pk])

    answer = answer_of(frames)
    assert answer["status"] == "complete", answer
    assert "most relevant passage" in answer["notice"], answer["notice"]  # one fits, or more
    call = await until(chat_call(answer["id"]), within=5)
    assert sent_chars(call) < len(text) / 2  # passages, not the whole handbook


# The context window


async def test_conversation_longer_than_the_window_leaves_out_earlier_messages(
    user, open_socket, llama_own
):
    conversation = await new_conversation(user, llama_own)
    turns = []
    for i in range(1, 9):  # eight exchanges of ~700 tokens: well over 2,048 together
        question = f"Question {i}. " + " ".join(
            f"Tell me about the lighthouse on island {i}, its keeper number {i * 10 + j} "
            "and the ships it guided."
            for j in range(12)
        )
        reply = f"Answer {i}. " + " ".join(
            f"The lighthouse on island {i} was kept by keeper {i * 10 + j}, who logged "
            f"{j + 3} ships a night in the winter of {1900 + i * 3 + j}."
            for j in range(16)
        )
        turns += [
            Message(conversation=conversation, role=Message.Role.USER, text=question),
            Message(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                text=reply,
                html=f"<p>{reply}</p>",
                model=llama_own.model,
            ),
        ]
    await Message.objects.abulk_create(turns)
    await database_sync_to_async(link_in_order)(conversation.pk)
    socket = await open_socket(user)
    frames = await ask(socket, "Which island did I ask about first?", conversation=conversation.pk)

    answer = answer_of(frames)
    assert answer["status"] == "complete", answer
    assert "left out" in answer["notice"].lower(), answer["notice"]
    assert 0 < answer["prompt_tokens"] <= CONTEXT_TOKENS
    stored = await Message.objects.aget(pk=answer["id"])
    assert (stored.status, stored.notice) == ("complete", answer["notice"])


async def test_question_longer_than_the_window_fails_naming_the_limit(user, open_socket, llama_own):
    conversation = await new_conversation(user, llama_own)
    question = " ".join(
        f"Item {i}: harbour crane {i * 7} needs new cables, paint and a safety check."
        for i in range(1, 400)
    )[:12_000]
    socket = await open_socket(user)
    frames = await ask(socket, question, conversation=conversation.pk)

    answer = answer_of(frames)
    assert (answer["status"], answer["error_code"]) == ("failed", "context_too_long")
    assert "2,048" in answer["error_text"] or "2048" in answer["error_text"], answer["error_text"]
    stored = await Message.objects.aget(pk=answer["id"])
    assert (stored.status, stored.error_code, stored.text) == ("failed", "context_too_long", "")


# Usage


async def test_usage_is_counted_when_the_server_reports_none(user, open_socket, llama_chatml):
    conversation = await new_conversation(user, llama_chatml)
    socket = await open_socket(user)
    frames = await ask(socket, "Name a fruit.", conversation=conversation.pk)

    answer = answer_of(frames)
    assert answer["status"] == "complete", answer
    stored = await Message.objects.aget(pk=answer["id"])
    assert stored.prompt_tokens > 0 and stored.completion_tokens > 0
    assert stored.usage_estimated is True
    assert (answer["prompt_tokens"], answer["completion_tokens"]) == (
        stored.prompt_tokens,
        stored.completion_tokens,
    )
    call = await until(chat_call(answer["id"]), within=5)
    assert (call.prompt_tokens, call.completion_tokens, call.usage_estimated) == (
        stored.prompt_tokens,
        stored.completion_tokens,
        True,
    )


# How the model is named and described


def short_name(upstream: str) -> str:
    """What any fair label of the model contains: an alias as it is; of a file path, the
    file's name up to its first dot (`SmolLM2-135M-Instruct`)."""
    return Path(upstream).name.split(".")[0]


async def test_conversation_page_names_the_model_not_mistral(
    user, open_socket, async_client, llama
):
    conversation = await new_conversation(user, llama)
    socket = await open_socket(user)
    answer = answer_of(await ask(socket, "Say hello.", conversation=conversation.pk))
    await async_client.aforce_login(user)
    response = await async_client.get(reverse("conversation", kwargs={"pk": conversation.pk}))

    page = response.content.decode()
    assert f'id="message-{answer["id"]}"' in page
    [name] = re.findall(r'<span class="msg-author-name">([^<]*)</span>', page)
    assert name != "Mistral"
    assert short_name(llama.upstream) in name, name
    assert f'placeholder="Message {name}…"' in page


async def test_model_list_gives_the_configured_context_length(async_client, user, llama_chatml):
    await async_client.aforce_login(user)
    data = (await async_client.get(reverse("models_json"))).json()

    models = {m["id"]: m for m in data["models"]}
    listed = models[llama_chatml.model]
    assert (listed["vision"], listed["max_context_length"]) == (False, CONTEXT_TOKENS)
    assert not listed.get("context_assumed")
    assert data["problems"] == []


async def test_model_list_without_a_context_setting_assumes_a_small_window(
    async_client, user, llama_own, settings
):
    settings.CHAT_ENDPOINTS = [endpoint(llama_own.server, context_length=0)]
    await async_client.aforce_login(user)
    data = (await async_client.get(reverse("models_json"))).json()

    listed = {m["id"]: m for m in data["models"]}[llama_own.model]
    assert listed["vision"] is False
    # llama-cpp-python's server does not say its window: a conservative guess, and said so.
    assert 0 < (listed["max_context_length"] or 0) <= 4096, listed
    assert listed["context_assumed"] is True


# Long model ids


async def test_model_named_by_a_long_path_is_accepted_and_answers(user, open_socket, llama_own):
    assert len(llama_own.model) > 100  # llama.cpp's server names an unaliased model by its path
    socket = await open_socket(user)
    frames = await ask(socket, "Say hello.", conversation=None, model=llama_own.model)

    answer = answer_of(frames)
    assert answer["status"] == "complete", answer
    assert answer["text"].strip()
    assert answer["model"] == llama_own.model
    conversation = await Conversation.objects.aget(pk=answer["conversation"])
    assert conversation.model == llama_own.model
