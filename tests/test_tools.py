"""Function calling: an answer that calls tools takes several model calls, each step stored
as rows and streamed to every tab; Mistral's rules hold (ids, names, one tool message per
call, role order); failures, time-outs, Stop and approvals become results the model and the
reader both see; models without the capability get no tools."""

import html
import json
import re
import sys
from pathlib import Path

import orjson
import pytest
from asgiref.sync import sync_to_async

from conversations.models import ApiCall, Conversation, ToolCall
from conversations.modelservers.results import ToolCallsBuilder
from tests.fake_mistral import Reply
from tests.helpers import frames_until, is_final

pytestmark = pytest.mark.django_db(transaction=True)

SERVER = Path(__file__).with_name("mcp_tools_server.py")


@pytest.fixture
def mcp_config(tmp_path, settings):
    """The test MCP server over stdio, configured as an operator would; `approval` lists
    the tools that wait for the user's click."""

    def configure(approval=False) -> None:
        from chatsite.settings import _mcp_servers

        path = tmp_path / "mcp.json"
        entry = {"command": sys.executable, "args": [str(SERVER)], "approval": approval}
        path.write_text(json.dumps({"mcpServers": {"lab": entry}}))
        settings.CHAT_MCP_SERVERS = _mcp_servers(str(path))

    return configure


async def ask(socket, conversation: Conversation, text: str = "What time is it?") -> list:
    frame = {"type": "send", "conversation": conversation.pk, "text": text}
    await socket.send_to(text_data=orjson.dumps(frame).decode())
    return await frames_until(socket, is_final, within=15)


async def send_until_call(socket, conversation: Conversation, text: str, status: str) -> dict:
    """Send a question, and wait for its first tool call in `status`: that call's frame."""
    frame = {"type": "send", "conversation": conversation.pk, "text": text}
    await socket.send_to(text_data=orjson.dumps(frame).decode())
    frames = await frames_until(
        socket, lambda f: f["type"] == "tool" and f["call"]["status"] == status, within=20
    )
    return frames[-1]


def final_of(frames: list) -> dict:
    return [f for f in frames if is_final(f)][-1]["message"]


def text_of(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def chat_bodies(server) -> list[dict]:
    return [r.json for r in server.requests if r.path.endswith("/chat/completions")]


def tool_frames(frames: list) -> list[dict]:
    return [f for f in frames if f["type"] == "tool"]


async def conversation_with(user, tools, model="mistral-small-latest", **fields):
    return await Conversation.objects.acreate(owner=user, model=model, tools=tools, **fields)


def calls_of(message_id: int) -> list[ToolCall]:
    return list(ToolCall.objects.filter(message_id=message_id).order_by("step", "position"))


async def test_a_two_step_answer_runs_the_tool_and_answers_with_its_result(
    user, open_socket, fake_mistral
):
    conversation = await conversation_with(user, ["builtin:datetime"])
    fake_mistral.enqueue(
        Reply.tool_calls([("current_datetime", {"timezone": "Europe/Paris"})], ids=["abcDEF123"])
    )
    fake_mistral.enqueue(Reply.tokens(["It is ", "now."]))
    frames = await ask(await open_socket(user), conversation)
    final = final_of(frames)

    assert final["status"] == "complete"
    assert final["text"] == "It is now."
    first, second = chat_bodies(fake_mistral)  # both validated against the spec
    assert first["tools"][0]["function"]["name"] == "current_datetime"
    assert first["tool_choice"] == "auto"
    asking, answer = second["messages"][-2:]
    assert asking == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "abcDEF123",
                "type": "function",
                "function": {
                    "name": "current_datetime",
                    "arguments": '{"timezone":"Europe/Paris"}',
                },
            }
        ],
    }
    assert answer["role"] == "tool" and answer["tool_call_id"] == "abcDEF123"
    assert (
        "(Europe/Paris, UTC+0" in answer["content"]
        or "(Europe/Paris, UTC+01" in answer["content"]
        or "Europe/Paris" in answer["content"]
    )

    [call] = await sync_to_async(calls_of)(final["id"])
    assert (call.step, call.name, call.tool, call.status) == (
        1,
        "current_datetime",
        "builtin:datetime",
        "done",
    )
    assert call.result == answer["content"] and call.duration_ms is not None
    # The reader saw it run: a frame when it started and one when it ended, with `seq`.
    statuses = [f["call"]["status"] for f in tool_frames(frames)]
    assert statuses == ["running", "done"]
    seqs = [f["seq"] for f in frames if f["type"] in ("delta", "tool")]
    assert seqs == list(range(1, len(seqs) + 1))
    assert final["tools"][0]["title"] == "Date and time"
    assert "Europe/Paris" in final["tools"][0]["result_html"]
    # Each model call is billed as its own row; the answer shows both summed.
    calls = await sync_to_async(list)(
        ApiCall.objects.filter(message_id=final["id"])
        .order_by("id")
        .values_list("status", "prompt_tokens", "completion_tokens")
    )
    assert [c[0] for c in calls] == ["tool_calls", "complete"]
    assert final["prompt_tokens"] == sum(c[1] for c in calls)
    assert final["completion_tokens"] == sum(c[2] for c in calls)


