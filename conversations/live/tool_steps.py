"""An answer that calls tools: model → `tool_calls` → our code runs them → `tool` messages →
model again, until it answers in text, for at most CHAT_TOOL_MAX_STEPS model calls.

Each step is stored as it happens: the model call's ApiCall row, and one ToolCall row per
call (the assistant message's `tool_calls` entry and the `tool` message answering it),
updated when its result comes. Every change goes to every tab as a `tool` frame carrying
the answer's next `seq`, so a tab that misses one resyncs like after a lost delta, and a
reload gets the calls with the answer's live state. Stop cancels the step wherever it is:
a running call is cancelled, a call waiting for approval is not run.

A call's result is untrusted input, like model text: capped (catalog.capped), rendered
through the same sanitizer for the reader, and sent to the model as plain text.
"""

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from django.conf import settings

from conversations.answers import Earlier, Outcome
from conversations.documents.reading import count_tokens
from conversations.live import broadcast
from conversations.live.context_window import count_prompt
from conversations.live.frames import tool_call_data
from conversations.models import Message, ToolCall
from conversations.modelservers import providers
from conversations.modelservers.results import AskedCall, ToolCallsBuilder
from conversations.tools.catalog import Tool, tool_run
from conversations.tools.context import Context, ToolFailed
from conversations.usage import answer_cost, api_call_record, request_summary

if TYPE_CHECKING:
    from conversations.live.generation import Generation

logger = logging.getLogger(__name__)

Stream = Callable[["Generation", providers.Provider, dict[str, Any]], Awaitable[Outcome]]

# How often a call waiting for approval reads its row, for a decision taken in a tab
# served by another process.
_APPROVAL_POLL_SECONDS = 2.0

# Calls waiting for the user's approval in this process, by row id.
_waiting: dict[int, asyncio.Future] = {}


@dataclass(eq=False)
class Call:
    """One call of a step, as it runs; `data()` is what tabs are told."""

    asked: AskedCall
    tool: Tool | None  # None: the model named a tool it was not given
    step: int
    position: int
    text_offset: int
    status: str = ToolCall.Status.RUNNING
    result: str = ""
    duration_ms: int | None = None
    pk: int | None = None
    _data: dict[str, Any] | None = field(default=None, repr=False)

    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = tool_call_data(
                pk=self.pk or 0,
                step=self.step,
                name=self.asked.name,
                key=self.tool.key if self.tool else "",
                arguments=self.asked.arguments,
                status=self.status,
                result=self.result,
                duration_ms=self.duration_ms,
            )
        return self._data

    def set(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        self._data = None


async def answer_with_tools(
    gen: "Generation", plan: Any, stream: Stream, document_ids: tuple[int, ...]
) -> Outcome:
    """Stream `plan` with its tools, running the calls the model asks for, until an answer
    in text (or the step bound, where the last call is made with `tool_choice: "none"`)."""
    by_name = {tool.name: tool for tool in plan.tools}
    context = Context(gen.conversation_id, gen.owner_id, document_ids)
    body = plan.body
    messages = list(body["messages"])
    for step in range(1, settings.CHAT_TOOL_MAX_STEPS + 1):
        gen.asked = ToolCallsBuilder()
        outcome = await stream(gen, plan.provider, body)
        asked = gen.asked.calls()
        if not asked or outcome.status != Message.Status.COMPLETE:
            return outcome
        if step == settings.CHAT_TOOL_MAX_STEPS:
            break  # asked for more although told not to: its calls are not run
        offset = len(gen.text)
        calls = [
            Call(call, by_name.get(call.name), step, position, offset)
            for position, call in enumerate(asked)
        ]
        for call in calls:
            if call.tool is None:
                call.set(
                    status=ToolCall.Status.UNKNOWN,
                    result=f"There is no tool named {call.asked.name!r} here.",
                )
            elif call.tool.approval:
                call.set(status=ToolCall.Status.WAITING)
        gen.tool_calls.extend(calls)
        await _step_store(gen, body, outcome, calls)
        await _publish(gen, *calls)
        try:
            await asyncio.gather(*(_run(gen, call, context) for call in calls))
        except asyncio.CancelledError:
            await _cancelled(gen, calls)
            raise
        messages += [plan.provider.build_message(m) for m in _step_messages(calls)]
        body = {**body, "messages": messages}
        if step + 1 == settings.CHAT_TOOL_MAX_STEPS:
            body["tool_choice"] = "none"  # the last call answers in text
        gen.request, gen.usage, gen.prompt_counted = body, None, None
        if gen.text and not gen.text.endswith("\n\n"):
            await broadcast.conversation_publish(gen.conversation_id, gen.add("\n\n"))
    bound = f"Stopped after {settings.CHAT_TOOL_MAX_STEPS} model calls: the tools' limit."
    return dataclasses.replace(outcome, notice=" ".join(filter(None, [outcome.notice, bound])))


def _step_messages(calls: list[Call]) -> list[dict[str, Any]]:
    """The assistant message asking for `calls` and one tool message answering each, in
    Mistral's shape: ids as the model gave them, `content` empty beside `tool_calls` (an
    assistant message has one or the other; the step's own text stays in the answer)."""
    asking = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call.asked.id,
                "type": "function",
                "function": {"name": call.asked.name, "arguments": call.asked.arguments},
            }
            for call in calls
        ],
    }
    answers = [
        {
            "role": "tool",
            "content": call.result,
            "tool_call_id": call.asked.id,
            "name": call.asked.name,
        }
        for call in calls
    ]
    return [asking, *answers]


