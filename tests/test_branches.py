"""The conversation as a tree: regenerate and edit add siblings, never overwrite; the branch
shown is switched in every tab; continue writes on from a cut answer; fork copies a path
into a new conversation. Each test checks what the model server was sent (only the path to
the question) and what the rows and the tabs hold."""

import threading
from decimal import Decimal

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.images import prepare_image
from conversations.models import Attachment, Conversation, Message
from conversations.selectors import shown_path
from conversations.uploads import attachment_create
from tests import imagefiles
from tests.fake_mistral import Reply
from tests.helpers import frames_until, is_final

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("review_seed")]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def frame(**fields) -> str:
    return orjson.dumps(fields).decode()


async def final(socket) -> dict:
    return [f for f in await frames_until(socket, is_final) if is_final(f)][-1]["message"]


async def ask(socket, conversation: int, text: str, **extra) -> dict:
    await socket.send_to(
        text_data=frame(type="send", conversation=conversation, text=text, **extra)
    )
    return await final(socket)


@sync_to_async
def titled(user, model: str = "mistral-small-latest") -> Conversation:
    """A conversation with a title, so no title request joins the model server's queue."""
    return Conversation.objects.create(owner=user, model=model, title="Tree")


def chats(server) -> list:
    """The chat requests a fake server got (a model list may have been asked for too)."""
    return [r for r in server.requests if r.path == "/v1/chat/completions"]


@sync_to_async
def parent_of(message_id: int) -> int | None:
    return Message.objects.get(pk=message_id).parent_id


def user_texts(body: dict) -> list:
    return [m["content"] for m in body["messages"] if m["role"] != "system"]


async def two_exchanges(user, open_socket, fake_mistral):
    conversation = await titled(user)
    socket = await open_socket(user)
    fake_mistral.enqueue(Reply.tokens(["first ", "answer"]))
    first = await ask(socket, conversation.pk, "one")
    fake_mistral.enqueue(Reply.tokens(["second ", "answer"]))
    second = await ask(socket, conversation.pk, "two")
    return conversation, socket, first, second


async def test_regenerating_an_older_answer_adds_a_sibling_and_sends_only_its_path(
    user, open_socket, fake_mistral
):
    conversation, socket, first, second = await two_exchanges(user, open_socket, fake_mistral)
    fake_mistral.requests.clear()
    fake_mistral.enqueue(Reply.tokens(["other ", "first"]))
    await socket.send_to(text_data=frame(type="regenerate", message=first["id"]))
    frames = await frames_until(socket, is_final)

    started = next(f for f in frames if f["type"] == "message")
    assert started["branch"] is True
    assert started["message"]["siblings"] == [first["id"], started["message"]["id"]]
    again = [f for f in frames if is_final(f)][-1]["message"]
    assert again["text"] == "other first"
    # The request: the path to "one" only; the second exchange is on another branch now.
    (request,) = chats(fake_mistral)
    assert user_texts(request.json) == ["one"]
    # Nothing overwritten: all five rows are there, the old answer as it was.
    rows = {m.pk: m async for m in Message.objects.filter(conversation=conversation)}
    assert len(rows) == 5
    assert rows[first["id"]].text == "first answer"
    assert rows[again["id"]].parent_id == rows[first["id"]].parent_id
    # The next question follows the new answer.
    fake_mistral.requests.clear()
    await ask(socket, conversation.pk, "three")
    assert user_texts(chats(fake_mistral)[0].json) == ["one", "other first", "three"]


async def test_regenerate_with_another_model_asks_that_model(user, open_socket, fake_mistral):
    conversation, socket, first, second = await two_exchanges(user, open_socket, fake_mistral)
    fake_mistral.requests.clear()
    await socket.send_to(
        text_data=frame(type="regenerate", message=second["id"], model="mistral-large-latest")
    )
    again = await final(socket)
    assert chats(fake_mistral)[0].json["model"] == "mistral-large-latest"
    assert again["model"] == "mistral-large-latest"
    # The conversation's own model is unchanged: the next question uses it.
    assert (await Conversation.objects.aget(pk=conversation.pk)).model == "mistral-small-latest"


