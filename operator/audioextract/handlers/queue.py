"""A de-duplicating work queue with one worker per key, as controller-runtime's.

Semantics of client-go's workqueue: a key added while it waits is not added twice; a
key added while a worker processes it is processed again after that worker is done
(never by two workers at once); a failed key comes back after a per-key exponential
backoff; ``add_after`` coalesces a burst into one run at the earliest due time. A
fixed number of workers bounds how many keys are reconciled at the same time.
"""

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from audioextract import metrics

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Result:
    """What a reconcile asks of the queue: run again after ``requeue_after`` seconds."""

    requeue_after: float | None = None


class Backoff:
    """Per-key exponential backoff: base, doubling, capped; forgotten on success."""

    def __init__(self, base: float, cap: float) -> None:
        """Delays start at ``base`` seconds and double up to ``cap``."""
        self.base, self.cap = base, cap
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        """The delay before the next retry of ``key`` (and count this failure)."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        return float(min(self.cap, self.base * 2**n))

    def forget(self, key: Hashable) -> None:
        """``key`` succeeded: its next failure starts from ``base`` again."""
        self._failures.pop(key, None)


class WorkQueue[K: Hashable]:
    """Keys to reconcile, de-duplicated, handed to at most one worker each."""

    def __init__(self, name: str, backoff: Backoff) -> None:
        """``name`` labels the queue's metrics."""
        self.name = name
        self.backoff = backoff
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._added_at: dict[K, float] = {}
        self._started: dict[K, float] = {}
        self._waiting: list[tuple[float, int, K]] = []  # (due, seq, key) heap
        self._due: dict[K, float] = {}
        self._seq = itertools.count()
        self._ready = asyncio.Event()
        self._timer_wake = asyncio.Event()
        self._last_active = time.monotonic()

    def __len__(self) -> int:
        """Keys waiting for a worker (not those being processed or delayed)."""
        return len(self._queue)

    def add(self, key: K) -> None:
        """Queue ``key`` now unless it is already waiting."""
        if key in self._dirty:
            return
        metrics.WORKQUEUE_ADDS_TOTAL.labels(self.name).inc()
        self._last_active = time.monotonic()
        self._dirty.add(key)
        self._added_at.setdefault(key, time.monotonic())
        if key in self._processing:
            return  # queued again when its worker is done
        self._queue.append(key)
        metrics.WORKQUEUE_DEPTH.labels(self.name).set(len(self._queue))
        self._notify()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds; an earlier pending due time wins."""
        if delay <= 0:
            self.add(key)
            return
        due = time.monotonic() + delay
        if key in self._dirty or self._due.get(key, float("inf")) <= due:
            return
        self._due[key] = due
        heapq.heappush(self._waiting, (due, next(self._seq), key))
        self._timer_wake.set()

    def add_rate_limited(self, key: K) -> None:
        """Queue ``key`` again after its backoff (a failed reconcile)."""
        metrics.WORKQUEUE_RETRIES_TOTAL.labels(self.name).inc()
        self.add_after(key, self.backoff.when(key))

    def forget(self, key: K) -> None:
        """Reset ``key``'s backoff."""
        self.backoff.forget(key)

    def _notify(self) -> None:
        self._ready.set()

    async def get(self) -> K:
        """The next key to process; marks it as being processed."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        now = time.monotonic()
        self._dirty.discard(key)
        self._processing.add(key)
        self._started[key] = now
        added = self._added_at.pop(key, now)
        metrics.WORKQUEUE_QUEUE_DURATION_SECONDS.labels(self.name).observe(now - added)
        metrics.WORKQUEUE_DEPTH.labels(self.name).set(len(self._queue))
        return key

    def done(self, key: K) -> None:
        """The worker finished ``key``; if it was added meanwhile, it goes back in line."""
        self._processing.discard(key)
        self._last_active = time.monotonic()
        started = self._started.pop(key, None)
        if started is not None:
            metrics.WORKQUEUE_WORK_DURATION_SECONDS.labels(self.name).observe(
                time.monotonic() - started
            )
        if key in self._dirty:
            self._queue.append(key)
            metrics.WORKQUEUE_DEPTH.labels(self.name).set(len(self._queue))
            self._notify()

    def quiet_since(self) -> float | None:
        """When a key was last added or finished (monotonic), or None while keys wait or run.

        Keys delayed for later (``add_after``) do not count: they may be minutes away.
        """
        if self._queue or self._processing:
            return None
        return self._last_active

    def longest_running(self) -> float:
        """Seconds the longest-running worker has been on its key."""
        if not self._started:
            return 0.0
        return time.monotonic() - min(self._started.values())

    async def run_timer(self) -> None:
        """Move delayed keys into the queue when they are due (runs forever)."""
        while True:
            now = time.monotonic()
            while self._waiting and self._waiting[0][0] <= now:
                due, _seq, key = heapq.heappop(self._waiting)
                if self._due.get(key) == due:
                    del self._due[key]
                    self.add(key)
            metrics.WORKQUEUE_LONGEST_RUNNING_PROCESSOR_SECONDS.labels(self.name).set(
                self.longest_running()
            )
            timeout = min(self._waiting[0][0] - now, 1.0) if self._waiting else 1.0
            self._timer_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wake.wait(), timeout=max(timeout, 0.0))


Reconciler = Callable[[K], Awaitable[Result]]


async def run_workers[K: Hashable](
    queue: WorkQueue[K],
    reconcile: Reconciler[K],
    workers: int,
    *,
    controller: str,
    on_error: Callable[[K, BaseException], float | None] | None = None,
) -> None:
    """Run ``workers`` workers over ``queue`` forever, with controller-runtime's metrics.

    A reconcile that raises is retried after the key's backoff, or after the delay
    ``on_error`` returns (a server's Retry-After); one that returns ``requeue_after``
    runs again then; a successful one resets the key's backoff.
    """

    async def worker() -> None:
        while True:
            key = await queue.get()
            started = time.monotonic()
            try:
                result = await reconcile(key)
            except asyncio.CancelledError:
                queue.done(key)
                raise
            except Exception as exc:
                metrics.RECONCILE_ERRORS_TOTAL.labels(controller).inc()
                metrics.RECONCILE_TOTAL.labels(controller, metrics.RESULT_ERROR).inc()
                wait = on_error(key, exc) if on_error is not None else None
                log.warning("%s %s: reconcile failed, retrying: %s", controller, key, exc)
                log.debug("reconcile failure", exc_info=True)
                queue.done(key)
                metrics.WORKQUEUE_RETRIES_TOTAL.labels(queue.name).inc()
                backoff = queue.backoff.when(key)
                queue.add_after(key, max(backoff, wait or 0.0))
                continue
            finally:
                metrics.RECONCILE_TIME_SECONDS.labels(controller).observe(
                    time.monotonic() - started
                )
            queue.forget(key)
            queue.done(key)
            if result.requeue_after is not None:
                metrics.RECONCILE_TOTAL.labels(controller, metrics.RESULT_REQUEUE_AFTER).inc()
                queue.add_after(key, result.requeue_after)
            else:
                metrics.RECONCILE_TOTAL.labels(controller, metrics.RESULT_SUCCESS).inc()

    await run_together([worker() for _ in range(workers)] + [queue.run_timer()])


async def run_together(coros: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``coros`` as tasks until one fails or all are cancelled; then cancel the rest."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