async def test_parallel_calls_each_get_their_tool_message(user, open_socket, fake_mistral):
    conversation = await conversation_with(user, ["builtin:datetime"])
    fake_mistral.enqueue(
        Reply.tool_calls(
            [("current_datetime", {"timezone": "Asia/Tokyo"}), ("current_datetime", {})],
            ids=["aaaaaaaa1", "bbbbbbbb2"],
        )
    )
    fake_mistral.enqueue(Reply.tokens(["Two clocks."]))
    final = final_of(await ask(await open_socket(user), conversation))
    assert final["status"] == "complete"
    second = chat_bodies(fake_mistral)[1]
    assert [m["role"] for m in second["messages"][-3:]] == ["assistant", "tool", "tool"]
    assert [m["tool_call_id"] for m in second["messages"][-2:]] == ["aaaaaaaa1", "bbbbbbbb2"]
    assert "Asia/Tokyo" in second["messages"][-2]["content"]
    assert "(UTC," in second["messages"][-1]["content"]
    rows = await sync_to_async(calls_of)(final["id"])
    assert [(r.position, r.status) for r in rows] == [(0, "done"), (1, "done")]


async def test_a_failing_tool_becomes_a_result_saying_so(user, open_socket, fake_mistral):
    conversation = await conversation_with(user, ["builtin:datetime"])
    fake_mistral.enqueue(Reply.tool_calls([("current_datetime", {"timezone": "Mars/Olympus"})]))
    fake_mistral.enqueue(Reply.tokens(["Sorry."]))
    frames = await ask(await open_socket(user), conversation)
    final = final_of(frames)
    assert final["status"] == "complete"
    tool_message = chat_bodies(fake_mistral)[1]["messages"][-1]
    assert tool_message["content"].startswith("The tool failed: Unknown time zone 'Mars/Olympus'")
    assert tool_frames(frames)[-1]["call"]["status"] == "failed"
    assert "Unknown time zone" in final["tools"][0]["result_html"]


async def test_a_tool_the_model_was_not_given_is_answered_not_run(user, open_socket, fake_mistral):
    conversation = await conversation_with(user, ["builtin:datetime"])
    fake_mistral.enqueue(Reply.tool_calls([("delete_everything", {})]))
    fake_mistral.enqueue(Reply.tokens(["Fine."]))
    final = final_of(await ask(await open_socket(user), conversation))
    assert final["status"] == "complete"
    content = chat_bodies(fake_mistral)[1]["messages"][-1]["content"]
    assert content == "There is no tool named 'delete_everything' here."
    [row] = await sync_to_async(calls_of)(final["id"])
    assert row.status == "unknown"


async def test_the_step_bound_makes_the_last_call_answer_in_text(
    user, open_socket, fake_mistral, settings
):
    settings.CHAT_TOOL_MAX_STEPS = 2
    conversation = await conversation_with(user, ["builtin:datetime"])
    fake_mistral.enqueue(Reply.tool_calls([("current_datetime", {})]))
    fake_mistral.enqueue(Reply.tokens(["Done."]))
    final = final_of(await ask(await open_socket(user), conversation))
    first, last = chat_bodies(fake_mistral)
    assert first["tool_choice"] == "auto" and last["tool_choice"] == "none"
    assert final["text"] == "Done."