async def test_regenerate_refuses_an_unknown_model_and_stores_nothing(
    user, open_socket, fake_mistral
):
    conversation, socket, first, _ = await two_exchanges(user, open_socket, fake_mistral)
    await socket.send_to(text_data=frame(type="regenerate", message=first["id"], model="nope"))
    error = (await frames_until(socket, lambda f: f["type"] == "error"))[-1]
    assert error["code"] == "unknown_model"
    assert await Message.objects.filter(conversation=conversation).acount() == 4


async def test_editing_a_question_branches_and_keeps_the_old_one(user, open_socket, fake_mistral):
    conversation, socket, first, second = await two_exchanges(user, open_socket, fake_mistral)
    question_two = await parent_of(second["id"])
    fake_mistral.requests.clear()
    fake_mistral.enqueue(Reply.tokens(["edited ", "answer"]))
    await socket.send_to(text_data=frame(type="edit", message=question_two, text="two, better"))
    frames = await frames_until(socket, is_final)
    new_question = next(f for f in frames if f["type"] == "message")
    assert new_question["branch"] is True
    assert new_question["message"]["siblings"] == [question_two, new_question["message"]["id"]]
    assert user_texts(chats(fake_mistral)[0].json) == ["one", "first answer", "two, better"]
    old = await Message.objects.aget(pk=question_two)
    assert old.text == "two"


async def test_an_edit_keeps_one_image_drops_another_and_adds_a_new_one(
    user, open_socket, fake_mistral, media
):
    conversation = await titled(user)
    socket = await open_socket(user)
    a, b = await upload(user, "a.png", (40, 30)), await upload(user, "b.png", (30, 40))
    await ask(socket, conversation.pk, "two pictures", attachments=[a.pk, b.pk])
    question = await Message.objects.aget(conversation=conversation, role="user")
    c = await upload(user, "c.png", (50, 20))
    fake_mistral.requests.clear()
    await socket.send_to(
        text_data=frame(type="edit", message=question.pk, text="these", attachments=[b.pk, c.pk])
    )
    await final(socket)

    (request,) = chats(fake_mistral)
    assert [i.size for i in request.images] == [(30, 40), (50, 20)]
    edited = await Message.objects.filter(conversation=conversation, role="user").alast()
    kept = [x async for x in Attachment.objects.filter(message=edited).order_by("position")]
    assert [x.name for x in kept] == ["b.png", "c.png"]
    # The kept image shares its files with the first question's; the first is untouched.
    assert kept[0].sent.name == b.sent.name and kept[0].pk != b.pk
    assert await Attachment.objects.filter(message=question).acount() == 2

    # Deleting the conversation removes every row; shared files go only once unnamed.
    await sync_to_async(Conversation.objects.filter(pk=conversation.pk).delete)()
    assert not (media / b.sent.name).exists()


async def test_an_edit_with_an_image_that_is_someone_elses_stores_nothing(
    user, other_user, open_socket, fake_mistral
):
    conversation, socket, first, second = await two_exchanges(user, open_socket, fake_mistral)
    theirs = await upload(other_user, "x.png", (20, 20))
    await socket.send_to(
        text_data=frame(
            type="edit", message=await parent_of(second["id"]), text="x", attachments=[theirs.pk]
        )
    )
    error = (await frames_until(socket, lambda f: f["type"] == "error"))[-1]
    assert error["code"] == "invalid_attachment"
    assert await Message.objects.filter(conversation=conversation).acount() == 4
    assert (await Conversation.objects.aget(pk=conversation.pk)).shown_leaf_id is None


async def test_actions_on_the_wrong_kind_of_message_are_refused(user, open_socket, fake_mistral):
    conversation, socket, first, second = await two_exchanges(user, open_socket, fake_mistral)
    for bad in (
        frame(type="edit", message=first["id"], text="an answer is not edited"),
        frame(type="regenerate", message=await parent_of(first["id"])),
        frame(type="continue", message=second["id"]),  # complete, not cut
    ):
        await socket.send_to(text_data=bad)
        error = (await frames_until(socket, lambda f: f["type"] == "error"))[-1]
        assert error["code"] == "not_branchable", error
    assert await Message.objects.filter(conversation=conversation).acount() == 4
    row = await Message.objects.aget(pk=second["id"])
    assert (row.status, row.text) == ("complete", "second answer")


