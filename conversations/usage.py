"""Usage and cost: every call to a model server is recorded as an `ApiCall` row with its
tokens, latency, status and cost; prices come from the `ModelPrice` table; an optional
daily budget per user stops a request before it is sent.

Recording is one plain sync function, `api_call_record()`, for any kind of call (chat,
titles, embeddings, OCR); async code awaits it through `database_sync_to_async`, once per
call and never per token. Reads for the admin's usage page sit here too, so every sum of
tokens or dollars is computed in one module.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, DecimalField, IntegerField, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from conversations import plain_sql
from conversations.documents.passages import page_ranges, pages_marked
from conversations.errors import BudgetExceeded
from conversations.models import ApiCall, Message, ModelPrice
from conversations.modelservers import model_ids

MILLION = Decimal(1_000_000)
THOUSAND = Decimal(1_000)
# Providers we run ourselves: their models cost nothing.
FREE_PROVIDERS = frozenset({model_ids.LOCAL})


@dataclass(frozen=True, slots=True)
class Price:
    input_per_million: Decimal = Decimal(0)
    output_per_million: Decimal = Decimal(0)
    per_thousand_pages: Decimal = Decimal(0)


FREE = Price()


def price_for(model: str, prices: Iterable[ModelPrice] | None = None) -> Price:
    """The price of `model` (price_known), $0 for one with no row: an unknown model is
    recorded at $0, never guessed."""
    return price_known(model, prices) or FREE


def price_known(model: str, prices: Iterable[ModelPrice] | None = None) -> Price | None:
    """The price of `model`: the row whose id equals it, else the longest row that is a
    prefix of it up to a dash ("mistral-large" for "mistral-large-2411"); free for a local
    model; None when the admin's table has no row for it."""
    if model_ids.parse(model).provider in FREE_PROVIDERS:
        return FREE
    if prices is None:  # only the rows that can match, in plain SQL: this runs per answer
        pieces = model.split("-")
        candidates = ["-".join(pieces[:n]) for n in range(1, len(pieces) + 1)]
        prices = [
            row
            for row, _ in plain_sql.read_models(
                ModelPrice,
                where=f"t.model IN ({', '.join(['%s'] * len(candidates))})",
                params=candidates,
            )
        ]
    rows = prices
    best: ModelPrice | None = None
    for row in rows:
        if (model == row.model or model.startswith(row.model + "-")) and (
            best is None or len(row.model) > len(best.model)
        ):
            best = row
    if best is None:
        return None
    return Price(
        best.input_usd_per_million, best.output_usd_per_million, best.usd_per_thousand_pages
    )


def call_cost(
    price: Price, *, prompt_tokens: int, completion_tokens: int, pages: int = 0
) -> Decimal:
    """US dollars for one call: tokens at the per-million prices, pages at the per-thousand
    price (OCR)."""
    return (
        Decimal(prompt_tokens) * price.input_per_million / MILLION
        + Decimal(completion_tokens) * price.output_per_million / MILLION
        + Decimal(pages) * price.per_thousand_pages / THOUSAND
    )


def answer_cost(
    model: str, prompt_tokens: int | None, completion_tokens: int | None
) -> Decimal | None:
    """What an answer's call cost at the admin's prices: $0 on the local model, None when
    the model has no price (the reader is shown nothing rather than a guess)."""
    price = price_known(model)
    if price is None:
        return None
    return call_cost(
        price, prompt_tokens=prompt_tokens or 0, completion_tokens=completion_tokens or 0
    )


@dataclass(frozen=True, slots=True)
class AnswerTotals:
    """What a conversation's answers used: tokens in and out, and what they cost where
    their models have prices (None when none has)."""

    tokens: int
    cost_usd: Decimal | None


def answer_totals(conversation_id: int) -> AnswerTotals:
    """The totals of a conversation's answers, in one query."""
    sums = Message.objects.filter(
        conversation_id=conversation_id, role=Message.Role.ASSISTANT
    ).aggregate(
        prompt=Coalesce(Sum("prompt_tokens"), 0),
        completion=Coalesce(Sum("completion_tokens"), 0),
        cost=Sum("cost_usd"),
    )
    return AnswerTotals(sums["prompt"] + sums["completion"], sums["cost"])