async def test_a_model_without_the_capability_gets_no_tools(user, open_socket, fake_mistral):
    conversation = await conversation_with(user, ["builtin:datetime"], model="codestral-latest")
    for card in fake_mistral.models:
        if card["id"] == "codestral-latest":
            card["capabilities"]["function_calling"] = False
    fake_mistral.enqueue(Reply.tokens(["No clock here."]))
    final = final_of(await ask(await open_socket(user), conversation))
    [body] = chat_bodies(fake_mistral)
    assert "tools" not in body and "tool_choice" not in body
    assert final["notice"] == "Tools were not offered: codestral-latest cannot call them."


async def test_no_tools_switched_on_sends_none(user, open_socket, fake_mistral):
    conversation = await conversation_with(user, [])
    fake_mistral.enqueue(Reply.tokens(["Hi"]))
    final_of(await ask(await open_socket(user), conversation))
    [body] = chat_bodies(fake_mistral)
    assert "tools" not in body


async def test_the_fake_server_refuses_a_bad_call_id_as_mistral_does(
    user, open_socket, fake_mistral
):
    """The rule our answers follow is enforced: an id that is not 9 letters and digits
    (as an OpenAI-style "call_0" would be) earns Mistral's 400 on the next step."""
    conversation = await conversation_with(user, ["builtin:datetime"])
    fake_mistral.enqueue(Reply.tool_calls([("current_datetime", {})], ids=["call_0"]))
    final = final_of(await ask(await open_socket(user), conversation))
    assert final["status"] == "failed"
    assert "length of 9" in fake_mistral_last_error(fake_mistral)


def fake_mistral_last_error(server) -> str:
    from tests.fake_mistral import tool_rules_error

    return tool_rules_error(chat_bodies(server)[-1])["message"]


async def test_stop_during_a_tool_cancels_it_and_keeps_the_rows(
    user, open_socket, fake_mistral, mcp_config
):
    mcp_config()
    conversation = await conversation_with(user, ["mcp:lab/slow"])
    fake_mistral.enqueue(Reply.tool_calls([("lab_slow", {"seconds": 30})]))
    socket = await open_socket(user)
    await send_until_call(socket, conversation, "Wait for it", "running")
    await socket.send_to(
        text_data=orjson.dumps({"type": "stop", "conversation": conversation.pk}).decode()
    )
    frames = await frames_until(socket, is_final, within=10)
    final = final_of(frames)
    assert final["status"] == "stopped"
    [row] = await sync_to_async(calls_of)(final["id"])
    assert row.status == "cancelled"
    assert len(chat_bodies(fake_mistral)) == 1  # the model was not asked again


async def test_a_slow_tool_is_cut_by_the_time_bound(
    user, open_socket, fake_mistral, mcp_config, settings
):
    mcp_config()
    settings.CHAT_TOOL_TIMEOUT = 1.0
    conversation = await conversation_with(user, ["mcp:lab/slow"])
    fake_mistral.enqueue(Reply.tool_calls([("lab_slow", {"seconds": 30})]))
    fake_mistral.enqueue(Reply.tokens(["It took too long."]))
    final = final_of(await ask(await open_socket(user), conversation, "Wait"))
    assert final["status"] == "complete"
    content = chat_bodies(fake_mistral)[1]["messages"][-1]["content"]
    assert content == "The tool did not answer within 1 s; it was stopped."
    [row] = await sync_to_async(calls_of)(final["id"])
    assert row.status == "timed_out"


async def test_an_mcp_tool_over_stdio_answers(user, open_socket, fake_mistral, mcp_config):
    mcp_config()
    conversation = await conversation_with(user, ["mcp:lab/add"])
    fake_mistral.enqueue(Reply.tool_calls([("lab_add", {"a": 2, "b": 40})]))
    fake_mistral.enqueue(Reply.tokens(["42."]))
    final = final_of(await ask(await open_socket(user), conversation, "2 + 40?"))
    first, second = chat_bodies(fake_mistral)
    [offered] = first["tools"]
    assert offered["function"]["name"] == "lab_add"
    assert offered["function"]["description"] == "Add two whole numbers and return their sum."
    assert second["messages"][-1]["content"] == "42"
    assert final["tools"][0]["source"] == "lab"