async def _run(gen: "Generation", call: Call, context: Context) -> None:
    """One call: its approval awaited when its tool needs one, then run, bounded in time;
    every ending becomes a result the model and the reader both see."""
    if call.tool is None:
        return
    if call.status == ToolCall.Status.WAITING:
        if not await _approved(call):
            call.set(
                status=ToolCall.Status.REFUSED,
                result="The user did not approve this call; it was not run.",
            )
            await _call_store(gen, call)
            return
        call.set(status=ToolCall.Status.RUNNING)
        await _publish(gen, call)
    started = time.monotonic()
    try:
        result, status = await tool_run(call.tool, call.asked.arguments, context), "done"
    except ToolFailed as err:
        result, status = f"The tool failed: {err}", ToolCall.Status.FAILED
    except TimeoutError:
        result = f"The tool did not answer within {settings.CHAT_TOOL_TIMEOUT:g} s; it was stopped."
        status = ToolCall.Status.TIMED_OUT
    except asyncio.CancelledError:
        call.set(duration_ms=round((time.monotonic() - started) * 1000))
        raise
    except Exception:
        logger.exception("Tool %s broke", call.tool.key)
        result, status = "The tool broke on this server.", ToolCall.Status.FAILED
    call.set(status=status, result=result, duration_ms=round((time.monotonic() - started) * 1000))
    await _call_store(gen, call)


async def _approved(call: Call) -> bool:
    """Wait for the user's click (tool_decide here, or the row's status when a tab of
    another process decided), for up to CHAT_TOOL_APPROVAL_SECONDS."""
    future = asyncio.get_running_loop().create_future()
    _waiting[call.pk] = future
    deadline = time.monotonic() + settings.CHAT_TOOL_APPROVAL_SECONDS
    try:
        while True:
            wait = min(_APPROVAL_POLL_SECONDS, deadline - time.monotonic())
            if wait <= 0:
                return False
            try:
                async with asyncio.timeout(wait):
                    return await asyncio.shield(future)
            except TimeoutError:
                if broadcast.other_processes_listen():
                    status = await database_sync_to_async(_status_of)(call.pk)
                    if status != ToolCall.Status.WAITING:
                        return status == ToolCall.Status.RUNNING
    finally:
        _waiting.pop(call.pk, None)


