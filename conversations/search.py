"""Full-text search of a user's conversations: their titles and every message's text and
document names, with each database's own engine. SQLite: FTS5 tables kept by triggers.
PostgreSQL: a `tsvector` column on messages set by a trigger, and an expression index on
titles, both GIN. No Python runs when a row changes, so the streaming path pays nothing
beyond its statements.

A message is indexed once it has ended: its text saved once a second while it streams is
not indexed (the triggers skip pending and streaming rows), the ending indexes it.

Both engines are asked the same thing: every word of the query, the last one as a prefix
(the box searches as one types), without stemming or stop words (conversations mix
languages); newest matches first.

The DDL lives here and migration 0017 runs it, because SQLite drops a table's triggers when
a later migration rebuilds that table: `index_repair` puts them back after every `migrate`
(so a change to the DDL needs a migration of its own, which drops and re-creates).

Over 400 lines: two engines' DDL and statements side by side (they answer the same
question), and the snippets both share.
"""

# ruff: noqa: S608 (every statement here is built from our own table names and constants;
# what a user typed is always a parameter)

import itertools
import re
import unicodedata
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from conversations.models import Conversation, Message

MESSAGES = Message._meta.db_table
CONVERSATIONS = Conversation._meta.db_table
MESSAGE_FTS = "conversations_message_fts"  # SQLite
TITLE_FTS = "conversations_title_fts"  # SQLite
_ACTIVE = ", ".join(f"'{status.value}'" for status in Message.ACTIVE_STATUSES)

# SQLite: a message's document names, from its parts.
_SQLITE_NAMES = (
    "(SELECT coalesce(group_concat(json_extract(j.value, '$.name'), ' '), '') "
    "FROM json_each({row}.parts) j WHERE json_extract(j.value, '$.type') = 'document')"
)

