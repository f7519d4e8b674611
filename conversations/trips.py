"""Database work that comes at the same moment shares one trip to the database thread.

Every question is stored before its model request starts, and every answer's ending
before its tabs hear of it, in the one database thread the relay shares the GIL with. A
hundred questions sent together used to make a hundred trips, each waiting its turn in
that thread and, under load, for the GIL after every statement: the last question's first
token came a hundred trips late (docs/performance.md, scenario c). On PostgreSQL each
statement is a round trip, and each round trip a wait for the GIL.

`Trips` wraps a function that does the work for a list of items in one transaction. An
item goes at once when no trip is under way; the items that arrive during a trip go
together in the next one. Nothing waits on a timer, so an item alone is never held back
for company.
"""

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from channels.db import database_sync_to_async

T = TypeVar("T")
R = TypeVar("R")

# Items per trip at most: a bound on one transaction's length and its SQL parameters.
MAX_PER_TRIP = 200


class _Queue(Generic[T]):
    """The items of one event loop waiting for a trip, and the task making trips."""

    def __init__(self) -> None:
        self.waiting: list[tuple[T, asyncio.Future]] = []
        self.task: asyncio.Task | None = None


class Trips(Generic[T, R]):
    """Calls of `run` shared by the items that come together.

    `run` takes a list of items and returns one result per item, in order: a value, or the
    exception that item's caller is to get. Should `run` itself raise (a database error
    rolling the shared transaction back), each item of that trip is run again alone, so
    one item cannot take the others down."""

    def __init__(self, run: Callable[[list[T]], list[R | Exception]]) -> None:
        self.run = run
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue[T]] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, item: T) -> R:
        """`run`'s result for this item; raises the exception it gave for the item."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        future = loop.create_future()
        queue.waiting.append((item, future))
        if queue.task is None or queue.task.done():
            queue.task = loop.create_task(self._make_trips(queue))
        result = await future
        if isinstance(result, Exception):
            raise result
        return result

    async def _make_trips(self, queue: _Queue[T]) -> None:
        while queue.waiting:
            trip = queue.waiting[:MAX_PER_TRIP]
            del queue.waiting[:MAX_PER_TRIP]
            try:
                results = await database_sync_to_async(self._run_trip)([i for i, _ in trip])
            except asyncio.CancelledError:  # the server is stopping
                for _, future in trip + queue.waiting:
                    future.cancel()
                queue.waiting.clear()
                raise
            except Exception as err:  # noqa: BLE001 (each caller gets it; later trips go on)
                results = [err] * len(trip)
            for (_, future), result in zip(trip, results, strict=True):
                if not future.done():  # its caller may have gone meanwhile
                    future.set_result(result)

    def _run_trip(self, items: list[T]) -> list[R | Exception]:
        try:
            return self.run(items)
        except Exception as err:  # noqa: BLE001 (each item is tried again alone)
            if len(items) == 1:
                return [err]
        results: list[R | Exception] = []
        for item in items:
            try:
                results += self.run([item])
            except Exception as err:  # noqa: BLE001 (its caller gets it)
                results.append(err)
        return results
