"""The operator's retention: conversations nobody has touched for CHAT_RETENTION_DAYS are
deleted, everything with them (messages, files, share links, search entries, review notes),
as `manage.py retention` runs from cron or a systemd timer (docs/deploy.md). It also ends
the temporary chats whose session ended without a logout.

A conversation a reviewer still needs stays until it is reviewed: one in review or
escalated, and one reported and not yet looked at. Usage rows (ApiCall) stay, without their
conversation, so the totals of past days do not change; the review log keeps the title it
copied.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from conversations.models import Conversation, Report

# Deleted per transaction: a long sweep never holds the tables for long.
BATCH = 200


@dataclass(frozen=True, slots=True)
class Sweep:
    deleted: int  # conversations deleted (or, dry, that would be)
    kept_for_review: int  # past the limit, kept for a reviewer


def inactive(*, days: int, now: datetime):
    """The conversations past the limit, and which of them wait for a reviewer."""
    cutoff = now - timedelta(days=days)
    old = Conversation.objects.filter(updated_at__lt=cutoff, temporary=False)
    reported = Exists(Report.objects.filter(message__conversation=OuterRef("pk")))
    waiting = Q(
        review_status__in=(Conversation.ReviewStatus.IN_REVIEW, Conversation.ReviewStatus.ESCALATED)
    ) | Q(reported, review_status=Conversation.ReviewStatus.UNREVIEWED)
    return old.exclude(waiting), old.filter(waiting)


def temporary_sweep(*, now: datetime) -> int:
    """Delete the temporary chats whose session has ended without a logout (expired, or
    gone): the logout itself deletes its own (signals.py). How many were deleted."""
    live = Session.objects.filter(expire_date__gt=now).values("session_key")
    ended = Conversation.objects.filter(temporary=True).exclude(session_key__in=live)
    deleted = 0
    while ids := list(ended.order_by("id").values_list("pk", flat=True)[:BATCH]):
        with transaction.atomic():
            Conversation.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
    return deleted


def retention_sweep(*, days: int, now: datetime, dry_run: bool = False) -> Sweep:
    """Delete the conversations inactive for more than `days` (see the module)."""
    expired, waiting = inactive(days=days, now=now)
    kept = waiting.count()
    if dry_run:
        return Sweep(expired.count(), kept)
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(expired.order_by("id").values_list("pk", flat=True)[:BATCH])
            if not ids:
                break
            Conversation.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
    return Sweep(deleted, kept)