SQLITE_TABLES = [
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {MESSAGE_FTS} USING fts5("
    "text, names, tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3')",
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {TITLE_FTS} USING fts5("
    "title, tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3')",
]

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS {MESSAGE_FTS}_insert AFTER INSERT ON {MESSAGES}
    WHEN new.status NOT IN ({_ACTIVE}) BEGIN
      INSERT INTO {MESSAGE_FTS} (rowid, text, names)
      VALUES (new.id, new.text, {_SQLITE_NAMES.format(row="new")});
    END""",
    # Saves of a streaming answer (active before and after) do not fire it.
    f"""CREATE TRIGGER IF NOT EXISTS {MESSAGE_FTS}_update
    AFTER UPDATE OF text, parts, status ON {MESSAGES}
    WHEN new.status NOT IN ({_ACTIVE}) OR old.status NOT IN ({_ACTIVE}) BEGIN
      DELETE FROM {MESSAGE_FTS} WHERE rowid = old.id;
      INSERT INTO {MESSAGE_FTS} (rowid, text, names)
      SELECT new.id, new.text, {_SQLITE_NAMES.format(row="new")}
      WHERE new.status NOT IN ({_ACTIVE});
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS {MESSAGE_FTS}_delete AFTER DELETE ON {MESSAGES} BEGIN
      DELETE FROM {MESSAGE_FTS} WHERE rowid = old.id;
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS {TITLE_FTS}_insert AFTER INSERT ON {CONVERSATIONS} BEGIN
      INSERT INTO {TITLE_FTS} (rowid, title) VALUES (new.id, new.title);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS {TITLE_FTS}_update AFTER UPDATE OF title ON {CONVERSATIONS}
    BEGIN
      DELETE FROM {TITLE_FTS} WHERE rowid = old.id;
      INSERT INTO {TITLE_FTS} (rowid, title) VALUES (new.id, new.title);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS {TITLE_FTS}_delete AFTER DELETE ON {CONVERSATIONS} BEGIN
      DELETE FROM {TITLE_FTS} WHERE rowid = old.id;
    END""",
]

SQLITE_FILL = [
    f"INSERT INTO {MESSAGE_FTS} (rowid, text, names) "
    f"SELECT m.id, m.text, {_SQLITE_NAMES.format(row='m')} FROM {MESSAGES} m "
    f"WHERE m.status NOT IN ({_ACTIVE})",
    f"INSERT INTO {TITLE_FTS} (rowid, title) SELECT id, title FROM {CONVERSATIONS}",
]

SQLITE_DROP = [
    *(
        f"DROP TRIGGER IF EXISTS {table}_{event}"
        for table in (MESSAGE_FTS, TITLE_FTS)
        for event in ("insert", "update", "delete")
    ),
    f"DROP TABLE IF EXISTS {MESSAGE_FTS}",
    f"DROP TABLE IF EXISTS {TITLE_FTS}",
]

# PostgreSQL: the 'simple' configuration lowercases and neither stems nor drops words.
_PG_VECTOR = (
    "to_tsvector('simple', {row}.text) || to_tsvector('simple', "
    "jsonb_path_query_array({row}.parts, '$[*] ? (@.type == \"document\").name'))"
)
_PG_TITLE = "to_tsvector('simple', title)"

# The column and its trigger first, so rows written while the rest runs are indexed as
# they are written; then the rows already there, a batch per transaction; then the indexes,
# built CONCURRENTLY when the migration runs outside a transaction (it does: migration 0017
# is not atomic), so the messages table is never locked for more than a moment. Every step
# can run again: a run cut short is finished by the next `migrate` (after dropping an index
# a cut-short CONCURRENTLY build left INVALID, which IF NOT EXISTS would keep).
POSTGRES_SCHEMA = [
    f"ALTER TABLE {MESSAGES} ADD COLUMN IF NOT EXISTS search_vector tsvector",
    f"""CREATE OR REPLACE FUNCTION conversations_message_search() RETURNS trigger AS $$
    BEGIN
      IF NEW.status IN ({_ACTIVE}) THEN
        NEW.search_vector := NULL;
      ELSIF TG_OP = 'INSERT' OR NEW.text IS DISTINCT FROM OLD.text
          OR NEW.parts IS DISTINCT FROM OLD.parts OR OLD.status IN ({_ACTIVE}) THEN
        NEW.search_vector := {_PG_VECTOR.format(row="NEW")};
      END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    f"DROP TRIGGER IF EXISTS conversations_message_search ON {MESSAGES}",
    f"""CREATE TRIGGER conversations_message_search BEFORE INSERT OR UPDATE OF text, parts, status
    ON {MESSAGES} FOR EACH ROW EXECUTE FUNCTION conversations_message_search()""",
]
POSTGRES_FILL = (
    f"UPDATE {MESSAGES} m SET search_vector = {_PG_VECTOR.format(row='m')} "
    f"WHERE m.id >= %s AND m.id < %s AND m.status NOT IN ({_ACTIVE}) AND m.search_vector IS NULL"
)
POSTGRES_FILL_BATCH = 5000
POSTGRES_INDEXES = [
    f"CREATE INDEX {{concurrently}}IF NOT EXISTS conversations_message_search ON {MESSAGES} "
    "USING gin (search_vector)",
    f"CREATE INDEX {{concurrently}}IF NOT EXISTS conversations_title_search ON {CONVERSATIONS} "
    f"USING gin ({_PG_TITLE})",
    # Statistics of the new column now, not when autovacuum gets to it: without them the
    # planner guesses how many rows a word matches, and for a rare word's prefix it chose
    # to walk every message backwards by id (2 s on 200,000 messages instead of 3 ms).
    f"ANALYZE {MESSAGES}",
    f"ANALYZE {CONVERSATIONS}",
]

POSTGRES_DROP = [
    "DROP INDEX IF EXISTS conversations_title_search",
    f"DROP TRIGGER IF EXISTS conversations_message_search ON {MESSAGES}",
    "DROP FUNCTION IF EXISTS conversations_message_search()",
    f"ALTER TABLE {MESSAGES} DROP COLUMN IF EXISTS search_vector",
]


def index_install(schema_editor) -> None:
    """Create the index of the database in use and fill it from the rows there."""
    connection = schema_editor.connection
    if connection.vendor == "sqlite":
        # One transaction: a message written between the fill and the triggers would be
        # missed.
        with transaction.atomic(using=connection.alias):
            for statement in [*SQLITE_TABLES, *SQLITE_FILL, *SQLITE_TRIGGERS]:
                schema_editor.execute(statement)
    elif connection.vendor == "postgresql":
        for statement in POSTGRES_SCHEMA:
            schema_editor.execute(statement)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT coalesce(max(id), 0) FROM {MESSAGES}")
            (last,) = cursor.fetchone()
        for first in range(0, last + 1, POSTGRES_FILL_BATCH):
            with transaction.atomic(using=connection.alias):
                schema_editor.execute(POSTGRES_FILL, [first, first + POSTGRES_FILL_BATCH])
        concurrently = "" if connection.in_atomic_block else "CONCURRENTLY "
        for statement in POSTGRES_INDEXES:
            schema_editor.execute(statement.format(concurrently=concurrently))
    else:
        raise NotImplementedError(f"No full-text search on {connection.vendor}.")


def index_remove(schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    for statement in SQLITE_DROP if vendor == "sqlite" else POSTGRES_DROP:
        schema_editor.execute(statement)


def index_repair(*, using: str = "default") -> None:
    """SQLite only: re-create triggers a table rebuild dropped (CREATE ... IF NOT EXISTS, so
    nothing happens when they are there). Their tables were untouched, and the rows copied
    into the rebuilt table are the ones indexed, so the index is still right."""
    from django.db import connections

    target = connections[using]
    if target.vendor != "sqlite":
        return
    with target.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = %s", [MESSAGE_FTS])
        if cursor.fetchone() is None:  # before the search migration (or after its reversal)
            return
        for statement in SQLITE_TRIGGERS:
            cursor.execute(statement)


# Searching

# Words are runs of letters and digits: what both engines' tokenizers index as words, and
# nothing in them means anything to either query language.
_WORD = re.compile(r"[^\W_]+")
MAX_WORDS = 8
RESULTS = 20
SNIPPET_WORDS = 24  # words shown around a match
SNIPPET_BEFORE = 6  # of which before the first match


def _fold(word: str) -> str:
    """A word as SQLite's tokenizer compares it (case and diacritics removed), so the words
    marked are the ones it matched (PostgreSQL's 'simple' keeps diacritics: it matches
    fewer, and those are marked too)."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def query_words(query: str) -> list[str]:
    """The words of a query, lowercased: each engine folds them as it indexes (SQLite's
    tokenizer also drops diacritics, PostgreSQL's 'simple' keeps them)."""
    return [word.lower() for word in _WORD.findall(query)][:MAX_WORDS]


@dataclass(frozen=True, slots=True)
class Snippet:
    """Text around a match as pieces, each a matched word or not: the template writes each
    escaped, the matched ones inside <mark>. Built here, in Python, from the stored text,
    for both databases alike (PostgreSQL's ts_headline drops anything that looks like an
    HTML tag, which answers about code are full of)."""

    parts: list[tuple[str, bool]]

    @classmethod
    def around(cls, text: str, words: list[str], *, whole: bool = False) -> "Snippet":
        """The stretch of `text` around its first word matching `words` (every word whole
        but the last, a prefix), with every match marked; with `whole`, all of `text`.
        The text is read only up to the end of the stretch, a word at a time: a long
        answer's other thousands of words cost nothing (nor garbage to collect)."""
        *exact, last = [_fold(word) for word in words]

        def matches(token: re.Match) -> bool:
            word = token.group()
            folded = word.lower() if word.isascii() else _fold(word)
            return folded in exact or folded.startswith(last)

        tokens = _WORD.finditer(text)
        position, cut_before, window = 0, False, []
        if whole:
            window = list(tokens)
        else:
            # The match and the words before it, and the word before those: the stretch
            # starts at its end, so the punctuation that opens the first word shows.
            recent: deque[re.Match] = deque(maxlen=SNIPPET_BEFORE + 2)
            for token in tokens:
                recent.append(token)
                if matches(token):
                    break
            else:  # no match in the text (it was in a document's name): its start
                tokens, recent = _WORD.finditer(text), deque()
            window = list(recent)
            if recent.maxlen is not None and len(window) == recent.maxlen:
                position, cut_before = window.pop(0).end(), True
            window.extend(itertools.islice(tokens, SNIPPET_WORDS - len(window)))
        cut_after = not whole and next(tokens, None) is not None
        if not window:
            return cls([(" ".join(text.split()), False)] if text.strip() else [])
        parts: list[tuple[str, bool]] = [("…", False)] if cut_before else []
        for token in window:
            if matches(token):
                parts.append((_flat(text[position : token.start()]), False))
                parts.append((token.group(), True))
                position = token.end()
        parts.append((_flat(text[position : window[-1].end() if cut_after else len(text)]), False))
        if cut_after:
            parts.append(("…", False))
        if cut_before and len(parts) > 1 and not parts[1][1]:
            parts[1] = (parts[1][0].lstrip(), False)
        return cls([part for part in parts if part[0]])


def _flat(text: str) -> str:
    """Line breaks and runs of spaces as one space: a snippet is one line."""
    return re.sub(r"\s+", " ", text)


@dataclass(slots=True)
class Hit:
    """A conversation found, with the newest of its messages that matched, if any (a
    conversation may match by its title alone)."""

    conversation_id: int
    title: str
    updated_at: datetime
    archived: bool
    title_snippet: Snippet | None = None
    message_id: int | None = None
    role: str = ""
    snippet: Snippet | None = None


def conversation_search(*, user, query: str, limit: int = RESULTS) -> list[Hit]:
    """The user's conversations (archived ones too) whose title or any message matches
    every word of `query` (the last as a prefix), newest first, at most `limit`; each with
    the newest matching message and a snippet around the match. Only the user's own rows
    are read: the owner is in every statement."""
    words = query_words(query)
    if not words:
        return []
    engine = _Postgres(words) if connection.vendor == "postgresql" else _Sqlite(words)
    by_message = engine.messages(user.pk, limit)
    titled = engine.titles(user.pk, limit)
    rows = Conversation.objects.filter(
        pk__in={*by_message, *titled}, owner=user, temporary=False
    ).only("id", "title", "updated_at", "archived_at")
    hits = []
    for row in rows:
        hit = Hit(row.pk, row.title, row.updated_at, row.archived_at is not None)
        if row.pk in titled:
            hit.title_snippet = Snippet.around(row.title, words, whole=True)
        if row.pk in by_message:
            hit.message_id, hit.role = by_message[row.pk]
        hits.append(hit)
    hits.sort(key=lambda hit: (hit.updated_at, hit.conversation_id), reverse=True)
    hits = hits[:limit]
    found = [hit.message_id for hit in hits if hit.message_id is not None]
    messages = Message.objects.filter(pk__in=found, conversation__owner=user).only("text", "parts")
    by_id = {message.pk: message for message in messages}
    for hit in hits:
        if hit.message_id in by_id:
            hit.snippet = _message_snippet(by_id[hit.message_id], words)
    return hits


def _message_snippet(message: Message, words: list[str]) -> Snippet:
    """Around the match in the text or, when the words matched a document's name, the
    names of the message's documents."""
    snippet = Snippet.around(message.text, words)
    if any(mark for _, mark in snippet.parts):
        return snippet
    names = " · ".join(
        part["name"]
        for part in message.parts or []
        if isinstance(part, dict) and part.get("type") == "document" and "name" in part
    )
    return Snippet.around(names, words, whole=True) if names else snippet


# How many matching messages are read per step while collecting distinct conversations,
# and how many steps at most: a word in every message of one long conversation must not
# make a query read them all.
_STEP = 200
_STEPS = 10


class _Engine:
    """The statements of one database: the ids of the owner's newest matching messages and
    titles. Snippets are not theirs."""

    message_sql: str
    title_sql: str

    def __init__(self, words: list[str]) -> None:
        self.match = ""

    def messages(self, owner_id: int, limit: int) -> dict[int, tuple[int, str]]:
        """conversation id: (its newest matching message, that message's role), newest
        first, for `limit` conversations at most."""
        found: dict[int, tuple[int, str]] = {}
        before = 1 << 62
        with connection.cursor() as cursor:
            for _ in range(_STEPS):
                cursor.execute(self.message_sql, [self.match, before, owner_id, _STEP])
                rows = cursor.fetchall()
                for message_id, conversation_id, role in rows:
                    found.setdefault(conversation_id, (message_id, role))
                if len(found) >= limit or len(rows) < _STEP:
                    break
                before = rows[-1][0]
        return dict(list(found.items())[:limit])

    def titles(self, owner_id: int, limit: int) -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute(self.title_sql, [self.match, owner_id, limit])
            return {pk for (pk,) in cursor.fetchall()}


class _Sqlite(_Engine):
    message_sql = (
        f"SELECT f.rowid, m.conversation_id, m.role FROM {MESSAGE_FTS} f "
        f"JOIN {MESSAGES} m ON m.id = f.rowid "
        f"JOIN {CONVERSATIONS} c ON c.id = m.conversation_id "
        f"WHERE {MESSAGE_FTS} MATCH %s AND f.rowid < %s AND c.owner_id = %s "
        "ORDER BY f.rowid DESC LIMIT %s"
    )
    title_sql = (
        f"SELECT f.rowid FROM {TITLE_FTS} f JOIN {CONVERSATIONS} c ON c.id = f.rowid "
        f"WHERE {TITLE_FTS} MATCH %s AND c.owner_id = %s ORDER BY f.rowid DESC LIMIT %s"
    )

    def __init__(self, words: list[str]) -> None:
        *whole, last = words
        # Quoted: nothing of the query is FTS5 syntax (the words hold no quotes).
        self.match = " ".join([*(f'"{w}"' for w in whole), f'"{last}"*'])


class _Postgres(_Engine):
    message_sql = (
        f"SELECT m.id, m.conversation_id, m.role FROM {MESSAGES} m "
        f"JOIN {CONVERSATIONS} c ON c.id = m.conversation_id "
        "WHERE m.search_vector @@ to_tsquery('simple', %s) AND m.id < %s "
        "AND c.owner_id = %s ORDER BY m.id DESC LIMIT %s"
    )
    title_sql = (
        f"SELECT id FROM {CONVERSATIONS} WHERE {_PG_TITLE} @@ to_tsquery('simple', %s) "
        "AND owner_id = %s ORDER BY id DESC LIMIT %s"
    )

    def __init__(self, words: list[str]) -> None:
        *whole, last = words
        # Letters and digits only: nothing of the query is tsquery syntax.
        self.match = " & ".join([*whole, f"{last}:*"])
