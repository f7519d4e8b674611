"""`manage.py worker`: the job worker. It is django-tasks-db's `db_worker` (same options:
`--queue-name`, `--interval`, `--max-tasks`...), which runs queued tasks one at a time, with
the sweep of documents/jobs.py in a thread beside it: the queue never runs a task again
whose worker died, and the sweep puts such documents back. A subclass rather than a second
command, so that wherever a worker runs the sweep runs too, and one unit starts both."""

import os
import threading
from typing import Any

from django.utils.autoreload import DJANGO_AUTORELOAD_ENV
from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand

from conversations import parsing
from conversations.documents.jobs import documents_requeue_forever


class Command(DbWorkerCommand):
    help = (
        "Run the job worker (reads uploaded documents), and put back documents a dead worker left"
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # With --reload (the default under DEBUG) the first process only watches files;
        # the sweep runs in the child that runs tasks.
        if not options["reload"] or os.environ.get(DJANGO_AUTORELOAD_ENV) == "true":
            threading.Thread(
                target=documents_requeue_forever,
                name="documents-requeue",
                daemon=True,
            ).start()
            parsing.sandbox_start()  # documents are parsed in its children
        super().handle(*args, **options)