def usd_short(value: Decimal) -> str:
    """Dollars for a reader under an answer: "free" for $0, cents for a dollar or more, and
    two significant digits under it ("$0.00042"), so a small amount never reads "$0.0000".
    static/js/money.js writes the same."""
    if value <= 0:
        return "free"
    if value >= 1:
        return f"${value:,.2f}"
    decimals = max(2, 1 - value.adjusted())
    return f"${value:.{decimals}f}"


def cost_estimate(model: str, prompt_tokens: int) -> Decimal | None:
    """What sending `prompt_tokens` to `model` costs in US dollars, at the admin's price
    table; None when the model has no price there. The one place a preview asks for a
    price."""
    price = price_for(model)
    if price == FREE:
        return None
    return call_cost(price, prompt_tokens=prompt_tokens, completion_tokens=0)


def api_call_record(
    *,
    kind: str,
    model: str,
    status: str,
    user_id: int | None = None,
    conversation_id: int | None = None,
    message_id: int | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    usage_estimated: bool = False,
    pages: int = 0,
    latency_ms: int | None = None,
    error_code: str = "",
    request: dict[str, Any] | None = None,
    cost_usd: Decimal | None = None,
) -> ApiCall:
    """Record one call to a model server, priced now. Call it once per call, from sync code
    or through `database_sync_to_async`, whether the call succeeded or not (a failed call
    has `status` "failed" and its `error_code`; tokens the API did not report count as 0).

    `kind` is an `ApiCall.Kind`: "chat", "title", "embeddings" (prompt_tokens from the
    response's `usage`, completion_tokens 0) or "ocr" (`pages` from its
    `usage_info.pages_processed`). `request`, when given, is a summary from
    `request_summary()`: never a body with base64 in it. `cost_usd`, when the caller has
    priced the call already (an answer's ending), saves looking the price up again."""
    prompt, completion = prompt_tokens or 0, completion_tokens or 0
    if cost_usd is None:
        cost_usd = call_cost(
            price_for(model), prompt_tokens=prompt, completion_tokens=completion, pages=pages
        )
    return plain_sql.insert(  # once per answer: plain SQL, see conversations/plain_sql.py
        ApiCall(
            kind=kind,
            model=model,
            provider=model_ids.parse(model).provider,
            user_id=user_id,
            conversation_id=conversation_id,
            message_id=message_id,
            prompt_tokens=prompt,
            completion_tokens=completion,
            usage_estimated=usage_estimated,
            pages=pages,
            cost_usd=cost_usd,
            latency_ms=latency_ms,
            status=status,
            error_code=error_code,
            request=request or {},
        )
    )


def request_summary(body: dict[str, Any]) -> dict[str, Any]:
    """What a chat request carried, for reviewers: each message's role and parts, text as
    its length (and the document pages it carries), an image as its type and size. No text
    and no base64 is copied."""
    messages = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts = [{"type": "text", "chars": len(content)}]
        else:
            parts = [_part_summary(part) for part in content or [] if isinstance(part, dict)]
        if message.get("tool_calls"):  # a tool step: the calls it asked for, by name
            names = [str((c.get("function") or {}).get("name", "")) for c in message["tool_calls"]]
            parts.append({"type": "tool_calls", "names": names})
        messages.append({"role": str(message.get("role", "")), "parts": parts})
    summary: dict[str, Any] = {"model": str(body.get("model", "")), "messages": messages}
    if body.get("tools"):
        summary["tools"] = [str((t.get("function") or {}).get("name", "")) for t in body["tools"]]
    for key in ("temperature", "top_p", "max_tokens", "random_seed", "safe_prompt"):
        if key in body:
            summary[key] = body[key]
    return summary


