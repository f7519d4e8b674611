"""Usage and cost in the admin: every call to a model server as a read-only row, a page of
charts per day, model and user with a CSV export, and the price table the costs come from.
The sums themselves are conversations/usage.py's."""

import csv
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from conversations import usage
from conversations.models import (
    ApiCall,
    ModelPrice,
)
from conversations.review import charts
from conversations.review.exports import csv_safe


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "model",
        "input_usd_per_million",
        "output_usd_per_million",
        "usd_per_thousand_pages",
        "updated_at",
    )
    search_fields = ("model",)
    fields = ("model", "input_usd_per_million", "output_usd_per_million", "usd_per_thousand_pages")


class UsagePeriodForm(forms.Form):
    days = forms.IntegerField(
        min_value=1,
        max_value=366,
        required=False,
        error_messages={"invalid": "Enter a whole number of days."},
    )


@admin.register(ApiCall)
class ApiCallAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "kind",
        "model",
        "user",
        "conversation_id",
        "prompt_tokens",
        "completion_tokens",
        "usage_estimated",
        "cost_usd",
        "latency_ms",
        "status",
        "error_code",
    )
    list_filter = ("kind", "provider", "model", "status", "created_at")
    list_select_related = ("user",)
    search_fields = ("model", "user__username")
    date_hierarchy = "created_at"
    change_list_template = "admin/conversations/apicall/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("usage/", view(self.usage_view), name="conversations_usage"),
            path("usage/export.csv", view(self.usage_csv), name="conversations_usage_csv"),
            path("usage/<str:chart>.svg", view(self.usage_chart), name="conversations_usage_chart"),
            *super().get_urls(),
        ]

    def _period(self, request: HttpRequest) -> UsagePeriodForm:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return UsagePeriodForm(request.GET)

    def usage_view(self, request: HttpRequest) -> HttpResponse:
        """Tokens and cost per day and model, and the top users, as pictures and tables."""
        form = self._period(request)
        days = _days(form)
        since = timezone.localdate() - timedelta(days=(days or 30) - 1)
        by_day = usage.usage_by_day(since=since)
        models: dict[str, dict[str, Any]] = {}
        for row in by_day:
            total = models.setdefault(
                row["model"], {"model": row["model"], "calls": 0, "tokens": 0, "cost": Decimal(0)}
            )
            total["calls"] += row["calls"]
            total["tokens"] += row["prompt_tokens"] + row["completion_tokens"]
            total["cost"] += row["cost"]
        context = {
            **self.admin_site.each_context(request),
            "title": "Usage and cost",
            "opts": self.model._meta,
            "form": form,
            "days": days or 30,
            "since": since,
            "models": sorted(models.values(), key=lambda m: -m["cost"]),
            "total_cost": sum((m["cost"] for m in models.values()), Decimal(0)),
            "total_tokens": sum(m["tokens"] for m in models.values()),
            "by_day": by_day,
            "top_users": usage.usage_top_users(since=since),
            "budget_tokens": settings.CHAT_DAILY_TOKEN_BUDGET,
            "budget_usd": settings.CHAT_DAILY_COST_BUDGET_USD,
        }
        return TemplateResponse(
            request,
            "admin/conversations/usage.html",
            context,
            status=200 if days is not None else 400,
        )

    def usage_chart(self, request: HttpRequest, chart: str) -> HttpResponse:
        days = _days(self._period(request))
        if days is None:
            return HttpResponseBadRequest("'days' must be a whole number from 1 to 366.")
        since = timezone.localdate() - timedelta(days=days - 1)
        if chart in ("tokens", "cost"):
            labels = usage.days_since(since)
            index = {day: i for i, day in enumerate(labels)}
            series: dict[str, list[float]] = {}
            for row in usage.usage_by_day(since=since):
                values = series.setdefault(row["model"], [0.0] * len(labels))
                value = (
                    row["prompt_tokens"] + row["completion_tokens"]
                    if chart == "tokens"
                    else float(row["cost"])
                )
                values[index[row["day"]]] += value
            svg = charts.stacked_bars(
                title=f"{'Tokens' if chart == 'tokens' else 'Cost (USD)'} per day and model",
                labels=[day.strftime("%b %d") for day in labels],
                series=series,
                value_format=_token_label if chart == "tokens" else _usd_label,
            )
        elif chart == "users":
            svg = charts.horizontal_bars(
                title="Top users by cost",
                items=[
                    (row["user__username"], float(row["cost"]))
                    for row in usage.usage_top_users(since=since)
                ],
                value_format=_usd_label,
            )
        else:
            return HttpResponseBadRequest("Unknown chart: use tokens, cost or users.")
        response = HttpResponse(svg, content_type="image/svg+xml")
        response["Cache-Control"] = "private, no-cache"
        return response

    def usage_csv(self, request: HttpRequest) -> HttpResponse:
        days = _days(self._period(request))
        if days is None:
            return HttpResponseBadRequest("'days' must be a whole number from 1 to 366.")
        since = timezone.localdate() - timedelta(days=days - 1)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="usage-{since}.csv"'
        writer = csv.writer(response)
        writer.writerow(
            [
                "day",
                "user",
                "model",
                "kind",
                "calls",
                "prompt_tokens",
                "completion_tokens",
                "cost_usd",
            ]
        )
        for row in usage.usage_rows(since=since):
            writer.writerow(
                csv_safe(
                    [
                        row["day"].isoformat(),
                        row["user__username"] or "",
                        row["model"],
                        row["kind"],
                        row["calls"],
                        row["prompt_tokens"],
                        row["completion_tokens"],
                        f"{row['cost']:.8f}",
                    ]
                )
            )
        return response


def _days(form: UsagePeriodForm) -> int | None:
    """The period in days (30 when not given), or None when what was given is invalid."""
    if not form.is_valid():
        return None
    return form.cleaned_data["days"] or 30


def _token_label(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.1f}k"
    return f"{value:.0f}"


def _usd_label(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 or value == 0 else f"${value:.4f}"