async def test_a_failing_mcp_tool_and_a_huge_result_are_contained(
    user, open_socket, fake_mistral, mcp_config, settings
):
    mcp_config()
    settings.CHAT_TOOL_RESULT_CHARS = 1000
    conversation = await conversation_with(user, ["mcp:lab/broken", "mcp:lab/long_text"])
    fake_mistral.enqueue(Reply.tool_calls([("lab_broken", {}), ("lab_long_text", {"size": 50000})]))
    fake_mistral.enqueue(Reply.tokens(["Noted."]))
    final = final_of(await ask(await open_socket(user), conversation, "Try both"))
    broken, long = chat_bodies(fake_mistral)[1]["messages"][-2:]
    assert broken["content"].startswith("The tool failed:")
    assert len(long["content"]) < 1100
    assert long["content"].endswith("[The result was cut at 1,000 characters.]")
    # Shown through the sanitizer: the tool's markup is not markup in the page.
    html = final["tools"][1]["result_html"]
    assert "<b>" not in html


@pytest.mark.parametrize("approve", [True, False])
async def test_a_call_needing_approval_waits_for_the_users_click(
    user, open_socket, fake_mistral, mcp_config, approve
):
    mcp_config(approval=["add"])
    conversation = await conversation_with(user, ["mcp:lab/add"])
    fake_mistral.enqueue(Reply.tool_calls([("lab_add", {"a": 1, "b": 1})]))
    fake_mistral.enqueue(Reply.tokens(["OK."]))
    socket = await open_socket(user)
    waiting = await send_until_call(socket, conversation, "1 + 1", "waiting")
    assert '"a": 1' in text_of(waiting["call"]["arguments_html"])  # what would run
    assert len(chat_bodies(fake_mistral)) == 1
    decision = {
        "type": "tool_approve",
        "conversation": conversation.pk,
        "call": waiting["call"]["id"],
        "approve": approve,
    }
    await socket.send_to(text_data=orjson.dumps(decision).decode())
    final = final_of(await frames_until(socket, is_final, within=20))
    content = chat_bodies(fake_mistral)[1]["messages"][-1]["content"]
    [row] = await sync_to_async(calls_of)(final["id"])
    if approve:
        assert content == "2" and row.status == "done"
    else:
        assert content == "The user did not approve this call; it was not run."
        assert row.status == "refused"


async def test_another_user_cannot_approve_a_call(
    user, other_user, open_socket, fake_mistral, mcp_config, settings
):
    mcp_config(approval=True)
    settings.CHAT_TOOL_APPROVAL_SECONDS = 3
    conversation = await conversation_with(user, ["mcp:lab/add"])
    fake_mistral.enqueue(Reply.tool_calls([("lab_add", {"a": 1, "b": 1})]))
    fake_mistral.enqueue(Reply.tokens(["OK."]))
    socket = await open_socket(user)
    waiting = await send_until_call(socket, conversation, "1 + 1", "waiting")
    intruder = await open_socket(other_user)
    decision = {
        "type": "tool_approve",
        "conversation": conversation.pk,
        "call": waiting["call"]["id"],
        "approve": True,
    }
    await intruder.send_to(text_data=orjson.dumps(decision).decode())
    error = orjson.loads(await intruder.receive_from(timeout=5))
    assert error["type"] == "error"
    final = final_of(await frames_until(socket, is_final, within=20))
    [row] = await sync_to_async(calls_of)(final["id"])
    assert row.status == "refused"  # nobody approved it in time


