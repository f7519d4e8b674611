"""Limits per user on what costs the site: questions per minute, answers running at once,
conversations started per minute, uploads and their bytes per day (settings `CHAT_*`,
0 turns one off).

Each is counted from the user's own rows (questions, pending and streaming answers,
conversations, `Upload`), which every process writes and reads: a limit holds across
processes with no other store, and nothing is counted that was not stored. The question
limits cost one statement, run in the trip that stores the questions
(`services.questions_submit`). Questions sent at the same instant from two processes may
both pass the last free place: the limits bound a user's rate, not an exact count.

A refusal is `LimitReached`, with a stable `code` and a sentence that says when to try
again; nothing is stored and no model server is asked.
"""

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from conversations import plain_sql
from conversations.models import Conversation, Message, Upload

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
# A conversation's updated_at is set when a question is stored in it (or it is created, a
# moment before its first question): conversations untouched since a little before the
# window cannot hold a question of the window, and the index on (owner, updated_at) skips them.
_SLACK = timedelta(seconds=10)


class LimitReached(Exception):
    """A user limit refuses this; `code` is stable, `message` for people, `retry_after`
    the seconds until it would pass (None when it depends on an answer ending)."""

    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(slots=True)
class Recent:
    """What counts against one user's question limits: times of the questions and new
    conversations of the last minute (oldest first), and answers pending or streaming."""

    questions: list[datetime] = field(default_factory=list)
    conversations: list[datetime] = field(default_factory=list)
    running: int = 0


def question_limits_on() -> bool:
    return bool(
        settings.CHAT_QUESTIONS_PER_MINUTE
        or settings.CHAT_ANSWERS_AT_ONCE
        or settings.CHAT_CONVERSATIONS_PER_MINUTE
    )


def recent_activity(user_ids: list[int], *, now: datetime) -> dict[int, Recent]:
    """Recent for each of these users, in one statement (plain SQL: it runs with every
    batch of questions, conversations/plain_sql.py)."""
    found: dict[int, Recent] = defaultdict(Recent)
    if not user_ids or not question_limits_on():
        return found
    quote = plain_sql.quote
    messages, conversations = quote(Message._meta.db_table), quote(Conversation._meta.db_table)
    users = ", ".join(["%s"] * len(user_ids))
    active = ", ".join(["%s"] * len(Message.ACTIVE_STATUSES))
    since = connection.ops.adapt_datetimefield_value(now - MINUTE)
    touched = connection.ops.adapt_datetimefield_value(now - MINUTE - _SLACK)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT c.owner_id, 'q', m.created_at FROM {messages} m "  # noqa: S608
            f"JOIN {conversations} c ON c.id = m.conversation_id WHERE c.owner_id IN ({users}) "
            "AND c.updated_at >= %s AND m.created_at >= %s AND m.role = %s "
            f"UNION ALL SELECT c.owner_id, 'a', NULL FROM {messages} m "
            f"JOIN {conversations} c ON c.id = m.conversation_id WHERE c.owner_id IN ({users}) "
            f"AND m.status IN ({active}) "
            f"UNION ALL SELECT c.owner_id, 'c', c.created_at FROM {conversations} c "
            f"WHERE c.owner_id IN ({users}) AND c.updated_at >= %s AND c.created_at >= %s",
            [
                *user_ids,
                touched,
                since,
                Message.Role.USER,
                *user_ids,
                *Message.ACTIVE_STATUSES,
                *user_ids,
                touched,
                since,
            ],
        )
        rows = cursor.fetchall()
    for owner_id, kind, created_at in rows:
        recent = found[owner_id]
        if kind == "a":
            recent.running += 1
        else:
            (recent.questions if kind == "q" else recent.conversations).append(_aware(created_at))
    for recent in found.values():
        recent.questions.sort()
        recent.conversations.sort()
    return found


