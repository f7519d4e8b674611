"""Search at scale (issue 24): 10,000 conversations with 200,000 messages, and the server
time of `GET /search/?q=...` on whichever database the environment names.

    DATA_DIR=/tmp/bench-search .venv/bin/python -m bench.search            # SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/chat_bench_search \\
        .venv/bin/python -m bench.search                                  # PostgreSQL

It migrates the database, fills it once (refusing one that holds other conversations),
then times each query: the whole view through Django's test client (middleware, session,
the search, the template) and `conversation_search` alone, in this process, so the
figures are server time with no network; with this process's CPU time per request, which
on SQLite (in process) includes the database's work and holds still on a busy machine.
Most conversations (9,000) belong to one user, the worst case for the owner's filter;
1,000 (every tenth) belong to a second user, whose queries must skip the first user's
matches. Message text is drawn from a Zipf-distributed vocabulary, so a common word is in
most messages and a rare one in a handful; one answer in ten is 1,500 words long.
"""

import argparse
import os
import random
import statistics
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

CONVERSATIONS = 10_000
MESSAGES_PER_CONVERSATION = 20
SECOND_USER_EVERY = 10  # every tenth conversation is the second user's, spread over time
VOCABULARY = 20_000

# (label, query): which words are common comes from the Zipf ranks of the vocabulary.
QUERIES = [
    ("very common word (in most messages)", "w0"),
    ("common word", "w20"),
    ("medium word", "w500"),
    ("rare word", "w15000"),
    ("two common words", "w1 w2"),
    ("prefix of two letters", "w3"),
    ("title word", "topic7"),
    ("no match", "nothinglikethis"),
    ("document name", "report42"),
]


def _setup() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _words(rng: random.Random, count: int, weights: list[float]) -> str:
    return " ".join(f"w{i}" for i in rng.choices(range(VOCABULARY), cum_weights=weights, k=count))


def _length(rng: random.Random, question: bool) -> int:
    """Words in a message: questions are short, answers 120 words, one in ten 1,500 (code,
    long explanations), whose snippets cost the most to cut."""
    if question:
        return rng.randint(5, 30)
    return 1500 if rng.random() < 0.1 else 120


def fill() -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from conversations.models import Conversation, Message

    if Conversation.objects.exists():
        if Conversation.objects.exclude(owner__username__startswith="bench-search").exists():
            sys.exit("This database holds other conversations: use an empty one.")
        print("already filled", file=sys.stderr)
        return
    users = get_user_model()
    main = users.objects.create_user(username="bench-search-main")
    second = users.objects.create_user(username="bench-search-second")
    rng = random.Random(24)
    weights, total = [], 0.0
    for rank in range(VOCABULARY):
        total += 1 / (rank + 1)
        weights.append(total)
    started = time.perf_counter()
    batch = 500
    for first in range(0, CONVERSATIONS, batch):
        with transaction.atomic():
            conversations = Conversation.objects.bulk_create(
                Conversation(
                    owner=second if i % SECOND_USER_EVERY == 0 else main,
                    model="mistral-small-latest",
                    title=f"topic{i % 1000} {_words(rng, 3, weights)}",
                )
                for i in range(first, min(first + batch, CONVERSATIONS))
            )
            messages = []
            for conversation in conversations:
                for n in range(MESSAGES_PER_CONVERSATION):
                    question = n % 2 == 0
                    parts = []
                    if question and n == 0 and conversation.pk % 10 == 0:
                        name = f"report{conversation.pk // 10 % 100}.pdf"
                        parts = [{"type": "document", "document": 1, "name": name, "pages": 2}]
                    messages.append(
                        Message(
                            conversation=conversation,
                            role=Message.Role.USER if question else Message.Role.ASSISTANT,
                            text=_words(rng, _length(rng, question), weights),
                            parts=parts,
                        )
                    )
            Message.objects.bulk_create(messages, batch_size=2000)
        done = first + batch
        print(
            f"\r{done:,} conversations ({time.perf_counter() - started:.0f} s)",
            end="",
            file=sys.stderr,
        )
    print(file=sys.stderr)
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
            table = "conversations_message_fts"
            cursor.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")  # noqa: S608


def measure(runs: int) -> list[dict]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from conversations.models import Message
    from conversations.search import conversation_search

    users = get_user_model()
    rows = []
    print(
        f"{connection.vendor}: {Message.objects.count():,} messages, "
        f"{users.objects.filter(username__startswith='bench-search').count()} users",
        file=sys.stderr,
    )
    for username in ("bench-search-main", "bench-search-second"):
        user = users.objects.get(username=username)
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        for label, query in QUERIES:
            url = f"{reverse('search')}?q={query}&partial=1"
            client.get(url)  # warm: caches, prepared plans
            view, cpu, alone = [], [], []
            for _ in range(runs):
                start, start_cpu = time.perf_counter(), time.process_time()
                response = client.get(url)
                view.append((time.perf_counter() - start) * 1000)
                cpu.append((time.process_time() - start_cpu) * 1000)
                assert response.status_code == 200
                start = time.perf_counter()
                hits = conversation_search(user=user, query=query)
                alone.append((time.perf_counter() - start) * 1000)
            rows.append(
                {
                    "user": username.removeprefix("bench-search-"),
                    "label": label,
                    "query": query,
                    "hits": len(hits),
                    "view_p50": statistics.median(view),
                    "view_p95": statistics.quantiles(view, n=20)[-1],
                    "view_max": max(view),
                    "cpu_p50": statistics.median(cpu),
                    "search_p50": statistics.median(alone),
                    "search_p95": statistics.quantiles(alone, n=20)[-1],
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="timed requests per query")
    args = parser.parse_args()
    _setup()
    fill()
    rows = measure(args.runs)
    from django.db import connection

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{connection.vendor}, {args.runs} runs per query, ms; load average {load}")
    print(
        "| user | query | hits | view p50 | view p95 | view max | view CPU p50 "
        "| search p50 | search p95 |"
    )
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(
            f"| {r['user']} | {r['label']} (`{r['query']}`) | {r['hits']} | {r['view_p50']:.1f} "
            f"| {r['view_p95']:.1f} | {r['view_max']:.1f} | {r['cpu_p50']:.1f} "
            f"| {r['search_p50']:.1f} | {r['search_p95']:.1f} |"
        )


if __name__ == "__main__":
    main()