async def test_a_reload_during_a_tool_gets_the_calls_so_far(
    user, open_socket, fake_mistral, mcp_config
):
    mcp_config()
    conversation = await conversation_with(user, ["mcp:lab/slow"])
    fake_mistral.enqueue(Reply.tool_calls([("lab_slow", {"seconds": 2})], text=["Checking. "]))
    fake_mistral.enqueue(Reply.tokens(["Waited."]))
    socket = await open_socket(user)
    running = await send_until_call(socket, conversation, "Wait", "running")
    await socket.disconnect()
    # A new tab (a reload) watches the conversation and asks for the answer's state, as
    # the page's script does.
    tab = await open_socket(user)
    subscribe = {"type": "subscribe", "conversation": conversation.pk}
    await tab.send_to(text_data=orjson.dumps(subscribe).decode())
    resync = {"type": "resync", "message": running["message"]}
    await tab.send_to(text_data=orjson.dumps(resync).decode())
    state = (
        await frames_until(
            tab, lambda f: f["type"] == "message" and f["message"]["id"] == running["message"]
        )
    )[-1]["message"]
    assert state["status"] == "streaming"
    assert state["text"] == "Checking. "
    assert [c["status"] for c in state["tools"]] == ["running"]
    assert state["seq"] == running["seq"]
    final = final_of(await frames_until(tab, is_final, within=20))
    assert final["text"] == "Checking. \n\nWaited."


def test_tool_calls_streamed_in_pieces_are_put_together():
    builder = ToolCallsBuilder()
    builder.add([{"index": 0, "id": "call_1", "function": {"name": "add", "arguments": ""}}])
    builder.add([{"index": 0, "function": {"arguments": '{"a": '}}])
    builder.add([{"index": 0, "function": {"arguments": "1}"}}])
    builder.add([{"index": 1, "id": "call_2", "function": {"name": "sub", "arguments": {"b": 2}}}])
    calls = builder.calls()
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_1", "add", '{"a": 1}'),
        ("call_2", "sub", '{"b":2}'),
    ]


async def test_an_openai_endpoint_gets_tools_only_for_models_the_operator_named(
    user, open_socket, lab, settings
):
    """`lab` is an OpenAI-compatible endpoint; its TOOL_MODELS setting names its models
    that call tools, and tool calls arrive in pieces there."""
    server = lab
    settings.CHAT_ENDPOINTS = [{**settings.CHAT_ENDPOINTS[0], "tool_models": ["org/big"]}]
    conversation = await conversation_with(user, ["builtin:datetime"], model="lab/org/big")
    server.enqueue(Reply.tool_calls([("current_datetime", {})], incremental=True))
    server.enqueue(Reply.tokens(["Now."]))
    final = final_of(await ask(await open_socket(user), conversation))
    assert final["status"] == "complete"
    first, second = chat_bodies(server)
    assert first["tools"][0]["function"]["name"] == "current_datetime"
    assert second["messages"][-1]["role"] == "tool"
    assert "name" not in second["messages"][-1]  # OpenAI's tool message has no name


async def test_the_review_admin_shows_every_step_with_its_cost(
    user, open_socket, fake_mistral, review_seed, client, django_user_model
):
    from django.contrib.auth.models import Group
    from django.urls import reverse

    from conversations.models import ModelPrice

    await ModelPrice.objects.aupdate_or_create(
        model="mistral-small",
        defaults={"input_usd_per_million": 1, "output_usd_per_million": 3},
    )
    conversation = await conversation_with(user, ["builtin:datetime"])
    fake_mistral.enqueue(
        Reply.tool_calls([("current_datetime", {"timezone": "Europe/Paris"})], usage=(100, 10))
    )
    fake_mistral.enqueue(Reply.tokens(["It is <b>late</b>."], usage=(200, 20)))
    final = final_of(await ask(await open_socket(user), conversation))
    assert final["prompt_tokens"] == 300 and final["completion_tokens"] == 30

    def page() -> str:
        reviewer = django_user_model.objects.create_user(
            username="rita", password="pw-for-tests-3", is_staff=True
        )
        reviewer.groups.add(Group.objects.get(name="Reviewer"))
        client.force_login(reviewer)
        url = reverse("admin:conversations_conversation_change", args=[conversation.pk])
        return client.get(url).content.decode()

    content = await sync_to_async(page)()
    text = text_of(content)
    assert "Step 1: the model asked for 1 tool call · 100 in · 10 out tokens · $0.000130" in text
    assert "Date and time (Built in, as current_datetime): Done" in text
    assert '"timezone": "Europe/Paris"' in text
    assert "Europe/Paris, UTC" in text  # the result
    assert "asks for current_datetime" in text  # what the model received, step 2
    assert "<b>late</b>" not in content  # the answer, sanitized as everywhere


