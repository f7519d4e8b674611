"""What each answer cost and what the conversation used in all, as the reader sees them:
the ending frame and the row carry the answer's cost at the admin's prices, the local model
is free, a model with no price shows no cost rather than a guess, small amounts keep their
digits, and conversations from before the cost column get theirs from their calls."""

from decimal import Decimal

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from conversations.live.frames import answer_meta
from conversations.models import ApiCall, Conversation, Message
from conversations.usage import answer_cost, usd_short
from tests.fake_mistral import Reply
from tests.helpers import frames_until, is_final, message_create, until

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("review_seed")]  # seeded prices


def send(text: str, conversation: int | None = None) -> str:
    return orjson.dumps({"type": "send", "conversation": conversation, "text": text}).decode()


async def final_frame(socket, text: str, conversation: int | None = None) -> dict:
    await socket.send_to(text_data=send(text, conversation))
    return (await frames_until(socket, is_final))[-1]


@pytest.mark.django_db(transaction=True)
async def test_each_answer_carries_its_cost_and_the_conversation_its_totals(
    user, open_socket, fake_mistral
):
    fake_mistral.enqueue(Reply.tokens(["Hel", "lo"], usage=(1200, 300)))
    fake_mistral.enqueue(Reply.tokens(["Greetings"], usage=(80, 3)))  # the title
    socket = await open_socket(user)
    first = await final_frame(socket, "Say hello")
    # mistral-small-latest: $0.2 in and $0.6 out per million tokens.
    assert first["message"]["cost_usd"] == "0.00042"
    assert first["totals"] == {"tokens": 1500, "cost_usd": "0.00042"}

    # The title is asked for after the first answer: let it take its reply first.
    await until(lambda: ApiCall.objects.filter(kind="title").exists())
    fake_mistral.enqueue(Reply.tokens(["Again"], usage=(2000, 100)))
    conversation = first["message"]["conversation"]
    second = await final_frame(socket, "Once more", conversation)
    assert second["message"]["cost_usd"] == "0.00046"
    assert second["totals"] == {"tokens": 3600, "cost_usd": "0.00088"}

    row = await Message.objects.aget(pk=first["message"]["id"])
    assert row.cost_usd == Decimal("0.00042")
    assert " · 1,200 in · 300 out tokens · $0.00042 · first token " in answer_meta(row)


def test_the_page_shows_each_answers_cost_and_the_totals_under_the_title(client, user):
    conversation = Conversation.objects.create(owner=user, model="mistral-small-latest")
    for prompt, completion, cost in ((1200, 300, "0.00042"), (2000, 100, "0.00046")):
        message_create(conversation=conversation, role="user", text="Hi")
        message_create(
            conversation=conversation,
            role="assistant",
            text="Hello",
            model="mistral-small-latest",
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=Decimal(cost),
        )
    client.force_login(user)
    page = client.get(reverse("conversation", args=[conversation.pk])).content.decode()
    assert "3,600 tokens · $0.00088</p>" in page
    assert "mistral-small-latest · 2,000 in · 100 out tokens · $0.00046" in page
    # A new chat has no totals line to show.
    assert 'id="conv-totals" aria-label="Used by this conversation\'s answers" hidden>' in (
        client.get(reverse("chat")).content.decode()
    )


def test_the_local_model_is_free_and_a_model_without_a_price_shows_none():
    assert answer_cost("local/smollm2-135m", 500, 200) == 0
    assert usd_short(answer_cost("local/smollm2-135m", 500, 200)) == "free"
    assert answer_cost("lab/some-model-nobody-priced", 500, 200) is None
    assert answer_cost("mistral-large-2411", 1_000_000, 500_000) == Decimal(5)


@pytest.mark.parametrize(
    ("usd", "shown"),
    [
        ("0", "free"),
        ("0.00000012", "$0.00000012"),
        ("0.00042", "$0.00042"),
        ("0.0049999", "$0.0050"),
        ("0.042", "$0.042"),
        ("0.5", "$0.50"),
        ("1234.5", "$1,234.50"),
    ],
)
def test_small_amounts_keep_their_digits(usd, shown):
    assert usd_short(Decimal(usd)) == shown


@pytest.mark.django_db(transaction=True)
def test_answers_stored_before_the_cost_column_get_it_from_their_calls():
    executor = MigrationExecutor(connection)
    executor.migrate([("conversations", "0009_invites_signup_requests")])
    old = (
        MigrationExecutor(connection)
        .loader.project_state([("conversations", "0009_invites_signup_requests")])
        .apps
    )
    user = old.get_model(*get_user_model()._meta.label.split(".")).objects.create(username="o")
    conversation = old.get_model("conversations", "Conversation").objects.create(
        owner_id=user.pk, model="mistral-small-latest"
    )
    OldMessage = old.get_model("conversations", "Message")
    ApiCall = old.get_model("conversations", "ApiCall")
    answers = {}
    for model, cost in (
        ("mistral-small-latest", "0.00042"),
        ("lab/unpriced", "0"),
        ("local/smollm2-135m", "0"),
        ("mistral-small-latest", None),  # no call was sent (refused before it)
    ):
        answer = OldMessage.objects.create(conversation=conversation, role="assistant", model=model)
        answers[answer.pk] = None if cost is None else Decimal(cost)
        if cost is not None:
            ApiCall.objects.create(
                kind="chat", model=model, message=answer, cost_usd=Decimal(cost), request={}
            )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    costs = dict(Message.objects.values_list("pk", "cost_usd"))
    pks = list(answers)
    assert [costs[pk] for pk in pks] == [Decimal("0.00042"), None, Decimal(0), None]
