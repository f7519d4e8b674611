"""The answer pipeline against the fake model server: what every tab sees and what the
database holds, for a good stream and for each way the model server can fail."""

import threading
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from conversations import answers
from conversations.live import broadcast, generation, request_plan
from conversations.models import ApiCall, Conversation, Message
from tests.fake_mistral import Reply
from tests.helpers import (
    amessage_create,
    frames_during,
    frames_until,
    is_final,
    streamed_text,
    until,
)

pytestmark = pytest.mark.django_db(transaction=True)


def send(text: str, conversation: int | None = None, **extra) -> str:
    return orjson.dumps(
        {"type": "send", "conversation": conversation, "text": text, **extra}
    ).decode()


async def ask(socket, text: str, conversation: int | None = None) -> list[dict]:
    """Send a question and collect frames up to the answer's final `message` frame."""
    await socket.send_to(text_data=send(text, conversation))
    return await frames_until(socket, is_final)


def answer_of(frames: list[dict]) -> dict:
    return [f for f in frames if is_final(f)][-1]["message"]


async def test_send_streams_answer_to_the_tab_and_stores_it(user, open_socket, fake_mistral):
    fake_mistral.enqueue(Reply.tokens(["Hel", "lo", " there", "!"], usage=(12, 4)))
    socket = await open_socket(user)
    frames = await ask(socket, "Say hello")

    kinds = [f["type"] for f in frames]
    assert kinds[:3] == ["conversation", "message", "message"]
    question, pending = frames[1]["message"], frames[2]["message"]
    assert (question["role"], question["text"], question["status"]) == (
        "user",
        "Say hello",
        "complete",
    )
    assert (pending["role"], pending["status"]) == ("assistant", "pending")
    final = answer_of(frames)
    assert streamed_text(frames, final["id"]) == "Hello there!"
    assert final["status"] == "complete"
    assert final["html"].strip() == "<p>Hello there!</p>"

    row = await Message.objects.aget(pk=final["id"])
    assert row.text == "Hello there!"
    assert row.status == Message.Status.COMPLETE
    assert (row.prompt_tokens, row.completion_tokens) == (12, 4)
    assert row.finish_reason == "stop"
    assert row.model == "mistral-small-latest"
    assert row.time_to_first_token_ms is not None
    assert row.duration_ms >= row.time_to_first_token_ms


async def test_request_carries_history_system_prompt_and_settings(user, open_socket, fake_mistral):
    conversation = await Conversation.objects.acreate(
        owner=user,
        model="mistral-large-latest",
        system_prompt="Answer in French.",
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        random_seed=7,
        safe_prompt=True,
    )
    await amessage_create(conversation=conversation, role="user", text="Hi")
    await amessage_create(conversation=conversation, role="assistant", text="Salut")
    await amessage_create(conversation=conversation, role="assistant", text="", status="failed")
    socket = await open_socket(user)
    await ask(socket, "Ça va ?", conversation.pk)

    body = [r for r in fake_mistral.requests if r.path.endswith("/chat/completions")][0].json
    assert body == {
        "model": "mistral-large-latest",
        "stream": True,
        "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Salut"},
            {"role": "user", "content": "Ça va ?"},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "random_seed": 7,
        "safe_prompt": True,
    }


async def test_answer_reaches_every_tab_of_the_conversation(user, open_socket, fake_mistral):
    gate = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["one ", "two ", "three"], gate=gate))
    first = await open_socket(user)
    await first.send_to(text_data=send("count"))
    frames = await frames_until(first, lambda f: f["type"] == "delta")
    conversation_id = frames[0]["conversation"]["id"]

    second = await open_socket(user)
    await second.send_to(
        text_data=orjson.dumps({"type": "subscribe", "conversation": conversation_id}).decode()
    )
    subscribed = (await frames_until(second, lambda f: f["type"] == "subscribed"))[-1]
    gate.set()
    frames += await frames_until(first, is_final)
    later = await frames_until(second, is_final)

    [live] = subscribed["messages"]
    answer = answer_of(frames)
    assert live["id"] == answer["id"]
    assert live["text"] + streamed_text(later, answer["id"]) == "one two three"
    assert streamed_text(frames, answer["id"]) == "one two three"