async def test_an_approval_from_another_process_reaches_the_answer_through_its_row(
    user, open_socket, fake_mistral, mcp_config, monkeypatch
):
    """With several processes the tab that clicks may be served by another one: the
    decision is stored on the call's row, which the waiting answer reads."""
    from conversations.live import broadcast, consumers, tool_steps

    monkeypatch.setattr(broadcast, "other_processes_listen", lambda: True)
    monkeypatch.setattr(tool_steps, "_APPROVAL_POLL_SECONDS", 0.1)
    monkeypatch.setattr(consumers, "tool_decide", lambda call, approve: False)  # not here
    mcp_config(approval=True)
    conversation = await conversation_with(user, ["mcp:lab/add"])
    fake_mistral.enqueue(Reply.tool_calls([("lab_add", {"a": 20, "b": 22})]))
    fake_mistral.enqueue(Reply.tokens(["42."]))
    socket = await open_socket(user)
    waiting = await send_until_call(socket, conversation, "20 + 22", "waiting")
    decision = {"type": "tool_approve", "call": waiting["call"]["id"], "approve": True}
    await socket.send_to(text_data=orjson.dumps(decision).decode())
    final = final_of(await frames_until(socket, is_final, within=20))
    assert chat_bodies(fake_mistral)[1]["messages"][-1]["content"] == "42"
    assert final["tools"][0]["status"] == "done"
    # Too late now: the call is no longer waiting.
    await socket.send_to(text_data=orjson.dumps(decision).decode())
    error = (await frames_until(socket, lambda f: f["type"] == "error"))[-1]
    assert error["message"] == "This tool call is no longer waiting."


async def test_tool_calls_of_an_answer_whose_process_died_end_as_cancelled(
    user, open_socket, fake_mistral
):
    from conversations.answers import RESTARTED_TEXT, message_interrupt_orphans
    from tests.helpers import amessage_create

    conversation = await conversation_with(user, ["builtin:datetime"])
    await amessage_create(conversation=conversation, role="user", text="time?")
    orphan = await amessage_create(
        conversation=conversation, role="assistant", status="streaming", worker="dead!x"
    )
    await ToolCall.objects.acreate(
        message=orphan, step=1, call_id="abcdefghi", name="current_datetime", status="running"
    )
    await sync_to_async(message_interrupt_orphans)()
    [row] = await sync_to_async(calls_of)(orphan.pk)
    assert (row.status, row.result) == ("cancelled", RESTARTED_TEXT)


@pytest.fixture(scope="module")
def mcp_http_url():
    """The test MCP server over streamable HTTP, in its own process."""
    import socket
    import subprocess
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(  # noqa: S603 — our own test server
        [sys.executable, str(SERVER), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)  # polling with a deadline, until the server listens
    yield f"http://127.0.0.1:{port}/mcp"
    process.terminate()
    process.wait(5)


async def test_an_mcp_server_over_http_lists_and_runs_its_tools(
    user, open_socket, fake_mistral, mcp_http_url, settings, tmp_path, client
):
    from chatsite.settings import _mcp_servers

    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"web": {"url": mcp_http_url}}}))
    settings.CHAT_MCP_SERVERS = _mcp_servers(str(path))

    await sync_to_async(client.force_login)(user)
    listing = (await sync_to_async(client.get)("/tools.json?model=mistral-small-latest")).json()
    assert listing["model_calls_tools"] is True and listing["problems"] == []
    weather = next(t for t in listing["tools"] if t["key"] == "mcp:web/weather")
    assert weather == {
        "key": "mcp:web/weather",
        "title": "weather",
        "description": "Look up the weather of a city (always the same answer).",
        "source": "web",
        "approval": False,
    }
    conversation = await conversation_with(user, [])
    response = await sync_to_async(client.post)(
        f"/c/{conversation.pk}/tools/", {"tools": ["mcp:web/weather", "builtin:datetime"]}
    )
    assert response.json()["conversation"]["tools"] == ["mcp:web/weather", "builtin:datetime"]

    fake_mistral.enqueue(Reply.tool_calls([("web_weather", {"city": "Lyon"})]))
    fake_mistral.enqueue(Reply.tokens(["Sunny."]))
    final = final_of(await ask(await open_socket(user), conversation, "Weather in Lyon?"))
    first, second = chat_bodies(fake_mistral)
    assert [t["function"]["name"] for t in first["tools"]] == ["current_datetime", "web_weather"]
    assert second["messages"][-1]["content"] == "Sunny and 21 °C in Lyon."
    assert final["text"] == "Sunny."


