"""Full-text search of a user's conversations: their titles and every message's text and
document names, with each database's own engine. SQLite: FTS5 tables kept by triggers.
PostgreSQL: a `tsvector` column on messages set by a trigger, and an expression index on
titles, both GIN. No Python runs when a row changes, so the streaming path pays nothing
beyond its statements.

A message is indexed once it has ended: its text saved once a second while it streams is
not indexed (the triggers skip pending and streaming rows), the ending indexes it.

Both engines are asked the same thing: every word of the query, the last one as a prefix
(the box searches as one types), without stemming or stop words (conversations mix
languages); newest matches first. The DDL is here, not only in the migration, because
SQLite drops a table's triggers when a later migration rebuilds that table:
`index_repair` puts them back after every `migrate`.
"""

# ruff: noqa: S608 (every statement here is built from our own table names and constants;
# what a user typed is always a parameter)

import re
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection

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

POSTGRES_SETUP = [
    f"ALTER TABLE {MESSAGES} ADD COLUMN search_vector tsvector",
    f"""CREATE FUNCTION conversations_message_search() RETURNS trigger AS $$
    BEGIN
      IF NEW.status IN ({_ACTIVE}) THEN
        NEW.search_vector := NULL;
      ELSIF TG_OP = 'INSERT' OR NEW.text IS DISTINCT FROM OLD.text
          OR NEW.parts IS DISTINCT FROM OLD.parts OR OLD.status IN ({_ACTIVE}) THEN
        NEW.search_vector := {_PG_VECTOR.format(row="NEW")};
      END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER conversations_message_search BEFORE INSERT OR UPDATE OF text, parts, status
    ON {MESSAGES} FOR EACH ROW EXECUTE FUNCTION conversations_message_search()""",
    f"UPDATE {MESSAGES} m SET search_vector = {_PG_VECTOR.format(row='m')} "
    f"WHERE m.status NOT IN ({_ACTIVE})",
    f"CREATE INDEX conversations_message_search ON {MESSAGES} USING gin (search_vector)",
    f"CREATE INDEX conversations_title_search ON {CONVERSATIONS} USING gin ({_PG_TITLE})",
]

POSTGRES_DROP = [
    "DROP INDEX IF EXISTS conversations_title_search",
    f"DROP TRIGGER IF EXISTS conversations_message_search ON {MESSAGES}",
    "DROP FUNCTION IF EXISTS conversations_message_search()",
    f"ALTER TABLE {MESSAGES} DROP COLUMN IF EXISTS search_vector",
]


def index_install(schema_editor) -> None:
    """Create the index of the database in use and fill it from the rows there."""
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        statements = [*SQLITE_TABLES, *SQLITE_FILL, *SQLITE_TRIGGERS]
    elif vendor == "postgresql":
        statements = POSTGRES_SETUP
    else:
        raise NotImplementedError(f"No full-text search on {vendor}.")
    for statement in statements:
        schema_editor.execute(statement)


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
MARK_START, MARK_END = "\x02", "\x03"


@dataclass(frozen=True, slots=True)
class Snippet:
    """A piece of text around a match, as pieces that are either matched words or not: the
    template writes each escaped, the matched ones inside <mark>."""

    parts: list[tuple[str, bool]]

    @classmethod
    def marked(cls, text: str) -> "Snippet":
        """From text whose matches the engine put between MARK_START and MARK_END (control
        characters, which a message may hold too: at worst a piece is marked wrongly,
        never unescaped)."""
        parts = []
        for i, piece in enumerate(re.split(f"[{MARK_START}{MARK_END}]", text)):
            if piece:
                parts.append((piece, i % 2 == 1))
        return cls(parts)


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
    extra: dict = field(default_factory=dict)


def query_words(query: str) -> list[str]:
    return _WORD.findall(query.lower())[:MAX_WORDS]


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
    ids = list(dict.fromkeys([*by_message, *titled]))
    rows = Conversation.objects.filter(pk__in=ids, owner=user).only(
        "id", "title", "updated_at", "archived_at"
    )
    snippets = engine.snippets([message_id for message_id, _ in by_message.values()])
    hits = []
    for row in rows:
        hit = Hit(row.pk, row.title, row.updated_at, row.archived_at is not None)
        if row.pk in titled:
            hit.title_snippet = Snippet.marked(titled[row.pk])
        if row.pk in by_message:
            hit.message_id, hit.role = by_message[row.pk]
            hit.snippet = snippets.get(hit.message_id)
        hits.append(hit)
    hits.sort(key=lambda hit: (hit.updated_at, hit.conversation_id), reverse=True)
    return hits[:limit]


# How many matching messages are read per step while collecting distinct conversations,
# and how many steps at most: a word in every message of one long conversation must not
# make a query read them all.
_STEP = 200
_STEPS = 10


