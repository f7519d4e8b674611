"""Faults with real processes: two daphne processes A and B of one site on PostgreSQL and
Redis, the fake model server, and sockets that behave as the browser's. A process is killed
with SIGKILL or stopped with SIGTERM mid-answer, Stop is pressed on B for answers running on
A a hundred times, Redis and PostgreSQL are restarted under a running answer. Each test
asserts what a user would notice: the answer's ending in the tab, its text in the row, and
that no answer is left `streaming`. docs/reliability.md reports the figures.

Runs in scripts/test's PostgreSQL + Redis run (DATABASE_URL on PostgreSQL) and is skipped in
the others, which it would only slow down, but for one test of a lone process on the
embedded defaults (Ctrl-C of ./scripts/serve), which runs everywhere. Redis is always a
redis-server of the test's own (the machine's may be shared with other runs, and the channel
layer's group names are conversation ids), restarted only by the test; so is the PostgreSQL
cluster that is restarted. PostgreSQL unreachable, or a server program missing: skipped,
failed under CI.

With CHAT_FAULTS_FIGURES set to a file's path, each test appends what it measured there as
one JSON line.
"""

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from conversations.answers import RESTARTED_TEXT
from conversations.live.consumers import CLOSE_RESTARTING
from tests.e2e.conftest import own_database
from tests.fake_mistral import Reply
from tests.fault_processes import (
    Site,
    Tab,
    active_answers,
    answer_row,
    daphnes,
    postgres_cluster,
    redis_server,
    site_env,
    unavailable,
)

TAKEOVER_SECONDS = 10.0  # CHAT_TAKEOVER_SECONDS's default, which the kill test keeps
DRAIN_SECONDS = 2.0
# What a tab tolerates between Stop and the answer's ending before counting it lost.
STOP_WITHIN = 2.0


def words(count: int) -> list[str]:
    return [f"w{i} " for i in range(count)]


def record(figure: str, **values) -> None:
    path = os.environ.get("CHAT_FAULTS_FIGURES")
    if path:
        with Path(path).open("a") as out:
            out.write(json.dumps({"figure": figure, **values}) + "\n")


def shared_postgres() -> str:
    database = os.environ.get("DATABASE_URL", "")
    if urlsplit(database).scheme not in ("postgres", "postgresql"):
        pytest.skip("runs in the PostgreSQL + Redis run of scripts/test (DATABASE_URL)")
    server = urlunsplit(urlsplit(database)._replace(path="/postgres"))
    try:
        psycopg.connect(server, connect_timeout=3).close()
    except psycopg.Error as exc:
        unavailable(f"needs PostgreSQL at {server}: {str(exc).splitlines()[0]}")
    return database


@pytest.fixture(scope="module")
def site(fake_server, tmp_path_factory):
    """The site's database on the shared PostgreSQL (a database of its own, dropped after),
    migrated, with a signed-in user and fresh conversations for each test."""
    database = shared_postgres()
    folder = tmp_path_factory.mktemp("faults")
    env = site_env(folder=folder, database=database, redis_url="", model_url=fake_server.base_url)
    with own_database(env) as env:
        site = Site(env, folder)
        site.prepare(conversations=12)
        yield site


@pytest.fixture
def redis(tmp_path):
    with redis_server(tmp_path) as server:
        yield server


@pytest.fixture
def fake(fake_server):
    """The fake model server, reset before and after (a reply still streaming ends)."""
    fake_server.reset()
    fake_server.api_key = "test-key"
    yield fake_server
    fake_server.reset()


@contextlib.asynccontextmanager
async def tabs(*tabs: Tab):
    try:
        for tab in tabs:
            await tab.open()
        yield tabs
    finally:
        for tab in tabs:
            await tab.close()