async def test_tools_settings_refuse_an_unknown_tool_and_another_users_conversation(
    user, other_user, client
):
    conversation = await conversation_with(user, [])
    await sync_to_async(client.force_login)(user)
    response = await sync_to_async(client.post)(
        f"/c/{conversation.pk}/tools/", {"tools": ["mcp:nowhere/nothing"]}
    )
    assert response.status_code == 400
    assert response.json()["errors"]["tools"] == [
        "No tool here is called 'mcp:nowhere/nothing'; reload the list of tools."
    ]
    await sync_to_async(client.force_login)(other_user)
    response = await sync_to_async(client.post)(
        f"/c/{conversation.pk}/tools/", {"tools": ["builtin:datetime"]}
    )
    assert response.status_code == 404
    await conversation.arefresh_from_db()
    assert conversation.tools == []


async def test_an_mcp_server_that_cannot_start_is_named_in_the_listing(
    user, settings, tmp_path, client
):
    from chatsite.settings import _mcp_servers

    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"gone": {"command": "/nonexistent/mcp"}}}))
    settings.CHAT_MCP_SERVERS = _mcp_servers(str(path))
    await sync_to_async(client.force_login)(user)
    listing = (await sync_to_async(client.get)("/tools.json")).json()
    assert listing["problems"] == ["gone: The tool server gone could not be reached."]
    assert [t["key"] for t in listing["tools"]] == ["builtin:datetime", "builtin:documents"]


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("not json", "is not a JSON file"),
        ('{"servers": {}}', 'with an "mcpServers" object'),
        ('{"mcpServers": {"a b": {"command": "x"}}}', "a name is 1-32 letters"),
        ('{"mcpServers": {"a": {}}}', 'give either "command" or "url"'),
        ('{"mcpServers": {"a": {"url": "ftp://x"}}}', "must start with http"),
        ('{"mcpServers": {"a": {"command": "x", "approval": "yes"}}}', '"approval" is true'),
    ],
)
def test_a_broken_mcp_config_stops_the_site_with_the_problem_named(tmp_path, config, problem):
    from django.core.exceptions import ImproperlyConfigured

    from chatsite.settings import _mcp_servers

    path = tmp_path / "mcp.json"
    path.write_text(config)
    with pytest.raises(ImproperlyConfigured, match=problem):
        _mcp_servers(str(path))


async def test_the_documents_search_finds_the_page_in_this_conversations_documents(
    user, other_user, open_socket, fake_mistral, settings, tmp_path
):
    from tests import documentfiles
    from tests.test_document_chat import FACT, ingested, long_pages

    settings.MEDIA_ROOT = tmp_path
    mine = await ingested(user, "manual.pdf", documentfiles.pdf(long_pages()))
    theirs = await ingested(
        other_user, "secret.pdf", documentfiles.pdf(["The vault code is 1234."])
    )
    conversation = await conversation_with(user, ["builtin:documents", "builtin:datetime"])
    fake_mistral.enqueue(
        Reply.tool_calls([("search_documents", {"query": "north vault access code"})])
    )
    fake_mistral.enqueue(Reply.tokens(["It is 9931 [manual.pdf, p. 37]."]))
    socket = await open_socket(user)
    frame = {
        "type": "send",
        "conversation": conversation.pk,
        "text": "What opens the vault?",
        "documents": [mine.pk],
    }
    await socket.send_to(text_data=orjson.dumps(frame).decode())
    final = final_of(await frames_until(socket, is_final, within=20))
    assert final["status"] == "complete"
    first, second = chat_bodies(fake_mistral)
    assert [t["function"]["name"] for t in first["tools"]] == [
        "current_datetime",
        "search_documents",
    ]
    result = second["messages"][-1]["content"]
    assert result.startswith('[Document "manual.pdf", page 37]')
    assert FACT in " ".join(result.split())  # the PDF's line wraps are kept
    assert "1234" not in result and theirs.name not in result


