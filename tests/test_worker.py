"""The real job worker (`manage.py worker`) as a subprocess on this run's test database
(SQLite's file, or PostgreSQL's test database): a document waits for it, a worker killed
mid-read leaves the document to the next one, and one that every reader dies on ends failed.

A reader is held mid-read by OCR sent to a socket that accepts and never answers."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import Client
from django_tasks_db.models import DBTaskResult

from conversations.models import Document
from tests import documentfiles
from tests.test_documents import signed_in, upload

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[1]
TEXT = "The Lyon office opened in March with forty engineers on staff."
STALE_SECONDS = "2"


@pytest.fixture(autouse=True)
def database_queue(settings, tmp_path):
    """Uploads here enqueue task rows for a worker, as in production, and store their files
    where the workers' DATA_DIR has them."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MISTRAL_API_KEY = ""


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A base URL whose server takes connections and never answers: OCR waits on it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


def database_url() -> str:
    """This run's test database, for another process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        user += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def start_worker(tmp_path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts `manage.py worker` processes on the test database; all are stopped at the end."""
    started: list[subprocess.Popen] = []
    log = tmp_path / "worker.log"

    def start(**env: str) -> subprocess.Popen:
        environment = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "DATA_DIR": str(tmp_path),
            "MISTRAL_API_KEY": "",
            "MISTRAL_MAX_RETRIES": "0",
            "CHAT_INGEST_STALE_SECONDS": STALE_SECONDS,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        with log.open("ab") as output:
            process = subprocess.Popen(  # noqa: S603 (fixed arguments)
                [sys.executable, "manage.py", "worker", "--no-reload", "--interval", "0.1"],
                cwd=ROOT,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        return process

    start.log = log
    yield start
    for process in started:
        process.kill()
        process.wait(10)


def kill_9(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def document_when(pk: int, done: Callable[[Document], bool], log: Path) -> Document:
    """The document once `done` holds, polled with a deadline."""
    deadline = time.monotonic() + 60
    while True:
        document = Document.objects.get(pk=pk)
        if done(document):
            return document
        if time.monotonic() > deadline:
            log_text = log.read_text() if log.exists() else ""
            pytest.fail(f"document {pk} stayed {document.status}:\n{log_text}")
        time.sleep(0.05)


def files_when_gone(folder: Path, within: float = 10.0) -> list[Path]:
    """The files left in `folder`, polled with a deadline until there are none."""
    deadline = time.monotonic() + within
    while True:
        left = [p for p in folder.rglob("*") if p.is_file()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)  # polling with a deadline


def uploaded(client: Client, pages: list[str | None]) -> int:
    response = upload(client, "report.pdf", documentfiles.pdf(pages))
    assert response.status_code == 201
    return response.json()["document"]["id"]


def test_document_uploaded_while_no_worker_runs_is_read_once_one_starts(user, start_worker):
    client = signed_in(user)
    pk = uploaded(client, [TEXT, TEXT])
    document = Document.objects.get(pk=pk)
    assert document.status == "queued"
    assert DBTaskResult.objects.get(id=document.task_id).status == "READY"

    start_worker()
    document = document_when(pk, lambda d: d.status == "ready", start_worker.log)
    assert (document.page_count, document.attempts) == (2, 1)
    data = client.get(f"/documents/{pk}/").json()["document"]
    assert (data["status"], data["pages_done"]) == ("ready", 2)
    assert DBTaskResult.objects.get(id=document.task_id).status == "SUCCESSFUL"


def test_worker_killed_mid_read_leaves_the_document_to_the_next_worker(
    user, start_worker, silent_server
):
    client = signed_in(user)
    pk = uploaded(client, [TEXT, None])  # page 2 is a scan: OCR holds the first reader
    first = start_worker(MISTRAL_API_KEY="test-key", MISTRAL_BASE_URL=silent_server)
    document_when(pk, lambda d: d.status == "ingesting", start_worker.log)
    kill_9(first)

    start_worker()  # no key: the scanned page is kept as a picture, no OCR
    document = document_when(pk, lambda d: d.status == "ready", start_worker.log)
    assert document.attempts == 2
    pages = [(p.number, p.source) for p in document.pages.order_by("number")]
    assert pages == [(1, "text_layer"), (2, "page_image")]
    assert client.get(f"/documents/{pk}/").json()["document"]["status"] == "ready"


def test_document_every_worker_dies_on_ends_failed_after_the_bound(
    user, start_worker, silent_server, tmp_path
):
    client = signed_in(user)
    pk = uploaded(client, [TEXT, None])
    dies = {"MISTRAL_API_KEY": "test-key", "MISTRAL_BASE_URL": silent_server}
    bound = {"CHAT_INGEST_MAX_ATTEMPTS": "2"}
    for attempt in (1, 2):
        worker = start_worker(**dies, **bound)
        document_when(
            pk, lambda d, n=attempt: (d.status, d.attempts) == ("ingesting", n), start_worker.log
        )
        kill_9(worker)

    start_worker(**dies, **bound)
    document = document_when(pk, lambda d: d.status == "failed", start_worker.log)
    assert document.attempts == 2  # not begun a third time
    assert document.error == (
        "Reading it stopped this server's document reader 2 times; it was not read."
    )
    assert not document.pages.exists()
    # The file goes once the failure commits, in the worker: a moment after the row says so.
    assert files_when_gone(tmp_path / "media") == []
    data = client.get(f"/documents/{pk}/").json()["document"]
    assert (data["status"], data["error"]) == ("failed", document.error)