async def test_kill_9_of_the_answering_process_is_taken_over_by_the_other(
    site, redis, fake, tmp_path
):
    # Save interval and take-over time at their defaults: this measures the real bound.
    env = {**site.env, "REDIS_URL": redis.url}
    conversation = site.conversation()
    full = words(400)
    with daphnes(env, tmp_path, "A", "B") as (a, b):
        async with tabs(Tab(a.url, site.cookie), Tab(b.url, site.cookie)) as (on_a, on_b):
            await on_b.subscribe(conversation)
            fake.enqueue(Reply.tokens(full, interval=0.05))  # 20 s unless cut
            answer = await on_a.ask(conversation, "A long story, please")

            # Streaming on A for 3 s, watched on B, saved every second: then A dies, at
            # whatever point between two saves.
            await on_b.until(
                lambda: len(on_b.texts.get(answer, "")) >= len("".join(full[:60])),
                "three seconds of the answer on B",
            )
            saved_before = (await answer_row(site.database, answer))["text"]
            assert saved_before
            crashed = time.monotonic()
            a.kill()
            streamed = on_b.texts[answer]
            ending = await on_b.ended(answer, within=TAKEOVER_SECONDS + 5)
            took = time.monotonic() - crashed

            row = await answer_row(site.database, answer)
            assert (ending["status"], ending["error_text"]) == ("interrupted", RESTARTED_TEXT)
            assert row == {
                "status": "interrupted",
                "text": ending["text"],
                "error_code": "interrupted",
            }
            assert ending["text"].startswith(saved_before)
            assert "".join(full).startswith(ending["text"])
            assert took <= TAKEOVER_SECONDS + 1.0
            # Words shown on B before the crash but not saved: one word each 0.05 s.
            lost = max(0, len(streamed.split()) - len(ending["text"].split()))
            record(
                "takeover",
                seconds=round(took, 2),
                lost_words=lost,
                kept_words=len(row["text"].split()),
            )

            # The conversation takes a question on B at once; a final chunk that is not
            # followed by [DONE] still makes it complete.
            fake.enqueue(Reply.final_then_cut(["Still", " here."]))
            again = await on_b.ask(conversation, "Are you still there?")
            ending = await on_b.ended(again)
            assert (ending["status"], ending["text"]) == ("complete", "Still here.")
            assert await active_answers(site.database) == []


async def test_sigterm_finishes_what_it_can_and_keeps_the_rest_with_all_its_text(
    site, redis, fake, tmp_path
):
    env = {
        **site.env,
        "REDIS_URL": redis.url,
        "CHAT_SAVE_INTERVAL": "0.2",
        "CHAT_DRAIN_SECONDS": str(DRAIN_SECONDS),
    }
    long_one, short_one, refused = (site.conversation() for _ in range(3))
    full = words(200)
    with daphnes(env, tmp_path, "A", "B") as (a, b):
        on_a, short_tab, late_tab, on_b = (
            Tab(a.url, site.cookie),
            Tab(a.url, site.cookie),
            Tab(a.url, site.cookie),
            Tab(b.url, site.cookie),
        )
        async with tabs(on_a, short_tab, late_tab, on_b):
            await on_b.subscribe(long_one)
            fake.enqueue(Reply.tokens(full, interval=0.05))  # 10 s: outlasts the drain
            long_answer = await on_a.ask(long_one, "A long story, please")
            await on_a.until(lambda: len(on_a.texts.get(long_answer, "")) > 20, "text on A")
            fake.enqueue(Reply.tokens(words(10), interval=0.1))  # 1 s: ends within the drain
            short_answer = await short_tab.ask(short_one, "Something short")
            await short_tab.until(lambda: short_tab.texts.get(short_answer), "the short answer")

            signalled = time.monotonic()
            a.signal(signal.SIGTERM)
            # While it drains: /health says 503 and a new question is refused.
            await asyncio.to_thread(
                lambda: wait_for_status(a, 503)  # noqa: PLW0108
            )
            await late_tab.send({"type": "send", "conversation": refused, "text": "Hello?"})
            error = await late_tab.until(
                lambda: next((f for f in late_tab.frames if f["type"] == "error"), None),
                "the refusal",
            )
            assert error["code"] == "restarting"

            ending = await on_a.ended(long_answer, within=DRAIN_SECONDS + 5)
            streamed = on_a.texts[long_answer]
            assert (ending["status"], ending["error_text"]) == ("interrupted", RESTARTED_TEXT)
            assert ending["text"] == streamed  # every word the tab was shown
            assert "".join(full).startswith(streamed) and len(streamed) > 20
            assert (await on_b.ended(long_answer))["text"] == streamed
            short_ending = await short_tab.ended(short_answer)
            assert (short_ending["status"], short_ending["text"]) == (
                "complete",
                "".join(words(10)),
            )

            for tab in (on_a, short_tab, late_tab):
                await tab.until(lambda t=tab: t.close_codes, "the socket's close")
            closed = [tab.close_codes for tab in (on_a, short_tab, late_tab)]
            assert closed == [[CLOSE_RESTARTING]] * 3
            exit_code = await asyncio.to_thread(a.process.wait, DRAIN_SECONDS + 10)
            exited = time.monotonic() - signalled
            assert exit_code == 0
            assert await answer_row(site.database, long_answer) == {
                "status": "interrupted",
                "text": streamed,
                "error_code": "interrupted",
            }
            assert (await answer_row(site.database, short_answer))["status"] == "complete"
            assert await active_answers(site.database) == []
            record("drain", exit_seconds=round(exited, 2), kept_chars=len(streamed))