async def test_closing_the_tab_does_not_stop_or_lose_the_answer(user, open_socket, fake_mistral):
    gate = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["kept ", "after ", "close"], gate=gate))
    socket = await open_socket(user)
    await socket.send_to(text_data=send("go"))
    frames = await frames_until(socket, lambda f: f["type"] == "delta")
    await socket.disconnect()
    gate.set()

    answer_id = frames[-1]["message"]
    row = await until(lambda: Message.objects.filter(pk=answer_id, status="complete").first())
    assert row.text == "kept after close"


async def test_reconnect_mid_answer_yields_the_full_text_exactly_once(
    user, open_socket, fake_mistral
):
    gate = threading.Event()
    tokens = [f"t{i} " for i in range(30)]
    fake_mistral.enqueue(Reply.tokens(tokens, gate=gate))
    socket = await open_socket(user)
    await socket.send_to(text_data=send("long one"))
    frames = await frames_until(socket, lambda f: f["type"] == "delta")
    conversation_id = frames[0]["conversation"]["id"]
    question_id = frames[1]["message"]["id"]
    await socket.disconnect()

    again = await open_socket(user)
    await again.send_to(
        text_data=orjson.dumps(
            {"type": "subscribe", "conversation": conversation_id, "since": question_id}
        ).decode()
    )
    subscribed = (await frames_until(again, lambda f: f["type"] == "subscribed"))[-1]
    gate.set()
    later = await frames_until(again, is_final)

    question, answer = subscribed["messages"]
    assert question["text"] == "long one"
    deltas = [f for f in later if f["type"] == "delta"]
    assert all(f["seq"] > answer["seq"] for f in deltas)
    assert answer["text"] + streamed_text(later, answer["id"]) == "".join(tokens)
    assert answer_of(later)["text"] == "".join(tokens)
    extra = await frames_during(again, 0.2)
    assert [f for f in extra if f.get("message") == answer["id"]] == []


async def test_stop_from_another_tab_keeps_the_partial_answer(user, open_socket, fake_mistral):
    gate = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["partial ", "never"], gate=gate))
    socket = await open_socket(user)
    await socket.send_to(text_data=send("stop me"))
    frames = await frames_until(socket, lambda f: f["type"] == "delta")
    conversation_id = frames[0]["conversation"]["id"]

    other = await open_socket(user)
    await other.send_to(
        text_data=orjson.dumps({"type": "stop", "conversation": conversation_id}).decode()
    )
    final = answer_of(await frames_until(socket, is_final))
    gate.set()

    assert final["status"] == "stopped"
    assert final["text"] == "partial "
    row = await Message.objects.aget(pk=final["id"])
    assert (row.status, row.text) == ("stopped", "partial ")


async def test_second_send_while_an_answer_streams_is_busy(user, open_socket, fake_mistral):
    gate = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["a", "b"], gate=gate))
    socket = await open_socket(user)
    await socket.send_to(text_data=send("first"))
    frames = await frames_until(socket, lambda f: f["type"] == "delta")
    conversation_id = frames[0]["conversation"]["id"]

    await socket.send_to(text_data=send("second", conversation_id))
    error = (await frames_until(socket, lambda f: f["type"] == "error"))[-1]
    gate.set()
    await frames_until(socket, is_final)

    assert error["code"] == "busy"
    texts = [m.text async for m in Message.objects.filter(role="user")]
    assert texts == ["first"]


