"""Group commit: one writer thread commits every publish (and run) waiting, in one transaction.

A publish used to take a thread of its own for its write transaction (the HTTP
fast path hopped from the event loop to a thread pool and back), and concurrent
publishes queued on the store's write lock, each paying its own BEGIN and
COMMIT. Here the event loop (or any thread) hands the publish to one writer
thread and waits; each time the writer wakes it runs every publish that has
arrived, up to `batch_max`, inside one transaction, commits once, and then
answers them all: a thread through its future, an event loop with one wake-up
per batch. (Server CPU per accepted publish in the ingest benchmark: 548 ->
411 us, the writer's own share under 3% of the process's time.)

The delivery threads hand their runs' commits here too (dispatcher.py), so
the records of several runs, their claims and the publishes beside them share
one transaction, written by one thread: none waits for the write lock.

What callers rely on:
- work is answered only after the COMMIT that holds it returned, and its
  after-commit callbacks (live streams, the doorbell) run only after that commit;
- a publish refused on its own (a LogicError: a full queue, a bad name, an org
  the actor is not in) is answered with its error and the others go on: such
  work raises before it writes, as EventBus.publish does (it checks the
  capacity, then inserts), and is submitted with `clean_refusals` (the default);
- any other failure of one piece of work (a run whose function was deleted
  meanwhile, a lease taken over, a bug) rolls the batch back, and then each
  piece runs again alone, in a transaction of its own: one failure never loses
  or half-writes another's work (work must be safe to run again: it is retried
  only after a rollback);
- when the store itself refuses (StoreBusy, DiskFull, an I/O error: at a
  statement or at COMMIT) the batch is rolled back and every piece in it gets
  that same error: none is answered "accepted";
- the queue is bounded: past `queue_max` waiting publishes, `submit` raises
  StoreBusy (503 with Retry-After) at once instead of letting callers pile up
  (a delivery thread's commit, `bounded=False`, is never refused: there are at
  most as many as delivery threads, and refusing one would throw its run away).

The thread starts with the first publish and ends after `idle_s` without one,
so a process that never publishes (or a closed service) keeps no thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from store.errors import DiskFull, LogicError, StoreBusy, StoreError
from store.store import Store

log = logging.getLogger("logic.publish")

# The service passes LOGIC_PUBLISH_QUEUE_MAX and LOGIC_PUBLISH_BATCH_MAX (Settings).
PUBLISH_QUEUE_MAX = 1_000  # publishes waiting for the writer; past it, 503 at once
PUBLISH_BATCH_MAX = 256  # publishes per transaction: a batch's commit answers them all
IDLE_S = 5.0  # the writer thread ends after this long without a publish


@dataclass(eq=False)
class _Item:
    work: Callable[[], Any]
    clean_refusals: bool = True  # a LogicError it raises came before it wrote anything
    future: Future[Any] | None = None  # a thread waits on it
    loop: asyncio.AbstractEventLoop | None = None  # ... or an event loop waits on `waiter`
    waiter: asyncio.Future[Any] | None = None
    outcome: tuple[bool, Any] = field(default=(False, None))  # (ok, result or exception)


class PublishWriter:
    """One thread that runs publishes (and the delivery threads' commits) in batches, one
    transaction per batch."""

    def __init__(
        self,
        store: Store,
        *,
        queue_max: int = PUBLISH_QUEUE_MAX,
        batch_max: int = PUBLISH_BATCH_MAX,
        scope: Callable[[], AbstractContextManager[Any]] = nullcontext,
        idle_s: float = IDLE_S,
    ):
        self.store = store
        self.queue_max = max(1, queue_max)
        self.batch_max = max(1, batch_max)
        self.scope = scope  # entered inside each batch's transaction, around its publishes
        self.idle_s = idle_s
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self.batches = 0  # committed or not: how many transactions the writer opened (tests, benchmarks)

    def in_batch(self) -> bool:
        """Whether the calling thread is the writer (so a publish joins the batch)."""
        return threading.current_thread() is self._thread

    def submit(self, work: Callable[[], Any], *, clean_refusals: bool = True, bounded: bool = True) -> Future[Any]:
        """Queue `work` for the next batch; its future holds what it returned or raised.
        Without `clean_refusals`, any error of it rolls the batch back (see the docstring)."""
        future: Future[Any] = Future()
        self._enqueue(_Item(work, clean_refusals, future=future), bounded)
        return future

    def submit_async(self, work: Callable[[], Any]) -> asyncio.Future[Any]:
        """As `submit`, for a coroutine on the running event loop: await the result."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        self._enqueue(_Item(work, loop=loop, waiter=waiter), True)
        return waiter

    def run(self, work: Callable[[], Any]) -> Any:
        """`work` in a batch, waiting for its commit; inline when already in one."""
        if self.in_batch():
            return work()
        return self.submit(work).result()

    def _enqueue(self, item: _Item, bounded: bool) -> None:
        with self._cond:
            if bounded and len(self._queue) >= self.queue_max:
                raise StoreBusy(f"{len(self._queue):,} publishes are waiting to be written: try again")
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="publish-writer", daemon=True)
                self._thread.start()
            else:
                self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    self._cond.wait(self.idle_s)
                if not self._queue:  # idle: end; the next publish starts a new thread
                    self._thread = None
                    return
                batch = [self._queue.popleft() for _ in range(min(self.batch_max, len(self._queue)))]
            self._write(batch)
            _answer(batch)

    def _write(self, batch: list[_Item]) -> None:
        """Run the batch in one transaction; if one item fails, each again in its own."""
        self.batches += 1
        try:
            with self.store.transaction(), self.scope():
                for item in batch:
                    try:
                        item.outcome = (True, item.work())
                    except LogicError as exc:
                        if not item.clean_refusals or _refused_by_store(exc):
                            raise
                        item.outcome = (False, exc)  # refused on its own, before it wrote anything
        except Exception as exc:
            if _refused_by_store(exc):  # nothing of the batch was written: the same error for all
                for item in batch:
                    item.outcome = (False, exc)
                return
            # Rolled back: one item's failure must not cost the others theirs.
            if len(batch) > 1:
                for item in batch:
                    self._write([item])
                return
            if not isinstance(exc, LogicError):
                log.exception("a write handed to the group commit failed")
            batch[0].outcome = (False, exc)
        except BaseException as exc:  # answer every waiter; the writer goes on
            for item in batch:
                item.outcome = (False, exc)


def _refused_by_store(exc: BaseException) -> bool:
    """The store could not write at all (busy, disk full, an I/O error), whoever asked."""
    return isinstance(exc, (StoreBusy, DiskFull)) or type(exc) is StoreError


def _answer(batch: list[_Item]) -> None:
    """Hand each item its outcome: threads through their futures, each event loop once."""
    loops: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
    for item in batch:
        if item.loop is not None:
            loops.setdefault(item.loop, []).append(item)
            continue
        ok, value = item.outcome
        future = item.future
        assert future is not None
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    for loop, items in loops.items():
        try:
            loop.call_soon_threadsafe(_settle, items)
        except RuntimeError:  # the loop was closed meanwhile: nobody waits any more
            pass


def _settle(items: list[_Item]) -> None:
    for item in items:
        waiter = item.waiter
        if waiter is None or waiter.done():  # cancelled: the client went away
            continue
        ok, value = item.outcome
        if ok:
            waiter.set_result(value)
        else:
            waiter.set_exception(value)
