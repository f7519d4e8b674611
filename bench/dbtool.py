"""Sets up and reads the benchmark server's own database, in a process with the server's
environment (same DATA_DIR or DATABASE_URL), through the app's models.

    python -m bench.dbtool prepare --users 100 --models bench-200x10ms > clients.json
    python -m bench.dbtool writes > writes.json

`prepare` creates users (unusable passwords: nothing is hashed), one signed-in session
each, conversations, optionally a conversation with many messages and branches for the page
timing,
and the triggers that log every INSERT/UPDATE of a message or conversation row into
`bench_write_log`, so a run can count database writes per answer without touching the
app. `writes` reads that log, grouped by row.
"""

import argparse
import os
import sys
from datetime import timedelta

import orjson

_SQLITE_TRIGGERS = """
CREATE TABLE IF NOT EXISTS bench_write_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, op TEXT NOT NULL,
    row_id INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS bench_message_insert AFTER INSERT ON conversations_message
BEGIN INSERT INTO bench_write_log (tbl, op, row_id) VALUES ('message', 'insert', NEW.id); END;
CREATE TRIGGER IF NOT EXISTS bench_message_update AFTER UPDATE ON conversations_message
BEGIN INSERT INTO bench_write_log (tbl, op, row_id) VALUES ('message', 'update', NEW.id); END;
CREATE TRIGGER IF NOT EXISTS bench_conversation_insert
AFTER INSERT ON conversations_conversation
BEGIN INSERT INTO bench_write_log (tbl, op, row_id) VALUES ('conversation', 'insert', NEW.id);
END;
CREATE TRIGGER IF NOT EXISTS bench_conversation_update
AFTER UPDATE ON conversations_conversation
BEGIN INSERT INTO bench_write_log (tbl, op, row_id) VALUES ('conversation', 'update', NEW.id);
END;
"""

_POSTGRES_TRIGGERS = """
CREATE TABLE IF NOT EXISTS bench_write_log (
    id BIGSERIAL PRIMARY KEY, tbl TEXT NOT NULL, op TEXT NOT NULL, row_id BIGINT NOT NULL);
CREATE OR REPLACE FUNCTION bench_log_write() RETURNS trigger AS $$
BEGIN
    INSERT INTO bench_write_log (tbl, op, row_id) VALUES (TG_ARGV[0], lower(TG_OP), NEW.id);
    RETURN NULL;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS bench_message_write ON conversations_message;
CREATE TRIGGER bench_message_write AFTER INSERT OR UPDATE ON conversations_message
    FOR EACH ROW EXECUTE FUNCTION bench_log_write('message');
DROP TRIGGER IF EXISTS bench_conversation_write ON conversations_conversation;
CREATE TRIGGER bench_conversation_write AFTER INSERT OR UPDATE ON conversations_conversation
    FOR EACH ROW EXECUTE FUNCTION bench_log_write('conversation');
"""


def _setup_django() -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()


def install_triggers() -> None:
    from django.db import connection

    script = _SQLITE_TRIGGERS if connection.vendor == "sqlite" else _POSTGRES_TRIGGERS
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.connection.executescript(script)
        else:
            cursor.execute(script)


def prepare(
    *, users: int, models: list[str], prefix: str, page_messages: int, page_tokens: int
) -> dict:
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.db import transaction
    from django.middleware.csrf import CSRF_ALLOWED_CHARS
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    from conversations.models import Conversation

    user_model = get_user_model()
    backend = settings.AUTHENTICATION_BACKENDS[-1]  # the model backend (axes comes first)
    expire = timezone.now() + timedelta(days=1)
    cookie_name = settings.SESSION_COOKIE_NAME
    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    with transaction.atomic():
        people = user_model.objects.bulk_create(
            [
                user_model(username=f"{prefix}{i}", password=make_password(None))
                for i in range(users + (1 if page_messages else 0))
            ]
        )
        store = SessionStore()
        sessions = [
            Session(
                session_key=get_random_string(32, chars),
                session_data=store.encode(
                    {
                        SESSION_KEY: str(person.pk),
                        BACKEND_SESSION_KEY: backend,
                        HASH_SESSION_KEY: person.get_session_auth_hash(),
                    }
                ),
                expire_date=expire,
            )
            for person in people
        ]
        Session.objects.bulk_create(sessions)
        conversations = Conversation.objects.bulk_create(
            [
                Conversation(owner=person, model=model)
                for person in people[:users]
                for model in models
            ]
        )
        clients = []
        for i, session in enumerate(sessions[:users]):
            owned = conversations[i * len(models) : (i + 1) * len(models)]
            clients.append(
                {
                    "cookie": f"{cookie_name}={session.session_key}",
                    "conversations": {c.model: c.pk for c in owned},
                }
            )
        page = None
        if page_messages:
            owner, session = people[-1], sessions[-1]
            page = _page_conversation(owner, page_messages, page_tokens)
            page["cookie"] = f"{cookie_name}={session.session_key}"
            page["csrf"] = get_random_string(32, CSRF_ALLOWED_CHARS)
            page["csrf_cookie"] = settings.CSRF_COOKIE_NAME
    install_triggers()
    return {"clients": clients, "page": page}