async def test_progress_is_saved_a_bounded_number_of_times(
    user, open_socket, fake_mistral, settings, monkeypatch
):
    settings.CHAT_SAVE_INTERVAL = 0.1
    saves = []
    original = answers.message_progress_save

    def counting(**kwargs):
        saves.append(dict(kwargs["progress"]))
        return original(**kwargs)

    monkeypatch.setattr(generation, "message_progress_save", counting)
    fake_mistral.enqueue(Reply.tokens([f"w{i} " for i in range(60)], interval=0.01))
    socket = await open_socket(user)
    final = answer_of(await ask(socket, "many tokens"))

    seconds = final["duration_ms"] / 1000
    assert 1 <= len(saves) <= 2 + seconds / settings.CHAT_SAVE_INTERVAL
    assert len(saves) < 60


async def test_saved_progress_holds_the_text_so_far(user, open_socket, fake_mistral):
    gate = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["visible ", "later"], gate=gate))
    socket = await open_socket(user)
    await socket.send_to(text_data=send("save"))
    frames = await frames_until(socket, lambda f: f["type"] == "delta")
    answer_id = frames[-1]["message"]

    row = await until(lambda: Message.objects.filter(pk=answer_id, status="streaming").first())
    gate.set()
    await frames_until(socket, is_final)
    assert row.text == "visible "


async def test_answers_left_running_by_a_dead_process_are_interrupted(user, open_socket):
    conversation = await Conversation.objects.acreate(owner=user, model="m")
    orphan = await amessage_create(
        conversation=conversation, role="assistant", text="half an ans", status="streaming"
    )
    await Message.objects.filter(pk=orphan.pk).aupdate(
        updated_at=timezone.now() - timedelta(minutes=1)
    )
    await open_socket(user)  # connected once this process has looked for orphans

    row = await Message.objects.aget(pk=orphan.pk)
    assert row.status == "interrupted"
    assert row.text == "half an ans"
    assert row.error_text


async def test_with_several_processes_a_live_answer_elsewhere_is_left_alone(
    user, open_socket, monkeypatch
):
    monkeypatch.setattr(broadcast, "other_processes_listen", lambda: True)
    conversation = await Conversation.objects.acreate(owner=user, model="m")
    live = await amessage_create(
        conversation=conversation, role="assistant", text="still going", status="streaming"
    )
    await open_socket(user)  # connected once this process has looked for orphans

    await live.arefresh_from_db()
    assert live.status == "streaming"


async def test_first_answer_names_the_conversation(user, open_socket, fake_mistral):
    fake_mistral.enqueue(Reply.tokens(["A monad is a monoid."]))
    fake_mistral.enqueue(Reply.tokens(["Monads explained"]))
    socket = await open_socket(user)
    frames = await ask(socket, "What is a monad?")
    conversation_id = frames[0]["conversation"]["id"]

    titled = await frames_until(
        socket, lambda f: f["type"] == "conversation" and f["conversation"]["title"]
    )
    assert titled[-1]["conversation"] == {
        **titled[-1]["conversation"],
        "id": conversation_id,
        "title": "Monads explained",
    }
    title_request = fake_mistral.requests[-1].json
    assert title_request["stream"] is False
    assert title_request["model"] == "ministral-8b-latest"


async def test_title_falls_back_to_the_question_when_the_model_server_fails(
    user, open_socket, fake_mistral
):
    fake_mistral.enqueue(Reply.tokens(["Fine."]))
    fake_mistral.enqueue(Reply.unauthorized())
    socket = await open_socket(user)
    await ask(socket, "How are you today?\nDetails follow")
    titled = await frames_until(
        socket, lambda f: f["type"] == "conversation" and f["conversation"]["title"]
    )
    assert titled[-1]["conversation"]["title"] == "How are you today?"