def check_question(recent: Recent, *, new_conversation: bool, now: datetime) -> None:
    """Raise LimitReached when the user may not ask now; otherwise count this question in
    `recent`, so the next question of the same batch sees it."""
    _check_running(recent)
    per_minute = settings.CHAT_QUESTIONS_PER_MINUTE
    if per_minute and len(recent.questions) >= per_minute:
        wait = _wait(recent.questions, per_minute, MINUTE, now)
        raise LimitReached(
            "too_many_questions",
            f"You have sent {per_minute} questions in the last minute, the most this site "
            f"allows. Try again in {wait} s.",
            wait,
        )
    started = settings.CHAT_CONVERSATIONS_PER_MINUTE
    if new_conversation and started and len(recent.conversations) >= started:
        wait = _wait(recent.conversations, started, MINUTE, now)
        raise LimitReached(
            "too_many_conversations",
            f"You have started {started} conversations in the last minute, the most this site "
            f"allows. Try again in {wait} s, or ask in a conversation you have.",
            wait,
        )
    recent.questions.append(now)
    if new_conversation:
        recent.conversations.append(now)
    recent.running += 1


def check_retry(*, user_id: int) -> None:
    """A retry starts an answer: it needs a free place among the user's running answers
    and room in the questions of the minute (it is not counted as one)."""
    now = timezone.now()
    recent = recent_activity([user_id], now=now)[user_id]
    check_question(recent, new_conversation=False, now=now)


def _check_running(recent: Recent) -> None:
    at_once = settings.CHAT_ANSWERS_AT_ONCE
    if at_once and recent.running >= at_once:
        raise LimitReached(
            "too_many_answers",
            f"{recent.running} of your answers are being written, the most this site allows "
            "at once. Try again when one has ended, or stop one.",
        )


def check_upload(*, user, size: int) -> None:
    """Raise LimitReached when the user may not upload a file of `size` bytes now: the
    uploads of the last 24 hours (`Upload` rows, refused and removed files included)."""
    per_day, bytes_per_day = settings.CHAT_UPLOADS_PER_DAY, settings.CHAT_UPLOAD_BYTES_PER_DAY
    if not per_day and not bytes_per_day:
        return
    now = timezone.now()
    rows = list(
        Upload.objects.filter(user=user, created_at__gte=now - DAY)
        .order_by("created_at")
        .values_list("created_at", "size")
    )
    if per_day and len(rows) >= per_day:
        wait = _wait([at for at, _ in rows], per_day, DAY, now)
        raise LimitReached(
            "too_many_uploads",
            f"You have uploaded {per_day} files in the last 24 hours, the most this site "
            f"allows. Try again in {_duration(wait)}.",
            wait,
        )
    used = sum(size for _, size in rows)
    if bytes_per_day and size > bytes_per_day:
        raise LimitReached(
            "upload_quota",
            f"This file ({_megabytes(size)}) is larger than the {_megabytes(bytes_per_day)} "
            "a user may upload in a day on this site.",
        )
    if bytes_per_day and used + size > bytes_per_day:
        wait = _bytes_wait(rows, bytes_per_day - size, now)
        raise LimitReached(
            "upload_quota",
            f"This file ({_megabytes(size)}) would take your uploads of the last 24 hours "
            f"over {_megabytes(bytes_per_day)}, the most this site allows. Try again in "
            f"{_duration(wait)}.",
            wait,
        )


def _wait(times: list[datetime], limit: int, window: timedelta, now: datetime) -> int:
    """Seconds until fewer than `limit` of `times` (oldest first) lie in the window."""
    frees_at = times[len(times) - limit] + window
    return max(1, math.ceil((frees_at - now).total_seconds()))


def _bytes_wait(rows: list[tuple[datetime, int]], room: int, now: datetime) -> int:
    """Seconds until the uploads still in the window (oldest first) weigh at most `room`
    bytes; a day when no wait can make room (the file alone is over the limit)."""
    total = sum(size for _, size in rows)
    for at, size in rows:
        total -= size
        if total <= room:
            return max(1, math.ceil((at + DAY - now).total_seconds()))
    return int(DAY.total_seconds())


def _aware(value) -> datetime:
    """A time as the database returned it (SQLite: text in UTC), made aware."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:,.1f} MB"