# The page's conversation is a tree (conversations/tree.py): every REGENERATED-th answer of
# the shown branch was regenerated twice (the shown answer is the third version), and every
# EDITED-th question was edited after its first version had a few exchanges of its own.
REGENERATED = 10
EDITED = 100
EDITED_CONTINUATION = 6


def _page_conversation(owner, shown: int, tokens: int) -> dict:
    """A conversation whose shown branch has `shown` messages, with branches off it, made
    in the order the app would make them (ids grow with time, a parent before its child),
    so the shown branch is the newest message's. Returns its id, its shape and the two
    versions of a late answer a branch switch alternates between."""
    from bench.fake_upstream import answer_text
    from conversations.models import Conversation, Message
    from conversations.rendering import render_markdown

    conversation = Conversation.objects.create(
        owner=owner, model="mistral-small-latest", title="A long conversation"
    )
    text = answer_text(tokens)
    html = render_markdown(text)

    def question(n: int, suffix: str = "") -> Message:
        text = f"Question {n}{suffix}: how does the relay keep up?"
        return Message(conversation=conversation, role=Message.Role.USER, text=text)

    def answer() -> Message:
        return Message(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            text=text,
            html=html,
            model="mistral-small-latest",
            finish_reason="stop",
            prompt_tokens=20,
            completion_tokens=tokens,
            time_to_first_token_ms=300,
            duration_ms=4000,
        )

    rows: list[Message] = []
    parents: list[int | None] = []  # each row's parent, as an index into rows

    def add(message: Message, parent: int | None) -> int:
        rows.append(message)
        parents.append(parent)
        return len(rows) - 1

    last: int | None = None  # the shown branch's end so far
    switch: tuple[int, int] | None = None  # the last regenerated answer's first and shown
    for n in range(shown):
        pair = n // 2
        if n % 2 == 0:
            if pair % EDITED == EDITED - 1:  # its first version, with exchanges after it
                below = add(question(pair, " (first version)"), last)
                for k in range(1, EDITED_CONTINUATION):
                    below = add(question(pair, f" (then {k})") if k % 2 == 0 else answer(), below)
            last = add(question(pair), last)
        elif pair % REGENERATED == REGENERATED - 1:  # two versions before the one shown
            asked = last
            first = add(answer(), asked)
            add(answer(), asked)
            last = add(answer(), asked)
            switch = (first, last)
        else:
            last = add(answer(), last)
    Message.objects.bulk_create(rows, batch_size=500)
    for message, parent in zip(rows, parents, strict=True):
        message.parent_id = rows[parent].pk if parent is not None else None
    Message.objects.bulk_update(rows, ["parent"], batch_size=500)
    return {
        "conversation": conversation.pk,
        "messages": shown,
        "all_messages": len(rows),
        "off_shown_branch": len(rows) - shown,
        "switch": [rows[i].pk for i in switch] if switch else [],
    }


def writes() -> dict:
    """The write log grouped by table and row: {"message": {row id: writes}, ...}."""
    from django.db import connection

    out: dict[str, dict[str, int]] = {"message": {}, "conversation": {}}
    totals: dict[str, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tbl, op, row_id, COUNT(*) FROM bench_write_log GROUP BY tbl, op, row_id"
        )
        for table, op, row_id, count in cursor.fetchall():
            rows = out.setdefault(table, {})
            rows[str(row_id)] = rows.get(str(row_id), 0) + count
            totals[f"{table}_{op}"] = totals.get(f"{table}_{op}", 0) + count
    return {**out, "totals": totals}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The benchmark server's database.")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("--users", type=int, required=True)
    prep.add_argument("--models", default="bench-200x10ms", help="comma-separated")
    prep.add_argument("--prefix", default="bench")
    prep.add_argument("--page-messages", type=int, default=0)
    prep.add_argument("--page-tokens", type=int, default=300)
    sub.add_parser("writes")
    args = parser.parse_args(argv)
    _setup_django()
    if args.command == "prepare":
        result = prepare(
            users=args.users,
            models=[m for m in args.models.split(",") if m],
            prefix=args.prefix,
            page_messages=args.page_messages,
            page_tokens=args.page_tokens,
        )
    else:
        result = writes()
    sys.stdout.buffer.write(orjson.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