async def test_retry_writes_a_new_answer_beside_the_failed_one(user, open_socket, fake_mistral):
    fake_mistral.enqueue(Reply.server_error(status=400))
    socket = await open_socket(user)
    failed = answer_of(await ask(socket, "retry me"))
    assert failed["status"] == "failed"

    fake_mistral.enqueue(Reply.tokens(["second ", "time"]))
    await socket.send_to(
        text_data=orjson.dumps({"type": "retry", "message": failed["id"]}).decode()
    )
    retried = answer_of(await frames_until(socket, is_final))
    assert retried["id"] != failed["id"]
    assert (retried["status"], retried["text"]) == ("complete", "second time")
    assert retried["error_code"] == ""
    # Never overwritten: the failure stays, as the first of the two answers.
    old = await Message.objects.aget(pk=failed["id"])
    new = await Message.objects.aget(pk=retried["id"])
    assert (old.status, old.error_code) == ("failed", failed["error_code"])
    assert new.parent_id == old.parent_id


async def test_resync_returns_the_live_text_and_seq(user, open_socket, fake_mistral):
    gate = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["so ", "far"], gate=gate))
    socket = await open_socket(user)
    await socket.send_to(text_data=send("resync"))
    delta = (await frames_until(socket, lambda f: f["type"] == "delta"))[-1]
    await socket.send_to(
        text_data=orjson.dumps({"type": "resync", "message": delta["message"]}).decode()
    )
    snapshot = (await frames_until(socket, lambda f: f["type"] == "message"))[-1]["message"]
    gate.set()
    await frames_until(socket, is_final)
    assert (snapshot["text"], snapshot["seq"], snapshot["status"]) == ("so ", 1, "streaming")


# Each way the model server can fail, and what the user then sees and the row holds.
FAULTS = [
    ("unauthorized", lambda: Reply.unauthorized(), "failed", "auth", ""),
    (
        "invalid_model",
        lambda: Reply.invalid_model("pixtral-large-latest"),
        "failed",
        "invalid_model",
        "",
    ),
    (
        "validation",
        lambda: Reply.error(
            422,
            {
                "detail": [
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", "x"],
                        "msg": "Extra inputs are not permitted",
                        "input": 1,
                    }
                ]
            },
        ),
        "failed",
        "invalid_request",
        "",
    ),
    (
        "rate_limited_long",
        lambda: Reply.rate_limited(retry_after=120),
        "failed",
        "rate_limited",
        "",
    ),
    (
        "stall_before_first_token",
        lambda: Reply.stall(before_first_token=True),
        "failed",
        "timeout",
        "",
    ),
    ("cut", lambda: Reply.cut(["cut ", "here"]), "interrupted", "interrupted", "cut here"),
    # The final chunk (finish_reason, usage) came: whole, whether or not [DONE] follows.
    ("no_done", lambda: Reply.no_done(["no ", "done"]), "complete", "", "no done"),
    ("final_then_cut", lambda: Reply.final_then_cut(["all ", "here"]), "complete", "", "all here"),
    (
        "malformed",
        lambda: Reply.malformed(["bad ", "chunk"]),
        "failed",
        "malformed_stream",
        "bad chunk",
    ),
    (
        "model_error",
        lambda: Reply.model_error(["went ", "wrong"]),
        "failed",
        "model_error",
        "went wrong",
    ),
    (
        "stall_after_tokens",
        lambda: Reply.stall(before_first_token=False, tokens=["st", "alled"]),
        "interrupted",
        "timeout",
        "stalled",
    ),
]


@pytest.mark.parametrize(
    ("reply", "status", "code", "kept"),
    [f[1:] for f in FAULTS],
    ids=[f[0] for f in FAULTS],
)
async def test_model_server_fault_is_shown_and_stored(
    reply, status, code, kept, user, open_socket, fake_mistral, settings
):
    settings.MISTRAL_READ_TIMEOUT = 0.3
    for _attempt in range(1 + settings.MISTRAL_MAX_RETRIES):  # retried ones fail again
        fake_mistral.enqueue(reply())
    socket = await open_socket(user)
    final = answer_of(await ask(socket, "fail please"))

    assert (final["status"], final["error_code"], final["text"]) == (status, code, kept)
    assert bool(final["error_text"]) == (status != "complete")
    assert "test-key" not in final["error_text"]
    row = await Message.objects.aget(pk=final["id"])
    assert (row.status, row.error_code, row.text) == (status, code, kept)