def _part_summary(part: dict[str, Any]) -> dict[str, Any]:
    kind = str(part.get("type", ""))
    if kind == "text":
        text = str(part.get("text", ""))
        summary: dict[str, Any] = {"type": kind, "chars": len(text)}
        if marked := pages_marked(text):
            summary["pages"] = [
                f"{name} p. {', '.join(page_ranges(pages))}" for name, pages in marked.items()
            ]
        return summary
    if kind == "image_url":
        url = part.get("image_url")
        url = url.get("url", "") if isinstance(url, dict) else str(url or "")
        if url.startswith("data:"):
            head, _, data = url.partition(",")
            mime = head[5:].split(";", 1)[0]
            return {"type": kind, "mime": mime, "bytes": len(data) * 3 // 4}
        return {"type": kind, "url": url[:200]}
    return {"type": kind}  # a document or another part: its kind only


# Budgets


def budget_limits_set() -> bool:
    return bool(settings.CHAT_DAILY_TOKEN_BUDGET or settings.CHAT_DAILY_COST_BUDGET_USD)


def day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


def usage_today(*, user_id: int) -> tuple[int, Decimal]:
    """A user's tokens and dollars since midnight (TIME_ZONE)."""
    totals = ApiCall.objects.filter(
        user_id=user_id, created_at__gte=day_start(timezone.localdate())
    ).aggregate(
        tokens=Coalesce(Sum("prompt_tokens") + Sum("completion_tokens"), 0),
        cost=Coalesce(Sum("cost_usd"), Value(Decimal(0)), output_field=DecimalField()),
    )
    return totals["tokens"], totals["cost"]


def check_daily_budget(*, user_id: int) -> None:
    """Raise BudgetExceeded when the user has used CHAT_DAILY_TOKEN_BUDGET tokens or
    CHAT_DAILY_COST_BUDGET_USD dollars today; call before anything is sent upstream."""
    if not budget_limits_set():
        return
    tokens, cost = usage_today(user_id=user_id)
    token_budget = settings.CHAT_DAILY_TOKEN_BUDGET
    cost_budget = Decimal(str(settings.CHAT_DAILY_COST_BUDGET_USD))
    if token_budget and tokens >= token_budget:
        raise BudgetExceeded(
            f"You have used your daily allowance of {token_budget:,} tokens "
            f"({tokens:,} today). It renews at midnight {settings.TIME_ZONE}."
        )
    if cost_budget and cost >= cost_budget:
        raise BudgetExceeded(
            f"You have used your daily allowance of ${cost_budget:.2f} "
            f"(${cost:.2f} today). It renews at midnight {settings.TIME_ZONE}."
        )


# Reads for the admin's usage page


def usage_by_day(*, since: date) -> list[dict[str, Any]]:
    """Tokens, cost and calls per day and model from `since` on, oldest first."""
    return list(
        ApiCall.objects.filter(created_at__gte=day_start(since))
        .annotate(day=TruncDate("created_at"))
        .values("day", "model")
        .annotate(
            calls=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost_usd"),
        )
        .order_by("day", "model")
    )


def usage_top_users(*, since: date, limit: int = 10) -> list[dict[str, Any]]:
    """The users who cost the most from `since` on (ties by tokens)."""
    return list(
        ApiCall.objects.filter(created_at__gte=day_start(since), user__isnull=False)
        .values("user_id", "user__username")
        .annotate(
            calls=Count("id"),
            tokens=Coalesce(
                Sum("prompt_tokens") + Sum("completion_tokens"), 0, output_field=IntegerField()
            ),
            cost=Sum("cost_usd"),
        )
        .order_by("-cost", "-tokens", "user_id")[:limit]
    )


def usage_rows(*, since: date) -> list[dict[str, Any]]:
    """Per day, user, model and kind: the rows of the usage CSV export."""
    return list(
        ApiCall.objects.filter(created_at__gte=day_start(since))
        .annotate(day=TruncDate("created_at"))
        .values("day", "user__username", "model", "kind")
        .annotate(
            calls=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost_usd"),
        )
        .order_by("day", "user__username", "model", "kind")
    )


def days_since(since: date) -> list[date]:
    today = timezone.localdate()
    return [since + timedelta(days=n) for n in range((today - since).days + 1)]