async def test_another_users_message_is_not_found(user, other_user, open_socket, fake_mistral):
    _, _, first, _ = await two_exchanges(user, open_socket, fake_mistral)
    theirs = await open_socket(other_user)
    await theirs.send_to(text_data=frame(type="regenerate", message=first["id"]))
    error = (await frames_until(theirs, lambda f: f["type"] == "error"))[-1]
    assert error["code"] == "not_found"


async def test_continue_on_mistral_sends_the_answer_as_a_prefix_and_appends(
    user, open_socket, fake_mistral
):
    conversation = await titled(user)
    socket = await open_socket(user)
    fake_mistral.enqueue(
        Reply.tokens(["Once upon ", "a time"], finish_reason="length", usage=(10, 4))
    )
    cut = await ask(socket, conversation.pk, "tell a story")
    assert (cut["finish_reason"], cut["text"]) == ("length", "Once upon a time")
    fake_mistral.requests.clear()
    fake_mistral.enqueue(Reply.tokens([", a fox.", " The end."], usage=(14, 5)))
    await socket.send_to(text_data=frame(type="continue", message=cut["id"]))
    frames = await frames_until(socket, is_final)

    body = chats(fake_mistral)[0].json
    assert body["messages"][-1] == {
        "role": "assistant",
        "content": "Once upon a time",
        "prefix": True,
    }
    reopened = next(f for f in frames if f["type"] == "message")["message"]
    assert (reopened["id"], reopened["status"], reopened["seq"]) == (cut["id"], "pending", 0)
    deltas = [f for f in frames if f["type"] == "delta"]
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    done = [f for f in frames if is_final(f)][-1]["message"]
    assert done["text"] == "Once upon a time, a fox. The end."
    assert (done["prompt_tokens"], done["completion_tokens"]) == (24, 9)  # both calls
    row = await Message.objects.aget(pk=cut["id"])
    assert row.text == done["text"] and row.finish_reason == "stop"
    assert (
        row.cost_usd == sum([c.cost_usd async for c in row.api_calls.all()], Decimal(0))
        and row.cost_usd > 0
    )
    assert await Message.objects.filter(conversation=conversation).acount() == 2


async def test_continue_elsewhere_asks_with_a_plain_follow_up(user, open_socket, lab):
    conversation = await titled(user, model="lab/llama3.2:1b")
    socket = await open_socket(user)
    lab.enqueue(Reply.tokens(["Half"], finish_reason="length"))
    cut = await ask(socket, conversation.pk, "go")
    lab.requests.clear()
    lab.enqueue(Reply.tokens([" and the rest."]))
    await socket.send_to(text_data=frame(type="continue", message=cut["id"]))
    done = await final(socket)
    messages = chats(lab)[0].json["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1] == {"role": "assistant", "content": "Half"}
    assert "cut off" in messages[2]["content"]
    assert done["text"] == "Half and the rest."


async def test_a_prefix_that_is_not_last_is_what_mistral_refuses(fake_mistral):
    """The fake server holds the API's order rule, so the continue test above means something."""
    from tests.fake_mistral import message_order_error

    assert message_order_error([{"role": "user", "content": "q"}]) is None
    assert (
        message_order_error(
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "prefix": True},
            ]
        )
        is None
    )
    assert message_order_error(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    )


# Switching branches


@sync_to_async
def post(client, name: str, pk: int, **data):
    return client.post(reverse(name, args=[pk]), data)


@pytest.fixture
def signed_client(client, user):
    client.force_login(user)
    return client


