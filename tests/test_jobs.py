"""Documents on the job queue, in-process: enqueued as a task row, and the sweep that puts
back what a dead worker or a lost enqueue left. tests/test_worker.py runs the real worker."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from conversations.documents import jobs
from conversations.documents import reading as documents
from conversations.documents.ingest import document_ingest
from conversations.documents.reading import prepare_document
from conversations.models import Document
from conversations.uploads import document_create
from tests import documentfiles

pytestmark = pytest.mark.django_db

PAGES = ["The first page of the report.", "The second page, about the Lyon office."]
LONG_AGO = timedelta(minutes=10)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.MISTRAL_API_KEY = ""
    settings.CHAT_INGEST_STALE_SECONDS = 60
    settings.CHAT_INGEST_MAX_ATTEMPTS = 3
    return tmp_path


@pytest.fixture
def database_queue(settings):
    """The queue as deployed: tasks are rows that wait for a worker."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


def uploaded(user) -> Document:
    return document_create(
        owner=user, document=prepare_document(name="r.pdf", data=documentfiles.pdf(PAGES))
    )


def left(document: Document, *, status: str, attempts: int, quiet_for: timedelta) -> None:
    """The row as a worker that died (or an enqueue that was lost) left it."""
    then = timezone.now() - quiet_for
    Document.objects.filter(pk=document.pk).update(
        status=status, attempts=attempts, heartbeat_at=then, created_at=then
    )


def test_enqueued_document_waits_as_a_task_row_until_a_worker_runs_it(user, database_queue):
    document = uploaded(user)
    jobs.document_ingest_enqueue(document.pk)
    document.refresh_from_db()
    assert document.status == "queued"
    task = DBTaskResult.objects.get()
    assert (str(task.id), task.status) == (document.task_id, "READY")
    assert task.args_kwargs == {"args": [], "kwargs": {"document_id": document.pk}}


def test_document_left_ingesting_by_a_dead_worker_is_read_again(user):
    document = uploaded(user)
    left(document, status="ingesting", attempts=1, quiet_for=LONG_AGO)
    assert jobs.documents_requeue() == jobs.Requeued(requeued=[document.pk], failed=[])
    document.refresh_from_db()
    assert (document.status, document.attempts, document.page_count) == ("ready", 2, 2)
    assert document.pages.count() == 2


def test_document_being_read_with_a_recent_heartbeat_is_left_alone(user, database_queue):
    document = uploaded(user)
    left(document, status="ingesting", attempts=1, quiet_for=timedelta(seconds=20))
    assert jobs.documents_requeue() == jobs.Requeued(requeued=[], failed=[])
    document.refresh_from_db()
    assert (document.status, document.attempts) == ("ingesting", 1)
    assert not DBTaskResult.objects.exists()


def test_document_whose_every_reader_died_ends_failed_with_its_reason(
    user, media, django_capture_on_commit_callbacks
):
    document = uploaded(user)
    left(document, status="ingesting", attempts=3, quiet_for=LONG_AGO)
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.documents_requeue() == jobs.Requeued(requeued=[], failed=[document.pk])
    document.refresh_from_db()
    assert document.status == "failed"
    assert "stopped this server's document reader 3 times" in document.error
    assert not document.pages.exists()
    assert [p for p in media.rglob("*") if p.is_file()] == []


def test_queued_document_whose_task_was_lost_is_enqueued_again(user, database_queue):
    document = uploaded(user)  # committed, but its process died before the enqueue
    left(document, status="queued", attempts=0, quiet_for=LONG_AGO)
    assert jobs.documents_requeue().requeued == [document.pk]
    document.refresh_from_db()
    assert DBTaskResult.objects.get(id=document.task_id).status == "READY"


def test_queued_document_whose_task_failed_is_enqueued_again(user, database_queue):
    document = uploaded(user)
    jobs.document_ingest_enqueue(document.pk)
    DBTaskResult.objects.update(status="FAILED")
    left(document, status="queued", attempts=0, quiet_for=LONG_AGO)
    assert jobs.documents_requeue().requeued == [document.pk]
    assert DBTaskResult.objects.filter(status="READY").count() == 1


def test_queued_document_waiting_its_turn_is_not_enqueued_twice(user, database_queue):
    document = uploaded(user)
    jobs.document_ingest_enqueue(document.pk)
    left(document, status="queued", attempts=0, quiet_for=LONG_AGO)  # a long queue
    assert jobs.documents_requeue() == jobs.Requeued(requeued=[], failed=[])
    assert DBTaskResult.objects.count() == 1


def test_reader_given_up_for_dead_does_not_store_over_its_successor(user, monkeypatch):
    document = uploaded(user)
    read_pages = documents.read_pages
    calls = []

    def slow_first_reader(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            # This reader goes quiet; the sweep gives it up and a second one reads it all.
            left(document, status="ingesting", attempts=1, quiet_for=LONG_AGO)
            assert jobs.documents_requeue().requeued == [document.pk]
        yield from read_pages(*args, **kwargs)

    monkeypatch.setattr(documents, "read_pages", slow_first_reader)
    assert document_ingest(document_id=document.pk) is None  # the first, come back too late
    document.refresh_from_db()
    assert (document.status, document.attempts, document.page_count) == ("ready", 2, 2)
    assert document.pages.count() == 2


def test_document_already_read_is_not_read_again_by_a_second_task(user):
    document = uploaded(user)
    assert document_ingest(document_id=document.pk).status == "ready"
    assert document_ingest(document_id=document.pk) is None
    document.refresh_from_db()
    assert (document.status, document.attempts, document.pages.count()) == ("ready", 1, 2)