async def test_the_documents_search_is_not_offered_without_documents(
    user, open_socket, fake_mistral
):
    conversation = await conversation_with(user, ["builtin:documents", "builtin:datetime"])
    fake_mistral.enqueue(Reply.tokens(["Hi"]))
    final_of(await ask(await open_socket(user), conversation, "hello"))
    [body] = chat_bodies(fake_mistral)
    assert [t["function"]["name"] for t in body["tools"]] == ["current_datetime"]


async def test_a_stdio_mcp_server_gets_no_secret_of_the_site(
    user, open_socket, fake_mistral, mcp_config, settings, monkeypatch
):
    monkeypatch.setenv("MISTRAL_API_KEY", "sk-site-secret")
    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/chat")
    mcp_config()
    conversation = await conversation_with(user, ["mcp:lab/environment"])
    fake_mistral.enqueue(Reply.tool_calls([("lab_environment", {})]))
    fake_mistral.enqueue(Reply.tokens(["OK."]))
    final_of(await ask(await open_socket(user), conversation, "env?"))
    names = chat_bodies(fake_mistral)[1]["messages"][-1]["content"].split()
    assert "PATH" in names
    assert "MISTRAL_API_KEY" not in names and "DATABASE_URL" not in names


async def test_stop_while_a_call_waits_for_approval_never_runs_it(
    user, open_socket, fake_mistral, mcp_config
):
    mcp_config(approval=True)
    conversation = await conversation_with(user, ["mcp:lab/add"])
    fake_mistral.enqueue(Reply.tool_calls([("lab_add", {"a": 1, "b": 2})]))
    socket = await open_socket(user)
    await send_until_call(socket, conversation, "1 + 2", "waiting")
    stop = {"type": "stop", "conversation": conversation.pk}
    await socket.send_to(text_data=orjson.dumps(stop).decode())
    final = final_of(await frames_until(socket, is_final, within=10))
    assert final["status"] == "stopped"
    assert final["tools"][0]["status"] == "cancelled"
    [row] = await sync_to_async(calls_of)(final["id"])
    assert (row.status, row.result) == ("cancelled", "Stopped before it finished.")
    assert len(chat_bodies(fake_mistral)) == 1


async def test_a_model_asking_for_tools_past_the_bound_is_not_run_and_the_answer_says_so(
    user, open_socket, fake_mistral, settings
):
    settings.CHAT_TOOL_MAX_STEPS = 2
    conversation = await conversation_with(user, ["builtin:datetime"])
    fake_mistral.enqueue(Reply.tool_calls([("current_datetime", {})]))
    fake_mistral.enqueue(
        Reply.tool_calls([("current_datetime", {})], text=["Let me check again. "])
    )
    final = final_of(await ask(await open_socket(user), conversation))
    assert len(chat_bodies(fake_mistral)) == 2
    assert final["status"] == "complete"
    assert final["notice"] == "Stopped after 2 model calls: the tools' limit."
    assert [c["status"] for c in final["tools"]] == ["done"]  # the second ask was not run


async def test_a_model_list_that_cannot_be_read_answers_without_tools(
    user, open_socket, fake_mistral, monkeypatch
):
    from conversations.modelservers import providers
    from conversations.modelservers.errors import ModelServerError

    async def unreadable(model_id):
        raise ModelServerError("The model server could not be reached.", status=503)

    monkeypatch.setattr(providers, "model_card", unreadable)
    conversation = await conversation_with(user, ["builtin:datetime"])
    fake_mistral.enqueue(Reply.tokens(["Fine without."]))
    final = final_of(await ask(await open_socket(user), conversation))
    assert final["status"] == "complete"
    assert "tools" not in chat_bodies(fake_mistral)[0]
    assert "the model server's list of models is unavailable" in final["notice"]
