"""The socket protocol (docs/protocol.md): each browser frame is parsed, checked against
its sender, handed to a service or the generation, and answered; group events become
frames. Nothing here talks to the model server or renders markdown."""

import contextlib
import logging
from typing import Any

# daphne (autobahn) raises this for a send on a socket the browser has just closed.
from autobahn.exception import Disconnected
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chatsite import fast_path
from chatsite.fast_path import daphne_frames
from chatsite.fast_path.consumer_dispatch import DirectDispatch
from conversations.branches import (
    Branched,
    NotBranchable,
    answer_continue,
    answer_regenerate,
    question_edit,
)
from conversations.limits import LimitReached
from conversations.live import broadcast, draining, recovery
from conversations.live.control import remote_request, stop_elsewhere, worker_channel
from conversations.live.frames import conversation_data, message_data
from conversations.live.generation import (
    generation_start,
    generation_stop,
    live_message_data,
    running,
)
from conversations.live.protocol import NOT_FOUND, ProtocolError, encode, parse_frame
from conversations.live.tool_steps import tool_decide
from conversations.models import Message
from conversations.modelservers import providers
from conversations.selectors import (
    ConversationNotFound,
    access_conversation,
    access_message,
    access_tool_call,
    active_answers,
    messages_since,
    with_tool_calls,
)
from conversations.services import (
    AnswerInProgress,
    AttachmentsRejected,
    CallNotWaiting,
    Question,
    questions_submit,
    tool_call_decide,
)
from conversations.trips import Trips

logger = logging.getLogger(__name__)

# Close code for "not signed in" and "your session ended"; the page goes to the login.
CLOSE_UNAUTHENTICATED = 4401
# This process is shutting down; the page reconnects (to another process, behind a proxy).
# RFC 6455's registered "service restart" is 1012, but autobahn, daphne's websocket library,
# refuses to send any code but 1000 and 3000-4999 (sendClose raises): hence its private twin.
CLOSE_RESTARTING = 4012


# Questions sent at the same moment, from any tab, are stored in one database trip.
_questions_stored = Trips(questions_submit)