@pytest.mark.parametrize(
    "reply",
    [Reply.no_done, Reply.final_then_cut, Reply.model_error],
    ids=["no_done", "final_then_cut", "model_error"],
)
async def test_usage_the_server_sent_is_recorded_however_the_stream_ends(
    reply, user, open_socket, fake_mistral
):
    fake_mistral.enqueue(reply(["counted ", "tokens"]))
    socket = await open_socket(user)
    final = answer_of(await ask(socket, "count me"))

    call = await ApiCall.objects.aget(message_id=final["id"])
    assert call.completion_tokens == final["completion_tokens"] == 2  # the server's, not ours
    assert call.prompt_tokens == final["prompt_tokens"] > 0
    assert not call.usage_estimated


async def test_rate_limit_with_long_wait_tells_the_wait(user, open_socket, fake_mistral):
    fake_mistral.enqueue(Reply.rate_limited(retry_after=120))
    socket = await open_socket(user)
    final = answer_of(await ask(socket, "busy?"))
    assert "120" in final["error_text"]


async def test_transient_errors_before_the_first_token_are_retried(user, open_socket, fake_mistral):
    fake_mistral.enqueue(Reply.rate_limited(retry_after=0))
    fake_mistral.enqueue(Reply.server_error(status=503))
    fake_mistral.enqueue(Reply.tokens(["made ", "it"]))
    socket = await open_socket(user)
    final = answer_of(await ask(socket, "persist"))
    assert (final["status"], final["text"]) == ("complete", "made it")
    chat_calls = [r for r in fake_mistral.requests if r.path.endswith("/chat/completions")]
    assert len(chat_calls) == 3


async def test_upstream_down_after_retries_fails_clearly(user, open_socket, fake_mistral):
    for _ in range(3):
        fake_mistral.enqueue(Reply.server_error(status=503))
    socket = await open_socket(user)
    final = answer_of(await ask(socket, "anyone?"))
    assert (final["status"], final["error_code"]) == ("failed", "upstream_unavailable")


async def test_unreachable_model_server_fails_clearly(user, open_socket, settings):
    settings.MISTRAL_BASE_URL = "http://127.0.0.1:9/v1"
    settings.MISTRAL_MAX_RETRIES = 0
    socket = await open_socket(user)
    final = answer_of(await ask(socket, "hello?"))
    assert (final["status"], final["error_code"]) == ("failed", "connection_failed")


def test_history_sent_upstream_passes_mistrals_own_validator():
    """mistral-common holds the rules Mistral's API applies to a conversation (who may
    follow whom, what the last message may be); the history we build must pass them."""
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.protocol.instruct.validator import (
        MistralRequestValidator,
        ValidationMode,
    )

    history = [
        Message(role="user", text="first"),  # left out: unanswered, or it goes twice
        Message(role="assistant", text="", status="failed"),  # left out
        Message(role="user", text="again"),
        Message(role="assistant", text="partial", status="stopped"),
        Message(role="user", text="go on"),
    ]
    messages = request_plan.chat_messages(
        system_prompt="Be brief.", history=request_plan.sendable(history)
    )
    request = ChatCompletionRequest.model_validate({"model": "m", "messages": messages})
    MistralRequestValidator(ValidationMode.serving).validate_messages(request.messages)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert [m["content"] for m in messages[1:]] == ["again", "partial", "go on"]