def tool_decide(call_id: int, approve: bool) -> bool:
    """A user's decision on a call waiting in this process; False when none waits here."""
    future = _waiting.get(call_id)
    if future is None or future.done():
        return False
    future.set_result(approve)
    return True


async def _cancelled(gen: "Generation", calls: list[Call]) -> None:
    """Stop came during the step: calls still waiting or running end as cancelled."""
    active = [c for c in calls if c.status in ToolCall.ACTIVE_STATUSES]
    for call in active:
        call.set(status=ToolCall.Status.CANCELLED, result="Stopped before it finished.")
    if active:
        await database_sync_to_async(_results_save)(active)
        await _publish(gen, *active)


async def _publish(gen: "Generation", *calls: Call) -> None:
    frames = []
    for call in calls:
        gen.seq += 1
        frames.append(
            {
                "type": "tool",
                "conversation": gen.conversation_id,
                "message": gen.message_id,
                "seq": gen.seq,
                "call": call.data(),
            }
        )
    await broadcast.conversation_publish(gen.conversation_id, *frames)


async def _call_store(gen: "Generation", call: Call) -> None:
    await database_sync_to_async(_results_save)([call])
    await _publish(gen, call)


def _status_of(call_id: int) -> str:
    return ToolCall.objects.filter(pk=call_id).values_list("status", flat=True).first() or ""


def _results_save(calls: list[Call]) -> None:
    for call in calls:
        ToolCall.objects.filter(pk=call.pk).update(
            status=call.status, result=call.result, duration_ms=call.duration_ms
        )


async def _step_store(
    gen: "Generation", body: dict[str, Any], outcome: Outcome, calls: list[Call]
) -> None:
    """The step's model call as its ApiCall row, its cost added to what the answer's row
    will show (gen.earlier), and a ToolCall row per call."""
    usage = gen.usage
    if usage is not None:
        prompt, completion, estimated = usage.prompt_tokens, usage.completion_tokens, False
    else:  # a server that reports no usage: our own count, as for an answer
        prompt = await asyncio.to_thread(count_prompt, body.get("messages") or [])
        completion = count_tokens("".join(c.asked.arguments for c in calls))
        estimated = True
    rows, cost = await database_sync_to_async(_rows_insert)(
        gen, body, outcome, calls, prompt, completion, estimated
    )
    for call, row in zip(calls, rows, strict=True):
        call.set(pk=row.pk)
    earlier = gen.earlier or Earlier(0, 0, False, Decimal(0))
    gen.earlier = Earlier(
        _sum(earlier.prompt_tokens, prompt),
        _sum(earlier.completion_tokens, completion),
        earlier.usage_estimated or estimated,
        None if cost is None or earlier.cost_usd is None else earlier.cost_usd + cost,
    )


def _sum(a: int | None, b: int) -> int | None:
    return None if a is None else a + b


def _rows_insert(
    gen: "Generation",
    body: dict[str, Any],
    outcome: Outcome,
    calls: list[Call],
    prompt: int,
    completion: int,
    estimated: bool,
) -> tuple[list[ToolCall], Decimal | None]:
    cost = answer_cost(outcome.model, prompt, completion)
    api_call_record(
        kind="chat",
        model=outcome.model,
        status="tool_calls",
        user_id=gen.owner_id,
        conversation_id=gen.conversation_id,
        message_id=gen.message_id,
        prompt_tokens=prompt,
        completion_tokens=completion,
        usage_estimated=estimated,
        latency_ms=outcome.duration_ms,
        request=request_summary(body),
        cost_usd=cost or Decimal(0),
    )
    rows = ToolCall.objects.bulk_create(
        ToolCall(
            message_id=gen.message_id,
            step=call.step,
            position=call.position,
            call_id=call.asked.id[:64],
            name=call.asked.name[:64],
            tool=call.tool.key if call.tool else "",
            arguments=call.asked.arguments,
            status=call.status,
            result=call.result,
            text_offset=call.text_offset,
        )
        for call in calls
    )
    return rows, cost
