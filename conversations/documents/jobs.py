"""Documents read on the job queue (django-tasks, the backport of Django 6's `django.tasks`;
stored by django-tasks-db in the site's own database), so that reading one survives the
request that uploaded it and the process that started it.

The upload view enqueues `document_read` once the document's row is committed; `manage.py
worker` (the queue's db_worker, with the sweep below beside it) runs it. The queue runs a task
once and never again: a worker killed mid-read leaves its task `RUNNING` and the document
`ingesting` for ever, and an enqueue lost with its process (after the commit, before the
task row) leaves the document `queued` with no task. The sweep, run by every worker at
start-up and every half of CHAT_INGEST_STALE_SECONDS, puts such documents back:

- `ingesting` with no heartbeat for CHAT_INGEST_STALE_SECONDS (the reader renews it every
  quarter of that, ingest._Heartbeat): its worker died. It goes back to `queued` with a new
  task, unless CHAT_INGEST_MAX_ATTEMPTS workers have already begun it; then it is `failed`
  with a reason, since a document that kills its reader each time would otherwise take every
  worker down for ever.
- `queued` for as long, whose task is gone, failed or was taken by a worker that never began
  it: enqueued again. One still waiting its turn in a long queue (`READY`) is left alone, so a
  backlog is not multiplied.

Reading twice is harmless: ingest.document_ingest claims a document with one conditional
UPDATE, so of two tasks for one document only one reads it.
"""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import Q
from django.utils import timezone
from django_tasks import TaskResultStatus, task
from django_tasks.exceptions import TaskResultDoesNotExist

from conversations.documents.ingest import document_fail, document_ingest
from conversations.models import Document

logger = logging.getLogger(__name__)


@task()
def document_read(document_id: int) -> None:
    """The task: read one document (ingest.document_ingest), which does nothing when the
    document is no longer queued, so a task run again or twice is harmless."""
    document_ingest(document_id=document_id)


def document_ingest_enqueue(document_id: int) -> None:
    """Queue the document for a worker. Call once its row is committed (the view does so from
    transaction.on_commit): a worker may start on it at once, from another connection."""
    result = document_read.enqueue(document_id=document_id)
    Document.objects.filter(pk=document_id, status=Document.Status.QUEUED).update(
        task_id=str(result.id), heartbeat_at=timezone.now()
    )


@dataclass(frozen=True)
class Requeued:
    """What one sweep did, for the worker's log."""

    requeued: list[int]
    failed: list[int]


def documents_requeue() -> Requeued:
    """Put back the documents a dead worker or a lost enqueue left (see the module's
    docstring); safe in several workers at once, each change being conditional on the row
    still being as it was found."""
    cutoff = timezone.now() - timedelta(seconds=settings.CHAT_INGEST_STALE_SECONDS)
    quiet = Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=cutoff)
    requeued: list[int] = []
    failed: list[int] = []
    dead = Document.objects.filter(quiet, status=Document.Status.INGESTING)
    for document_id, attempts in dead.values_list("pk", "attempts"):
        if attempts >= settings.CHAT_INGEST_MAX_ATTEMPTS:
            if _give_up(document_id, attempts, quiet):
                failed.append(document_id)
        elif dead.filter(pk=document_id, attempts=attempts).update(
            status=Document.Status.QUEUED, pages_done=0
        ):
            document_ingest_enqueue(document_id)
            requeued.append(document_id)
    waiting = Document.objects.filter(quiet, status=Document.Status.QUEUED, created_at__lt=cutoff)
    for document_id, task_id in waiting.values_list("pk", "task_id"):
        if not _task_waits(task_id):
            document_ingest_enqueue(document_id)
            requeued.append(document_id)
    return Requeued(requeued=requeued, failed=failed)


def _give_up(document_id: int, attempts: int, quiet: Q) -> bool:
    """Fail a document whose every reader died, unless a reader has beaten meanwhile."""
    return document_fail(
        document_id=document_id,
        error=f"Reading it stopped this server's document reader {attempts} times; "
        "it was not read.",
        attempt=attempts,
        only_if=quiet,
    )


def _task_waits(task_id: str) -> bool:
    """Whether the document's task is still waiting in the queue for a worker."""
    backend = document_read.get_backend()
    if not task_id or not backend.supports_get_result:
        return False
    try:
        return backend.get_result(task_id).status == TaskResultStatus.READY
    except TaskResultDoesNotExist:
        return False


def documents_requeue_forever() -> None:
    """The worker's sweep, in a daemon thread of its own: now, then every half of
    CHAT_INGEST_STALE_SECONDS for as long as the worker runs. A database that cannot be
    reached is logged and tried again next time."""
    while True:
        try:
            swept = documents_requeue()
        except DatabaseError as err:
            logger.warning("Documents left by a dead worker not checked: %s", err)
        else:
            if swept.requeued or swept.failed:
                logger.warning(
                    "Documents put back on the queue: %s; given up: %s",
                    swept.requeued or "none",
                    swept.failed or "none",
                )
        finally:
            connections.close_all()  # this thread's own connection, idle till next time
        time.sleep(settings.CHAT_INGEST_STALE_SECONDS / 2)