async def test_switching_branches_shows_the_older_one_in_every_tab(
    user, open_socket, fake_mistral, signed_client
):
    conversation, socket, first, second = await two_exchanges(user, open_socket, fake_mistral)
    other_tab = await open_socket(user)
    await other_tab.send_to(text_data=frame(type="subscribe", conversation=conversation.pk))
    await frames_until(other_tab, lambda f: f["type"] == "subscribed")
    await socket.send_to(text_data=frame(type="regenerate", message=first["id"]))
    await final(socket)

    response = await post(
        signed_client, "conversation_branch", conversation.pk, message=first["id"]
    )
    assert response.status_code == 200
    data = response.json()
    assert data["leaf"] == second["id"]  # down the first answer's side, to where it ended
    assert "second answer" in data["html"] and "other first" not in data["html"]
    switched = (await frames_until(other_tab, lambda f: f["type"] == "branch"))[-1]
    assert switched == {"type": "branch", "conversation": conversation.pk, "leaf": second["id"]}
    # A reload shows it too, and the next question goes under it.
    page = await sync_to_async(signed_client.get)(reverse("conversation", args=[conversation.pk]))
    assert b"second answer" in page.content and b"other first" not in page.content
    fake_mistral.requests.clear()
    await ask(socket, conversation.pk, "three")
    assert user_texts(chats(fake_mistral)[0].json) == [
        "one",
        "first answer",
        "two",
        "second answer",
        "three",
    ]