class ChatConsumer(DirectDispatch, AsyncWebsocketConsumer):
    watching: int | None = None
    write_direct: daphne_frames.TextWriter | None = None

    async def connect(self) -> None:
        self.user = self.scope["user"]
        self.write_direct = self.scope.get("extensions", {}).get(daphne_frames.EXTENSION)
        if not self.user.is_authenticated:
            await self.accept()  # accepted first, so the browser sees why it is closed
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await recovery.keeper_start()  # already running under daphne (live/shutdown.py)
        await self.channel_layer.group_add(broadcast.user_group(self.user.pk), self.channel_name)
        await self.accept()
        _open_tabs.add(self)

    async def disconnect(self, code: int) -> None:
        if not self.user.is_authenticated:
            return
        _open_tabs.discard(self)
        await self._unwatch()
        await self.channel_layer.group_discard(
            broadcast.user_group(self.user.pk), self.channel_name
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = parse_frame(
                text_data if text_data is not None else bytes_data or b"",
                max_text_chars=settings.CHAT_MAX_MESSAGE_CHARS,
            )
            handler = getattr(self, f"on_{frame['type']}")
            await handler(frame)
        except ProtocolError as err:
            await self.send_error(err.code, err.message)
        except ConversationNotFound:
            await self.send_error("not_found", NOT_FOUND)

    # Browser frames

    async def on_subscribe(self, frame: dict[str, Any]) -> None:
        conversation = await database_sync_to_async(access_conversation)(
            user=self.user, conversation_id=frame["conversation"]
        )
        await self._watch(conversation.pk)
        if "since" in frame:
            since = await database_sync_to_async(messages_since)(
                conversation=conversation, since_id=frame["since"]
            )
            messages, reload = since.messages, since.reload
        else:
            messages = await database_sync_to_async(active_answers)(conversation_id=conversation.pk)
            reload = False
        # Live state is read and sent with no await in between, so the next delta
        # this tab receives is exactly the one after the `seq` it is given here.
        subscribed = {
            "type": "subscribed",
            "conversation": conversation.pk,
            "messages": [live_message_data(m) for m in messages],
        }
        if reload:  # the branch shown changed while this tab was away: it reloads the thread
            subscribed["reload"] = True
        await self.send_json(subscribed)
        await self._ask_for_remote_state(messages)

    async def on_send(self, frame: dict[str, Any]) -> None:
        if draining.draining():
            await self.send_restarting()
            return
        model = frame.get("model")
        if frame["conversation"] is None and model and not await providers.model_offered(model):
            await self._unknown_model(model)
            return
        try:
            submitted = await _questions_stored(
                Question(
                    user=self.user,
                    conversation_id=frame["conversation"],
                    model=model or providers.default_model(),
                    text=frame["text"],
                    worker=await worker_channel(),
                    attachment_ids=frame.get("attachments"),
                    document_ids=frame.get("documents"),
                    tools=frame.get("tools"),
                    temporary=frame.get("temporary", False),
                    session_key=self.scope["session"].session_key or "",
                )
            )
        except AnswerInProgress as busy:
            await self.send_busy(busy.args[0])
            return
        except (AttachmentsRejected, LimitReached) as err:
            await self.send_error(err.code, err.message)
            return
        conversation, answer = submitted.conversation, submitted.answer
        if submitted.created:
            created = {"type": "conversation", "conversation": conversation_data(conversation)}
            await self.send_json(created)
            await broadcast.user_publish(self.user.pk, created)
        await self._watch(conversation.pk)
        await broadcast.conversation_publish(
            conversation.pk,
            *(
                {"type": "message", "message": message_data(m)}
                for m in (submitted.question, answer)
            ),
        )
        generation_start(conversation=conversation, answer=answer, history=submitted.history)

    async def on_stop(self, frame: dict[str, Any]) -> None:
        conversation = await database_sync_to_async(access_conversation)(
            user=self.user, conversation_id=frame["conversation"]
        )
        if not generation_stop(conversation.pk):
            for answer in await database_sync_to_async(active_answers)(
                conversation_id=conversation.pk
            ):
                await stop_elsewhere(answer)

    async def on_retry(self, frame: dict[str, Any]) -> None:
        """An answer that failed or was cut, tried again: a new answer beside it."""
        await self.on_regenerate(frame)

    async def on_regenerate(self, frame: dict[str, Any]) -> None:
        model = frame.get("model")
        if model and not await providers.model_offered(model):
            await self._unknown_model(model)
            return
        await self._branch(
            frame,
            lambda message, worker: answer_regenerate(answer=message, model=model, worker=worker),
        )

    async def on_edit(self, frame: dict[str, Any]) -> None:
        await self._branch(
            frame,
            lambda message, worker: question_edit(
                question=message,
                text=frame["text"],
                attachment_ids=frame.get("attachments", []),
                document_ids=frame.get("documents", []),
                worker=worker,
            ),
        )

    async def on_continue(self, frame: dict[str, Any]) -> None:
        earlier = None

        def reopened(message: Message, worker: str) -> Branched:
            nonlocal earlier
            branched, earlier = answer_continue(answer=message, worker=worker)
            return branched

        await self._branch(frame, reopened, earlier=lambda: earlier)

    async def _branch(self, frame: dict[str, Any], write, earlier=lambda: None) -> None:
        """Regenerate, edit or continue: the write, then its messages to every tab and the
        answer started. The refusals are error frames; nothing is stored by a refused one."""
        message = await database_sync_to_async(access_message)(
            user=self.user, message_id=frame["message"]
        )
        if draining.draining():
            await self.send_restarting()
            return
        if running(message.conversation_id) is not None:
            await self.send_busy(message.conversation_id)
            return
        try:
            branched = await database_sync_to_async(write)(message, await worker_channel())
        except AnswerInProgress:
            await self.send_busy(message.conversation_id)
            return
        except NotBranchable as err:
            await self.send_error("not_branchable", err.message)
            return
        except (AttachmentsRejected, LimitReached) as err:
            await self.send_error(err.code, err.message)
            return
        answer = branched.answer
        await self._watch(answer.conversation_id)
        generation_start(
            conversation=branched.conversation,
            answer=answer,
            history=branched.history,
            model=answer.model,
            earlier=earlier(),
        )
        # After the start, read with no await between: a continued answer's frame is its
        # live state (its text so far, `seq` 0), which its first delta follows.
        # The first message of a new branch cuts the thread after its parent in every tab;
        # a continued answer stays where it is.
        shown = [branched.question, answer] if branched.question else [answer]
        new_branch = earlier() is None
        await broadcast.conversation_publish(
            answer.conversation_id,
            *(
                {
                    "type": "message",
                    "message": live_message_data(m),
                    "branch": new_branch and m is shown[0],
                }
                for m in shown
            ),
        )

    async def _unknown_model(self, model: str) -> None:
        await self.send_error(
            "unknown_model",
            f"No model server of this site offers {model[:100]!r}. Choose a model from the list.",
        )

    async def on_tool_approve(self, frame: dict[str, Any]) -> None:
        """Run (or not) a tool call waiting for this user's approval: stored on its row,
        and handed to the answer when it runs here (elsewhere it reads the row)."""
        call = await database_sync_to_async(access_tool_call)(user=self.user, call_id=frame["call"])
        try:
            await database_sync_to_async(tool_call_decide)(call=call, approve=frame["approve"])
        except CallNotWaiting:
            await self.send_error("not_waiting", "This tool call is no longer waiting.")
            return
        tool_decide(call.pk, frame["approve"])

    async def on_resync(self, frame: dict[str, Any]) -> None:
        message = await database_sync_to_async(access_message)(
            user=self.user, message_id=frame["message"]
        )
        if running(message.conversation_id) is None:  # else the calls come from memory
            await database_sync_to_async(with_tool_calls)([message])
        await self.send_json({"type": "message", "message": live_message_data(message)})
        await self._ask_for_remote_state([message])

    # Channel-layer events

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Events are handled without Channels' hop to the database thread while the fast
        # path runs (chatsite/fast_path/consumer_dispatch.py); the one event sent per delta
        # goes to its handler without even a lookup.
        if message["type"] == "relay.frame" and fast_path.active.consumer_dispatch:
            await self.relay_frame(message)
            return
        await super().dispatch(message)

    async def relay_frame(self, event: dict[str, Any]) -> None:
        if event["origin"] != broadcast.PROCESS_ID:  # this process's tabs already have it
            await self.send_frame(event["text"].encode())

    async def session_end(self, event: dict[str, Any]) -> None:
        await self.close(code=CLOSE_UNAUTHENTICATED)

    # Sending

    async def send_frame(self, data: bytes) -> None:
        """Send a text frame's UTF-8 `data`; a tab that has just gone away is skipped, not an
        error for the answer being broadcast (its disconnect arrives next). Under daphne the
        frame is written to the connection directly when it can be
        (chatsite/fast_path/daphne_frames.py)."""
        if self.write_direct is not None and self.write_direct(data):
            return
        with contextlib.suppress(Disconnected):
            await self.base_send({"type": "websocket.send", "text": data.decode()})

    async def send_json(self, frame: dict[str, Any]) -> None:
        await self.send_frame(encode(frame))

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, **extra})

    async def send_busy(self, conversation_id: int) -> None:
        await self.send_error(
            "busy",
            "An answer is still being written in this conversation.",
            conversation=conversation_id,
        )

    async def send_restarting(self) -> None:
        await self.send_error(
            "restarting", "This server is restarting: your message was not sent. Send it again."
        )

    async def _ask_for_remote_state(self, messages: list[Message]) -> None:
        """Answers running in another process were sent as last saved; their process is
        asked to send this tab the live state, which replaces it."""
        for message in messages:
            if message.is_active and running(message.conversation_id) is None:
                await remote_request(message, "state", reply_to=self.channel_name)

    async def _watch(self, conversation_id: int) -> None:
        if self.watching == conversation_id:
            return
        await self._unwatch()
        self.watching = conversation_id
        broadcast.watch(conversation_id, self)
        if broadcast.other_processes_listen():
            await self.channel_layer.group_add(
                broadcast.conversation_group(conversation_id), self.channel_name
            )

    async def _unwatch(self) -> None:
        if self.watching is None:
            return
        conversation_id, self.watching = self.watching, None
        broadcast.unwatch(conversation_id, self)
        if broadcast.other_processes_listen():
            await self.channel_layer.group_discard(
                broadcast.conversation_group(conversation_id), self.channel_name
            )


# Every signed-in socket of this process, for the last step of a shutdown.
_open_tabs: set[ChatConsumer] = set()


async def tabs_close(code: int) -> None:
    """Close every socket of this process with `code`."""
    for tab in tuple(_open_tabs):
        try:
            await tab.close(code=code)
        except Exception:  # one broken socket must not keep the others open; never silently
            logger.exception("Closing a socket with %s failed", code)
    _open_tabs.clear()