def wait_for_status(process, status: int) -> None:
    deadline = time.monotonic() + 5
    while process.health() != status:
        assert time.monotonic() < deadline, f"/health of {process.name} never said {status}"
        time.sleep(0.05)  # polling with a deadline


async def test_stop_on_one_process_stops_answers_on_the_other_every_time(
    site, redis, fake, tmp_path
):
    env = {**site.env, "REDIS_URL": redis.url, "CHAT_SAVE_INTERVAL": "0.2"}
    conversation = site.conversation()
    with daphnes(env, tmp_path, "A", "B") as (a, b):
        async with tabs(Tab(a.url, site.cookie), Tab(b.url, site.cookie)) as (on_a, on_b):
            await on_b.subscribe(conversation)
            lost, times = [], []
            for i in range(100):
                fake.enqueue(Reply.tokens(words(200), interval=0.05))  # 10 s unless stopped
                answer = await on_a.ask(conversation, f"Question {i}")
                await on_b.until(lambda a=answer: on_b.texts.get(a), "the answer on B")
                pressed = time.monotonic()
                await on_b.send({"type": "stop", "conversation": conversation})
                try:
                    ending = await on_b.ended(answer, within=STOP_WITHIN)
                except AssertionError:
                    ending = await on_b.ended(answer, within=15)
                times.append(time.monotonic() - pressed)
                if ending["status"] != "stopped" or times[-1] > STOP_WITHIN:
                    lost.append((answer, ending["status"], round(times[-1], 2)))
                    if len(lost) >= 3:
                        break
                await on_a.ended(answer)  # the conversation is free on A too
            first, times = times[0], sorted(times)
            record(
                "stop",
                first=round(first, 3),
                tries=len(times),
                lost=len(lost),
                min=round(times[0], 3),
                median=round(times[len(times) // 2], 3),
                max=round(times[-1], 3),
            )
            assert lost == []
            assert len(times) == 100
            assert await active_answers(site.database) == []


async def test_redis_restart_mid_answer_loses_nothing(site, redis, fake, tmp_path):
    env = {**site.env, "REDIS_URL": redis.url, "CHAT_SAVE_INTERVAL": "0.2"}
    conversation = site.conversation()
    full = words(80)
    with daphnes(env, tmp_path, "A", "B") as (a, b):
        on_a, on_b = (
            Tab(a.url, site.cookie, reconnect=True),
            Tab(b.url, site.cookie, reconnect=True),
        )
        async with tabs(on_a, on_b):
            await on_b.subscribe(conversation)
            fake.enqueue(Reply.tokens(full, interval=0.05))  # 4 s
            answer = await on_a.ask(conversation, "Through a Redis restart")
            await on_b.until(lambda: on_b.texts.get(answer), "the answer on B")

            restarted = time.monotonic()
            await asyncio.to_thread(redis.stop)
            await asyncio.to_thread(redis.start)
            down = time.monotonic() - restarted

            ending = await on_a.ended(answer, within=15)
            assert (ending["status"], ending["text"]) == ("complete", "".join(full))
            seen_on_b = await on_b.ended(answer, within=20)
            assert (seen_on_b["status"], seen_on_b["text"]) == ("complete", "".join(full))
            row = await answer_row(site.database, answer)
            assert (row["status"], row["text"]) == ("complete", "".join(full))
            record(
                "redis_restart",
                down_seconds=round(down, 2),
                b_final_seconds=round(time.monotonic() - restarted, 2),
                b_reconnects=on_b.connects - 1,
                a_reconnects=on_a.connects - 1,
            )

            # And questions go on, seen in both processes.
            fake.enqueue(Reply.tokens(["After", " the", " restart."]))
            again = await on_b.ask(conversation, "And now?")
            assert (await on_b.ended(again))["text"] == "After the restart."
            await on_a.subscribe(conversation)
            assert await active_answers(site.database) == []


@pytest.fixture
def private_postgres_site(fake_server, tmp_path):
    """A site on a PostgreSQL cluster of the test's own, which it may restart."""
    shared_postgres()  # only in the PostgreSQL run, like the others
    with postgres_cluster() as cluster:
        env = site_env(
            folder=tmp_path,
            database=cluster.url,
            redis_url="",
            model_url=fake_server.base_url,
        )
        with own_database(env) as env:
            site = Site(env, tmp_path)
            site.prepare(conversations=1)
            yield site, cluster


async def test_postgres_restart_mid_answer_keeps_all_its_text(
    private_postgres_site, redis, fake, tmp_path
):
    site, cluster = private_postgres_site
    env = {**site.env, "REDIS_URL": redis.url, "CHAT_SAVE_INTERVAL": "0.2"}
    conversation = site.conversation()
    full = words(80)
    with daphnes(env, tmp_path, "A", "B") as (a, b):
        async with tabs(Tab(a.url, site.cookie)) as (on_a,):
            fake.enqueue(Reply.tokens(full, interval=0.05))  # 4 s
            answer = await on_a.ask(conversation, "Through a PostgreSQL restart")
            await on_a.until(lambda: on_a.texts.get(answer), "the answer")

            stopped = time.monotonic()
            await asyncio.to_thread(cluster.stop)
            # Down until a save of the answer has failed on it, then back.
            await asyncio.to_thread(
                lambda: wait_for_log(a, "progress failed")  # noqa: PLW0108
            )
            await asyncio.to_thread(cluster.start)
            down = time.monotonic() - stopped

            ending = await on_a.ended(answer, within=30)
            assert (ending["status"], ending["text"]) == ("complete", "".join(full))
            assert on_a.close_codes == []
        row = await answer_row(site.database, answer)
        assert (row["status"], row["text"]) == ("complete", "".join(full))
        assert await active_answers(site.database) == []
        record("postgres_restart", down_seconds=round(down, 2), failed_saves=failures(a))


def failures(process) -> int:
    return process.text().count("progress failed") + process.text().count("ending of answer")


def wait_for_log(process, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in process.text():
        assert time.monotonic() < deadline, f"{process.name}'s log never said {text!r}"
        time.sleep(0.05)  # polling with a deadline


@pytest.fixture
def embedded_site(fake_server, tmp_path):
    """One process on the embedded defaults (SQLite, the in-memory channel layer), as
    ./scripts/serve runs it; on PostgreSQL in the PostgreSQL run."""
    env = site_env(
        folder=tmp_path,
        database=os.environ.get("DATABASE_URL", ""),
        redis_url="",
        model_url=fake_server.base_url,
    )
    with own_database(env) as env:
        site = Site(env, tmp_path)
        site.prepare(conversations=1)
        yield site


async def test_ctrl_c_of_a_lone_process_keeps_the_answer_and_closes_with_the_restart_code(
    embedded_site, fake, tmp_path
):
    """The one test of this file in every run: the drain is the same with one process, and
    Ctrl-C of ./scripts/serve sends SIGINT. (Under daphne the close code once failed for
    every socket, and tabs saw 1006: autobahn refuses to send 1012.)"""
    site = embedded_site
    env = {**site.env, "CHAT_SAVE_INTERVAL": "0.2", "CHAT_DRAIN_SECONDS": "1"}
    conversation = site.conversation()
    with daphnes(env, tmp_path, "A") as (a,):
        async with tabs(Tab(a.url, site.cookie)) as (tab,):
            fake.enqueue(Reply.tokens(words(200), interval=0.05))  # 10 s: outlasts the drain
            answer = await tab.ask(conversation, "A long story, please")
            await tab.until(lambda: tab.texts.get(answer), "the answer")
            a.signal(signal.SIGINT)
            ending = await tab.ended(answer, within=10)
            assert (ending["status"], ending["text"]) == ("interrupted", tab.texts[answer])
            await tab.until(lambda: tab.close_codes, "the socket's close")
            assert tab.close_codes == [CLOSE_RESTARTING]
            assert await asyncio.to_thread(a.process.wait, 15) == 0