async def test_a_switch_costs_the_same_few_queries_with_many_branches(
    user, open_socket, fake_mistral, signed_client
):
    conversation, socket, first, second = await two_exchanges(user, open_socket, fake_mistral)

    @sync_to_async
    def queries_of_a_switch(message_id: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            response = signed_client.post(
                reverse("conversation_branch", args=[conversation.pk]), {"message": message_id}
            )
            assert response.status_code == 200
        return len(queries)

    few = await queries_of_a_switch(first["id"])

    @sync_to_async
    def grow():
        answers = list(Message.objects.filter(conversation=conversation, role="assistant"))
        Message.objects.bulk_create(
            Message(
                conversation=conversation, role="assistant", text=f"v{n}", parent_id=a.parent_id
            )
            for a in answers
            for n in range(50)
        )

    await grow()
    assert await queries_of_a_switch(first["id"]) == few


async def test_a_switch_to_a_message_elsewhere_is_refused(
    user, other_user, open_socket, fake_mistral, signed_client, client
):
    conversation, socket, first, second = await two_exchanges(user, open_socket, fake_mistral)
    elsewhere = await titled(user)
    response = await post(signed_client, "conversation_branch", elsewhere.pk, message=first["id"])
    assert response.status_code == 400
    response = await post(signed_client, "conversation_branch", conversation.pk, message="x")
    assert response.status_code == 400
    await sync_to_async(client.force_login)(other_user)
    response = await post(client, "conversation_branch", conversation.pk, message=first["id"])
    assert response.status_code == 404
    assert (await Conversation.objects.aget(pk=conversation.pk)).shown_leaf_id is None


async def test_a_switch_while_another_branch_streams_loses_nothing(
    user, open_socket, fake_mistral, signed_client
):
    conversation, socket, first, second = await two_exchanges(user, open_socket, fake_mistral)
    release = threading.Event()
    fake_mistral.enqueue(Reply.tokens(["slow ", "and ", "whole"], gate=release))
    await socket.send_to(text_data=frame(type="regenerate", message=second["id"]))
    await frames_until(socket, lambda f: f["type"] == "delta")
    # Another tab switches to the first answer's side while the new answer streams.
    response = await post(
        signed_client, "conversation_branch", conversation.pk, message=second["id"]
    )
    assert response.status_code == 200
    release.set()
    done = await final(socket)
    assert done["text"] == "slow and whole"
    row = await Message.objects.aget(pk=done["id"])
    assert (row.status, row.text) == ("complete", "slow and whole")
    # The switch holds: the page shows the old answer, the new one is a sibling away.
    page = await sync_to_async(signed_client.get)(reverse("conversation", args=[conversation.pk]))
    assert b"second answer" in page.content and b"slow and whole" not in page.content


async def test_a_tab_that_reconnects_after_a_switch_is_told_to_reload(
    user, open_socket, fake_mistral, signed_client
):
    conversation, socket, first, second = await two_exchanges(user, open_socket, fake_mistral)
    await socket.send_to(text_data=frame(type="regenerate", message=second["id"]))
    again = await final(socket)
    # A tab that last showed the regenerated answer comes back after a switch away from it.
    await post(signed_client, "conversation_branch", conversation.pk, message=second["id"])
    tab = await open_socket(user)
    await tab.send_to(
        text_data=frame(type="subscribe", conversation=conversation.pk, since=again["id"])
    )
    subscribed = (await frames_until(tab, lambda f: f["type"] == "subscribed"))[-1]
    assert subscribed["reload"] is True
    # One on the shown branch just catches up.
    tab = await open_socket(user)
    await tab.send_to(
        text_data=frame(type="subscribe", conversation=conversation.pk, since=second["id"])
    )
    subscribed = (await frames_until(tab, lambda f: f["type"] == "subscribed"))[-1]
    assert "reload" not in subscribed
    assert [m["id"] for m in subscribed["messages"]] == [second["id"]]


# Fork


async def test_fork_from_an_answer_copies_the_path_into_a_new_conversation(
    user, open_socket, fake_mistral, signed_client, media
):
    conversation = await titled(user)
    socket = await open_socket(user)
    picture = await upload(user, "p.png", (30, 30))
    first = await ask(socket, conversation.pk, "look", attachments=[picture.pk])
    await ask(socket, conversation.pk, "two")
    response = await post(signed_client, "conversation_fork", conversation.pk, message=first["id"])
    assert response.status_code == 201
    data = response.json()
    assert data["draft"] == ""
    fork = await Conversation.objects.aget(pk=data["conversation"]["id"])
    assert data["url"] == reverse("conversation", args=[fork.pk])
    assert fork.title == "Tree (fork)" and fork.model == conversation.model
    texts = [m.text async for m in Message.objects.filter(conversation=fork).order_by("id")]
    assert texts == ["look", first["text"]]
    copied = await Attachment.objects.aget(message__conversation=fork)
    assert copied.sent.name == picture.sent.name
    # The fork's request carries its own path; deleting the original keeps the fork whole.
    await sync_to_async(Conversation.objects.filter(pk=conversation.pk).delete)()
    assert (media / copied.sent.name).exists()
    fake_mistral.requests.clear()
    await ask(socket, fork.pk, "and now?")
    request = chats(fake_mistral)[0]
    assert [m["role"] for m in request.json["messages"]] == ["user", "assistant", "user"]
    assert len(request.images) == 1


async def test_fork_from_a_question_leaves_it_as_a_draft(
    user, open_socket, fake_mistral, signed_client
):
    conversation, socket, first, second = await two_exchanges(user, open_socket, fake_mistral)
    response = await post(
        signed_client, "conversation_fork", conversation.pk, message=await parent_of(second["id"])
    )
    data = response.json()
    assert data["draft"] == "two"
    texts = [
        m.text async for m in Message.objects.filter(conversation_id=data["conversation"]["id"])
    ]
    assert texts == ["one", "first answer"]


# The migration


@pytest.mark.django_db(transaction=True)
def test_conversations_before_the_tree_become_single_paths():
    from django.contrib.auth import get_user_model
    from django.db.migrations.executor import MigrationExecutor

    before = [("conversations", "0010_answer_cost")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = MigrationExecutor(connection).loader.project_state(before).apps
    owner = old.get_model(*get_user_model()._meta.label.split(".")).objects.create(username="o")
    OldConversation = old.get_model("conversations", "Conversation")
    OldMessage = old.get_model("conversations", "Message")
    made = {}
    for title in ("a", "b"):
        c = OldConversation.objects.create(owner_id=owner.pk, model="m", title=title)
        made[c.pk] = [
            OldMessage.objects.create(conversation=c, role=r, text=f"{title}{n}").pk
            for n, r in enumerate(["user", "assistant", "user", "assistant"])
        ]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    for conversation_id, ids in made.items():
        parents = dict(
            Message.objects.filter(conversation_id=conversation_id).values_list("id", "parent_id")
        )
        assert [parents[pk] for pk in ids] == [None, *ids[:-1]]
        c = Conversation.objects.get(pk=conversation_id)
        assert c.shown_leaf_id is None
        assert shown_path(c).ids == ids


@sync_to_async
def upload(user, name: str, size: tuple[int, int]) -> Attachment:
    image = prepare_image(name=name, data=imagefiles.png(size), max_side=1540)
    return attachment_create(owner=user, image=image)
