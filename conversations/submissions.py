"""Questions sent at the same moment share one trip to the database.

Every question is stored before its model request starts, in the one database thread the
relay shares the GIL with. A hundred questions sent together used to make a hundred trips,
each waiting its turn in that thread and, under load, for the GIL at every statement: the
last question's first token came a hundred trips late (docs/performance.md, scenario c).
Here a question goes at once when no trip is under way; the questions that arrive during a
trip go together in the next one (services.questions_submit). Nothing waits on a timer, so
a question alone is never held back for company.
"""

import asyncio
import weakref

from channels.db import database_sync_to_async

from .services import Question, Submitted, questions_submit

# Questions per trip at most: a bound on one transaction's length and its SQL parameters.
MAX_PER_TRIP = 200


class _Trips:
    """The questions of one event loop waiting for a trip, and the task making trips."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Question, asyncio.Future]] = []
        self.task: asyncio.Task | None = None


_trips: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Trips] = weakref.WeakKeyDictionary()


async def submit(question: Question) -> Submitted:
    """Store a question and its empty answer, as services.message_submit does, and raise
    what it would raise."""
    loop = asyncio.get_running_loop()
    trips = _trips.get(loop)
    if trips is None:
        trips = _trips[loop] = _Trips()
    future = loop.create_future()
    trips.waiting.append((question, future))
    if trips.task is None or trips.task.done():
        trips.task = loop.create_task(_make_trips(trips))
    result = await future
    if isinstance(result, Exception):
        raise result
    return result


async def _make_trips(trips: _Trips) -> None:
    while trips.waiting:
        batch = trips.waiting[:MAX_PER_TRIP]
        del trips.waiting[:MAX_PER_TRIP]
        try:
            results = await database_sync_to_async(questions_submit)([q for q, _ in batch])
        except asyncio.CancelledError:  # the server is stopping
            for _, future in batch + trips.waiting:
                future.cancel()
            trips.waiting.clear()
            raise
        except Exception as err:  # noqa: BLE001 (each sender gets it, and later trips go on)
            results = [err] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its sender may have gone meanwhile
                future.set_result(result)