async def test_failed_first_answer_titles_from_the_question_without_a_call(
    user, open_socket, fake_mistral
):
    fake_mistral.enqueue(Reply.unauthorized())
    socket = await open_socket(user)
    await ask(socket, "Plan a trip to Lyon")
    titled = await frames_until(
        socket, lambda f: f["type"] == "conversation" and f["conversation"]["title"]
    )
    assert titled[-1]["conversation"]["title"] == "Plan a trip to Lyon"
    assert len(fake_mistral.requests) == 1


async def test_open_tail_is_rendered_at_most_once_per_render_interval(
    user, open_socket, fake_mistral, settings
):
    settings.CHAT_RENDER_INTERVAL = 60
    gate = threading.Event()
    fake_mistral.enqueue(
        Reply.tokens(["**bold", "** and", " more\n\nNext"], gate=gate, interval=0.05)
    )
    socket = await open_socket(user)
    await socket.send_to(text_data=send("tail"))
    first = (await frames_until(socket, lambda f: f["type"] == "delta"))[-1]
    gate.set()
    frames = await frames_until(socket, is_final)
    deltas = [first] + [f for f in frames if f["type"] == "delta"]

    assert deltas[0]["tail"] == "<p>**bold</p>\n"
    # No tail on the next delta: the tab appends its text, plain.
    assert "tail" not in deltas[1]
    # A block settled: it comes rendered once, with the new tail.
    settled = [f for f in deltas if f["settled"]]
    assert settled[0]["settled"] == ["<p><strong>bold</strong> and more</p>\n"]
    assert settled[0]["tail"] == "<p>Next</p>\n"
    assert answer_of(frames)["html"] == ("<p><strong>bold</strong> and more</p>\n<p>Next</p>\n")


def test_live_state_between_tail_renders_has_the_current_tail(settings):
    settings.CHAT_RENDER_INTERVAL = 60
    gen = generation.Generation(conversation_id=1, message_id=2, owner_id=3, model="m")
    first, second = gen.add("# one"), gen.add(" *two*")

    assert first["tail"] == "<h3>one</h3>\n"
    assert "tail" not in second
    state = gen.live_state()
    assert (state["text"], state["seq"]) == ("# one *two*", 2)
    assert state["tail"] == "<h3>one <em>two</em></h3>\n"


def test_plain_prose_is_not_rendered_until_markup_arrives(settings):
    """Text without markdown looks the same appended plain: rendering it is waste."""
    settings.CHAT_RENDER_INTERVAL = 0
    gen = generation.Generation(conversation_id=1, message_id=2, owner_id=3, model="m")
    plain = [gen.add(text) for text in ("Streaming", " words", " without", " markup")]
    marked = gen.add(" and `code`")

    assert all("tail" not in frame for frame in plain)
    assert marked["tail"] == "<p>Streaming words without markup and <code>code</code></p>\n"
    assert gen.live_state()["tail"] == marked["tail"]


def test_many_streaming_answers_share_a_budget_of_tail_renders(settings, monkeypatch):
    """At 300 answers and 100 renders a second, each tail is formatted every 3 s; its
    text still goes out with every delta."""
    settings.CHAT_RENDER_INTERVAL = 0.1
    settings.CHAT_TAIL_RENDERS_PER_SECOND = 100
    gen = generation.Generation(conversation_id=1, message_id=2, owner_id=3, model="m")
    clock = [1000.0]
    monkeypatch.setattr(generation.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(generation, "_running", {n: gen for n in range(300)})

    first = gen.add("**one**")
    clock[0] += 1.0
    second = gen.add(" *two*")
    clock[0] += 2.5
    third = gen.add(" `three`")

    assert "tail" in first
    assert "tail" not in second and second["text"] == " *two*"
    assert third["tail"] == "<p><strong>one</strong> <em>two</em> <code>three</code></p>\n"

    monkeypatch.setattr(generation, "_running", {1: gen})  # alone again: every 0.1 s
    clock[0] += 0.2
    assert "tail" in gen.add(" **four**")