class _Sqlite:
    def __init__(self, words: list[str]) -> None:
        *whole, last = words
        self.match = " ".join([*(f'"{w}"' for w in whole), f'"{last}"*'])

    def messages(self, owner_id: int, limit: int) -> dict[int, tuple[int, str]]:
        """conversation id: (newest matching message, its role), newest first."""
        found: dict[int, tuple[int, str]] = {}
        before = 1 << 62
        with connection.cursor() as cursor:
            for _ in range(_STEPS):
                cursor.execute(
                    f"SELECT f.rowid, m.conversation_id, m.role FROM {MESSAGE_FTS} f "
                    f"JOIN {MESSAGES} m ON m.id = f.rowid "
                    f"JOIN {CONVERSATIONS} c ON c.id = m.conversation_id "
                    f"WHERE {MESSAGE_FTS} MATCH %s AND f.rowid < %s AND c.owner_id = %s "
                    "ORDER BY f.rowid DESC LIMIT %s",
                    [self.match, before, owner_id, _STEP],
                )
                rows = cursor.fetchall()
                for message_id, conversation_id, role in rows:
                    found.setdefault(conversation_id, (message_id, role))
                if len(found) >= limit or len(rows) < _STEP:
                    break
                before = rows[-1][0]
        return dict(list(found.items())[:limit])

    def titles(self, owner_id: int, limit: int) -> dict[int, str]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT f.rowid, highlight({TITLE_FTS}, 0, %s, %s) FROM {TITLE_FTS} f "
                f"JOIN {CONVERSATIONS} c ON c.id = f.rowid "
                f"WHERE {TITLE_FTS} MATCH %s AND c.owner_id = %s ORDER BY f.rowid DESC LIMIT %s",
                [MARK_START, MARK_END, self.match, owner_id, limit],
            )
            return dict(cursor.fetchall())

    def snippets(self, message_ids: list[int]) -> dict[int, Snippet]:
        if not message_ids:
            return {}
        ids = ", ".join(["%s"] * len(message_ids))
        with connection.cursor() as cursor:
            # -1: the column that matched best (the text, or the document names).
            cursor.execute(
                f"SELECT rowid, snippet({MESSAGE_FTS}, -1, %s, %s, '…', 16) "
                f"FROM {MESSAGE_FTS} WHERE {MESSAGE_FTS} MATCH %s AND rowid IN ({ids})",
                [MARK_START, MARK_END, self.match, *message_ids],
            )
            return {pk: Snippet.marked(text) for pk, text in cursor.fetchall()}


class _Postgres:
    def __init__(self, words: list[str]) -> None:
        *whole, last = words
        self.tsquery = " & ".join([*whole, f"{last}:*"])

    def messages(self, owner_id: int, limit: int) -> dict[int, tuple[int, str]]:
        found: dict[int, tuple[int, str]] = {}
        before = 1 << 62
        with connection.cursor() as cursor:
            for _ in range(_STEPS):
                cursor.execute(
                    f"SELECT m.id, m.conversation_id, m.role FROM {MESSAGES} m "
                    f"JOIN {CONVERSATIONS} c ON c.id = m.conversation_id "
                    "WHERE m.search_vector @@ to_tsquery('simple', %s) AND m.id < %s "
                    "AND c.owner_id = %s ORDER BY m.id DESC LIMIT %s",
                    [self.tsquery, before, owner_id, _STEP],
                )
                rows = cursor.fetchall()
                for message_id, conversation_id, role in rows:
                    found.setdefault(conversation_id, (message_id, role))
                if len(found) >= limit or len(rows) < _STEP:
                    break
                before = rows[-1][0]
        return dict(list(found.items())[:limit])

    def titles(self, owner_id: int, limit: int) -> dict[int, str]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, ts_headline('simple', title, q, %s) "
                f"FROM {CONVERSATIONS}, to_tsquery('simple', %s) q "
                f"WHERE {_PG_TITLE} @@ q AND owner_id = %s ORDER BY id DESC LIMIT %s",
                [_headline_options(whole=True), self.tsquery, owner_id, limit],
            )
            return dict(cursor.fetchall())

    def snippets(self, message_ids: list[int]) -> dict[int, Snippet]:
        if not message_ids:
            return {}
        names = "jsonb_path_query_array(m.parts, '$[*] ? (@.type == \"document\").name')"
        with connection.cursor() as cursor:
            # A match in a document's name shows the names, else the text around the match.
            cursor.execute(
                f"SELECT m.id, ts_headline('simple', CASE WHEN to_tsvector('simple', m.text) @@ q "
                f"THEN m.text ELSE (SELECT string_agg(n, ' ') FROM jsonb_array_elements_text("
                f"{names}) n) END, q, %s) "
                f"FROM {MESSAGES} m, to_tsquery('simple', %s) q WHERE m.id = ANY(%s)",
                [_headline_options(whole=False), self.tsquery, message_ids],
            )
            return {pk: Snippet.marked(text or "") for pk, text in cursor.fetchall()}


def _headline_options(*, whole: bool) -> str:
    marks = f'StartSel="{MARK_START}", StopSel="{MARK_END}"'
    if whole:
        return f"{marks}, HighlightAll=true"
    return f'{marks}, MaxWords=24, MinWords=10, ShortWord=1, MaxFragments=1, FragmentDelimiter="…"'
