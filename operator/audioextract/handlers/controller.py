"""The controller: cache-fed, per-object work queues, one serialised admission (DESIGN §3).

kopf's watches feed :class:`~audioextract.handlers.cache.Cache` and wake only the
objects an event concerns: a Job its ExtractionJob; an ExtractionJob itself and its
Batch (the Batch a little later, so a burst of child changes becomes one rollup);
a Batch itself. Each key is reconciled by one worker at a time from the cache alone
(:mod:`audioextract.handlers.batch`, :mod:`audioextract.handlers.extractionjob`):
a pure plan from :mod:`audioextract.reconcile`, then its writes. Admission is one
loop over the cache that picks the ExtractionJobs to start and hands each to its
worker. A resync at a long interval re-lists everything and requeues every object:
only a safety net, as every decision is level-triggered anyway.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from audioextract import metrics
from audioextract.api.constants import BATCH_KIND, BATCH_PLURAL, JOB_KIND, JOB_PLURAL
from audioextract.handlers import memory
from audioextract.handlers.batch import reconcile_batch
from audioextract.handlers.cache import Cache, Key, key_of
from audioextract.handlers.context import Context
from audioextract.handlers.extractionjob import reconcile_extraction_job
from audioextract.handlers.kube import Kube, retry_after
from audioextract.handlers.lease import LeaderElector
from audioextract.handlers.links import DownloadLinks
from audioextract.handlers.notify import Notifier
from audioextract.handlers.queue import Backoff, Result, WorkQueue, run_together, run_workers
from audioextract.reconcile.admission import plan_admission
from audioextract.reconcile.conditions import now_rfc3339
from audioextract.reconcile.extractionjob import controller_owner, forget_parsed_statuses
from audioextract.reconcile.names import LABEL_APP_MANAGED_BY, MANAGED_BY
from audioextract.settings import Settings
from audioextract.webhooks.events import Owner

log = logging.getLogger(__name__)

JOB_SELECTOR = f"{LABEL_APP_MANAGED_BY}={MANAGED_BY}"
# Retries of a failed reconcile: 0.5 s, doubling, at most this (events still start one at once).
RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 60.0
# How long admission counts an admitted ExtractionJob it has not yet seen started.
EXPECTATION_SECONDS = 60.0
# Admission decisions coalesce the events of this short window.
ADMISSION_DEBOUNCE_SECONDS = 0.05
# Quiet this long after a burst (no event, nothing queued or running), the controller
# empties its memos and returns free memory to the system (handlers/memory.py).
IDLE_RELEASE_SECONDS = 10.0


class Controller:
    """Holds the cache, the queues and the admission loop; acts only while leading."""

    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        namespaces: list[str] | None,
        elector: LeaderElector | None = None,
    ) -> None:
        """Reconcile ``namespaces`` (None: cluster-wide); act only while ``elector`` leads."""
        self.kube, self.settings = kube, settings
        self.namespaces: list[str | None] = list(namespaces) if namespaces else [None]
        self.elector = elector
        self.cache = Cache()
        self.batches: WorkQueue[Key] = WorkQueue(
            "batch", Backoff(RETRY_MIN_SECONDS, RETRY_MAX_SECONDS)
        )
        self.extraction_jobs: WorkQueue[Key] = WorkQueue(
            "extractionjob", Backoff(RETRY_MIN_SECONDS, RETRY_MAX_SECONDS)
        )
        links = DownloadLinks(
            kube, settings, lambda ns, name: self.cache.extraction_jobs.get((ns, name))
        )
        self.notifier = Notifier(kube, self._delivered, download_url=links)
        self.leadership = asyncio.Event()
        self._admission = asyncio.Event()
        self._synced = False
        self._active_at = time.monotonic()
        self.worker = settings.worker_config()

    # -- leadership -----------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this instance may act (always, without a Lease)."""
        return self.elector is None or self.elector.leading

    def context(self) -> Context:
        """What a reconcile shares: API facade, settings, cache, notifier, the time."""
        return Context(
            self.kube, self.settings, self.worker, now_rfc3339(), self.notifier, self.cache
        )

    # -- events (from kopf's watches) -----------------------------------------------

    def event(self, kind: str, event_type: str | None, body: dict[str, Any]) -> None:
        """A watched (or kopf-listed) object: update the cache, wake its keys."""
        key = key_of(body)
        self._active_at = time.monotonic()
        # kopf's own list at start (and its re-lists) replays versions the cache holds:
        # their Batch's rollup cannot change, and 10,000 of them would otherwise keep
        # every Batch rolling up until the replay ends.
        replay = kind == JOB_KIND and self.cache.holds_extraction_job(body)
        if event_type == "DELETED":
            self.cache.remove(kind, key)
        else:
            self.cache.put(kind, body)
        if kind == "Pod":
            return
        if kind == BATCH_KIND:
            self.batches.add(key)
        elif kind == JOB_KIND:
            self.extraction_jobs.add(key)
            if not replay or event_type == "DELETED":
                self._wake_batch_of(body, delay=self.settings.status_coalesce_seconds)
        else:
            owner = controller_owner(body, JOB_KIND)
            if owner is not None:
                self.extraction_jobs.add((key[0], owner["name"]))
            self._admission.set()
            return
        self._admission.set()

    def _wake_batch_of(self, ej: dict[str, Any], delay: float) -> None:
        owner = controller_owner(ej, BATCH_KIND)
        if owner is None:
            return
        namespace = key_of(ej)[0]
        if not self.cache.has_open_children(namespace, owner["uid"]):
            # The last open child just finished: the Batch's final status (and its
            # webhook) need not wait for more changes to gather.
            delay = 0.0
        self.batches.add_after((namespace, owner["name"]), delay)

    def _delivered(self, owner: Owner) -> None:
        """A webhook delivery ended: its owner writes the outcome into status."""
        key = (owner.namespace, owner.name)
        (self.batches if owner.is_batch else self.extraction_jobs).add(key)

    # -- reconciles -----------------------------------------------------------------

    async def _reconcile_batch(self, key: Key) -> Result:
        if not self.leading:
            return Result()
        batch = self.cache.batches.get(key)
        if batch is None or batch["metadata"].get("deletionTimestamp"):
            return Result()
        return await reconcile_batch(self.context(), batch)

    async def _reconcile_extraction_job(self, key: Key) -> Result:
        if not self.leading:
            return Result()
        ej = self.cache.extraction_jobs.get(key)
        if ej is None:
            self.cache.expected.pop(key, None)
            return Result()
        before = (ej.get("status") or {}).get("phase")
        result = await reconcile_extraction_job(self.context(), ej)
        after = self.cache.extraction_jobs.get(key, ej)
        if (after.get("status") or {}).get("phase") != before:
            # A child's change shows in its Batch's status within the coalescing window.
            self._wake_batch_of(after, delay=self.settings.status_coalesce_seconds)
            self._admission.set()
        return result

    def _on_error(self, key: Key, exc: BaseException, kind: str) -> float | None:
        metrics.reconcile_error(kind)
        return retry_after(exc)

    def count_phases(self) -> None:
        """Set the phase gauges from the cache; a standby counts nothing (docs/metrics.md)."""
        if not self.leading:
            metrics.phase_counts((), ())
            return
        metrics.phase_counts(
            self.cache.extraction_job_phases(),
            self.cache.batch_phases(),
        )

    # -- admission ------------------------------------------------------------------

    def admit(self) -> list[Key]:
        """One admission decision over the cache; the chosen ExtractionJobs go to their workers."""
        now = time.monotonic()
        chosen = plan_admission(
            self.cache.open_views.values(),
            self.cache.unfinished_owners,
            self.cache.jobs_by_owner,
            self.cache.expectations(now),
            self.cache.batch_limits(self.settings.max_jobs_per_batch),
            self.settings.max_concurrent_jobs,
        )
        for key in chosen:
            self.cache.expected[key] = now + EXPECTATION_SECONDS
            self.extraction_jobs.add(key)
        return chosen

    async def _admission_loop(self) -> None:
        while True:
            await self._admission.wait()
            await asyncio.sleep(ADMISSION_DEBOUNCE_SECONDS)
            self._admission.clear()
            if not self.leading or not self._synced:
                continue
            try:
                self.admit()
            except Exception:
                log.exception("admission failed; retrying on the next event")

    # -- safety net -----------------------------------------------------------------

    def enqueue_all(self) -> None:
        """Requeue every cached object (leadership gained, resync)."""
        for key in list(self.cache.batches):
            self.batches.add(key)
        for key in list(self.cache.extraction_jobs):
            self.extraction_jobs.add(key)
        self._admission.set()

    async def resync(self, pods: bool = False) -> None:
        """Re-list everything, drop what the watches missed deleting, requeue every object.

        With ``pods`` the worker Pods are listed too (the first sync: afterwards the Pod
        watch keeps them, and Pods whose Job is gone are dropped).
        """
        started = time.monotonic()
        listed: dict[str, list[Key]] = {BATCH_KIND: [], JOB_KIND: [], "Job": [], "Pod": []}

        def take(kind: str) -> Callable[[list[dict[str, Any]]], None]:
            # Page by page into the cache: only the keys are kept for pruning.
            def page(objs: list[dict[str, Any]]) -> None:
                for obj in objs:
                    self.cache.put(kind, obj)
                    listed[kind].append(key_of(obj))

            return page

        for ns in self.namespaces:
            await self.kube.list_custom(BATCH_PLURAL, ns, on_page=take(BATCH_KIND))
            await self.kube.list_custom(JOB_PLURAL, ns, on_page=take(JOB_KIND))
            await self.kube.list_jobs(ns, JOB_SELECTOR, on_page=take("Job"))
            if pods:
                await self.kube.list_pods(ns, JOB_SELECTOR, on_page=take("Pod"))
        for kind in (BATCH_KIND, JOB_KIND, "Job"):
            gone = self.cache.prune(kind, listed[kind], started)
            if gone:
                log.info("resync: %d %s objects were deleted unseen", len(gone), kind)
        self.cache.prune_pods()
        self.enqueue_all()

    async def initial_sync(self) -> None:
        """List everything once before the first decision, retrying until it succeeds.

        Admission must count every Job that holds a slot: deciding over a cache the
        watches are still filling could over-admit. kopf's own list feeds the same
        cache meanwhile; the cache keeps the newer of the two versions of each object.
        """
        delay = RETRY_MIN_SECONDS
        while True:
            try:
                await self.resync(pods=True)
            except Exception as exc:
                log.warning("initial list failed, retrying in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_SECONDS, delay * 2)
                continue
            self._synced = True
            log.info(
                "cache synced: %d Batches, %d ExtractionJobs, %d Jobs, %d Pods",
                len(self.cache.batches),
                len(self.cache.extraction_jobs),
                len(self.cache.jobs),
                len(self.cache.pods),
            )
            self._admission.set()
            return

    async def _resync_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.leadership.wait(), timeout=self.settings.resync_seconds)
            leadership_changed = self.leadership.is_set()
            self.leadership.clear()
            if not self.leading or not self._synced:
                continue
            if leadership_changed:
                self.enqueue_all()
                continue
            try:
                await self.resync()
            except Exception as exc:
                log.warning("resync failed (the watches still feed the cache): %s", exc)

    def quiet_since(self) -> float | None:
        """When the last event came or reconcile ended (monotonic); None while keys wait or run."""
        since = [queue.quiet_since() for queue in (self.batches, self.extraction_jobs)]
        if None in since:
            return None
        return max(self._active_at, *(s for s in since if s is not None))

    async def _release_loop(self) -> None:
        released: float | None = None
        while True:
            await asyncio.sleep(IDLE_RELEASE_SECONDS / 2)
            quiet = self.quiet_since()
            if quiet is None or quiet == released:
                continue
            if time.monotonic() - quiet >= IDLE_RELEASE_SECONDS:
                released = quiet
                memory.release(
                    forget_parsed_statuses,
                    self.cache.forget_parsed_specs,
                    self.cache.forget_decoded,
                    self.cache.compact,
                )

    async def run(self) -> None:
        """The first full list, then workers, admission and the resync timer, until cancelled."""
        await self.initial_sync()
        workers = self.settings.workers
        await run_together(
            [
                run_workers(
                    self.batches,
                    self._reconcile_batch,
                    max(1, workers // 4),
                    controller="batch",
                    on_error=lambda key, exc: self._on_error(key, exc, BATCH_KIND),
                ),
                run_workers(
                    self.extraction_jobs,
                    self._reconcile_extraction_job,
                    workers,
                    controller="extractionjob",
                    on_error=lambda key, exc: self._on_error(key, exc, JOB_KIND),
                ),
                self._admission_loop(),
                self._resync_loop(),
                self._release_loop(),
            ]
        )
