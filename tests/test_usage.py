"""Usage and cost: every call is recorded with its tokens and price, prices match by id
or prefix, and a user over their daily budget gets a clear failure with nothing sent."""

from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from django.utils import timezone

from conversations.errors import BudgetExceeded
from conversations.models import ApiCall, Message, ModelPrice
from conversations.usage import (
    api_call_record,
    call_cost,
    check_daily_budget,
    price_for,
    request_summary,
)
from tests.fake_mistral import Reply
from tests.helpers import frames_until, is_final, until

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("review_seed")]  # seeded prices


def send(text: str, conversation: int | None = None) -> str:
    return orjson.dumps({"type": "send", "conversation": conversation, "text": text}).decode()


async def ask(socket, text: str) -> dict:
    await socket.send_to(text_data=send(text))
    frames = await frames_until(socket, is_final)
    return frames[-1]["message"]


@pytest.mark.django_db
def test_seeded_prices_give_mistrals_published_rates():
    large = price_for("mistral-large-latest")
    medium = price_for("mistral-medium-2508")
    small = price_for("mistral-small-latest")
    assert (large.input_per_million, large.output_per_million) == (Decimal(2), Decimal(6))
    assert (medium.input_per_million, medium.output_per_million) == (
        Decimal("0.4"),
        Decimal(2),
    )
    assert (small.input_per_million, small.output_per_million) == (
        Decimal("0.2"),
        Decimal("0.6"),
    )


@pytest.mark.django_db
def test_cost_of_a_call_is_tokens_times_price_per_million():
    large = price_for("mistral-large-2411")
    assert call_cost(large, prompt_tokens=1_000_000, completion_tokens=500_000) == Decimal(5)
    small = price_for("mistral-small-latest")
    cost = call_cost(small, prompt_tokens=1234, completion_tokens=567)
    assert cost == Decimal("0.0002468") + Decimal("0.0003402")


@pytest.mark.django_db
def test_ocr_is_priced_per_page():
    ocr = price_for("mistral-ocr-latest")
    assert call_cost(ocr, prompt_tokens=0, completion_tokens=0, pages=250) == Decimal("0.25")


@pytest.mark.django_db
def test_longest_matching_prefix_wins_and_only_up_to_a_dash():
    ModelPrice.objects.create(
        model="mistral-large-2411", input_usd_per_million=3, output_usd_per_million=9
    )
    assert price_for("mistral-large-2411").input_per_million == Decimal(3)
    assert price_for("mistral-large-latest").input_per_million == Decimal(2)
    # "mistral-smallish" is not a "mistral-small" model.
    assert price_for("mistral-smallish").input_per_million == Decimal(0)


@pytest.mark.django_db
def test_local_model_costs_nothing_even_with_a_matching_price_row():
    ModelPrice.objects.create(model="local", input_usd_per_million=5, output_usd_per_million=5)
    call = api_call_record(
        kind="chat",
        model="local/smollm2-135m",
        status="complete",
        prompt_tokens=10_000,
        completion_tokens=10_000,
    )
    assert (call.provider, call.cost_usd) == ("local", Decimal(0))


@pytest.mark.django_db
def test_price_edited_in_the_admin_applies_to_later_calls_only():
    before = api_call_record(
        kind="chat", model="mistral-small-latest", status="complete", prompt_tokens=1_000_000
    )
    ModelPrice.objects.filter(model="mistral-small").update(input_usd_per_million=1)
    after = api_call_record(
        kind="chat", model="mistral-small-latest", status="complete", prompt_tokens=1_000_000
    )
    before.refresh_from_db()
    assert (before.cost_usd, after.cost_usd) == (Decimal("0.2"), Decimal(1))


def test_request_summary_keeps_sizes_and_drops_text_and_base64():
    blob = "A" * 4000
    body = {
        "model": "pixtral-large-latest",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": f"data:image/jpeg;base64,{blob}"},
                ],
            },
        ],
        "temperature": 0.2,
        "stream": True,
    }
    summary = request_summary(body)
    assert summary == {
        "model": "pixtral-large-latest",
        "messages": [
            {"role": "system", "parts": [{"type": "text", "chars": 9}]},
            {
                "role": "user",
                "parts": [
                    {"type": "text", "chars": 13},
                    {"type": "image_url", "mime": "image/jpeg", "bytes": 3000},
                ],
            },
        ],
        "temperature": 0.2,
    }
    assert blob not in orjson.dumps(summary).decode()


@pytest.mark.django_db(transaction=True)
async def test_answer_and_title_calls_are_recorded_with_usage_and_cost(
    user, open_socket, fake_mistral
):
    fake_mistral.enqueue(Reply.tokens(["Hel", "lo"], usage=(1200, 300)))
    fake_mistral.enqueue(Reply.tokens(["Greetings"], usage=(80, 3)))
    socket = await open_socket(user)
    answer = await ask(socket, "Say hello")

    calls = await until(
        lambda: list(ApiCall.objects.order_by("id")) if ApiCall.objects.count() == 2 else None
    )
    chat, title = calls
    assert (chat.kind, chat.model, chat.status, chat.user_id, chat.message_id) == (
        "chat",
        "mistral-small-latest",
        "complete",
        user.pk,
        answer["id"],
    )
    assert (chat.prompt_tokens, chat.completion_tokens) == (1200, 300)
    assert chat.cost_usd == Decimal("0.00024") + Decimal("0.00018")
    assert chat.latency_ms == answer["duration_ms"]
    assert chat.request["messages"] == [{"role": "user", "parts": [{"type": "text", "chars": 9}]}]
    assert (title.kind, title.model, title.prompt_tokens, title.completion_tokens) == (
        "title",
        "ministral-8b-latest",
        80,
        3,
    )
    assert title.conversation_id == chat.conversation_id
    assert title.cost_usd == Decimal("0.0000083")


@pytest.mark.django_db(transaction=True)
async def test_failed_call_is_recorded_with_its_error_code(user, open_socket, fake_mistral):
    fake_mistral.enqueue(Reply.unauthorized())
    socket = await open_socket(user)
    answer = await ask(socket, "Hi")
    assert answer["status"] == "failed"
    call = await until(lambda: ApiCall.objects.filter(kind="chat").first())
    assert (call.status, call.error_code, call.prompt_tokens, call.cost_usd) == (
        "failed",
        "auth",
        0,
        Decimal(0),
    )


@pytest.mark.django_db(transaction=True)
async def test_over_the_daily_token_budget_nothing_is_sent_upstream(
    user, open_socket, fake_mistral, settings
):
    settings.CHAT_DAILY_TOKEN_BUDGET = 1000
    await ApiCall.objects.acreate(
        kind="chat", model="mistral-small-latest", status="complete", user=user,
        prompt_tokens=900, completion_tokens=100,
    )  # fmt: skip
    socket = await open_socket(user)
    answer = await ask(socket, "One more question")

    assert (answer["status"], answer["error_code"]) == ("failed", "budget")
    assert "daily allowance of 1,000 tokens" in answer["error_text"]
    assert fake_mistral.requests == []
    row = await Message.objects.aget(pk=answer["id"])
    assert (row.status, row.error_code) == ("failed", "budget")
    assert await ApiCall.objects.acount() == 1  # nothing new was called, so nothing billed


@pytest.mark.django_db
def test_cost_budget_counts_only_today_and_only_this_user(user, other_user, settings):
    settings.CHAT_DAILY_COST_BUDGET_USD = 0.5
    yesterday = ApiCall.objects.create(
        kind="chat", model="m", status="complete", user=user, cost_usd=Decimal(10)
    )
    ApiCall.objects.filter(pk=yesterday.pk).update(
        created_at=timezone.now() - timedelta(days=1, hours=1)
    )
    ApiCall.objects.create(
        kind="chat", model="m", status="complete", user=other_user, cost_usd=Decimal(10)
    )
    check_daily_budget(user_id=user.pk)  # under budget: no exception

    ApiCall.objects.create(
        kind="title", model="m", status="complete", user=user, cost_usd=Decimal("0.5")
    )
    with pytest.raises(BudgetExceeded, match=r"daily allowance of \$0\.50"):
        check_daily_budget(user_id=user.pk)


@pytest.mark.django_db
def test_no_budget_set_never_refuses(user, settings):
    settings.CHAT_DAILY_TOKEN_BUDGET = 0
    settings.CHAT_DAILY_COST_BUDGET_USD = 0
    ApiCall.objects.create(
        kind="chat", model="m", status="complete", user=user, prompt_tokens=10**9
    )
    check_daily_budget(user_id=user.pk)


@pytest.mark.django_db(transaction=True)
async def test_answer_that_uses_up_the_budget_gets_no_title_call(
    user, open_socket, fake_mistral, settings
):
    settings.CHAT_DAILY_TOKEN_BUDGET = 100
    fake_mistral.enqueue(Reply.tokens(["Done."], usage=(90, 20)))
    socket = await open_socket(user)
    answer = await ask(socket, "Summarise this\nplease")
    assert answer["status"] == "complete"
    titled = await frames_until(
        socket, lambda f: f["type"] == "conversation" and f["conversation"]["title"]
    )
    assert titled[-1]["conversation"]["title"] == "Summarise this"
    assert len(fake_mistral.requests) == 1  # the answer only
    assert [c.kind async for c in ApiCall.objects.all()] == ["chat"]
