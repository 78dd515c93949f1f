"""The level-triggered reconcile loop: list, decide (pure), act; one pass at a time.

kopf's watches only wake the loop; every pass re-lists Batches, ExtractionJobs and
the operator's Jobs from the API server and recomputes everything, so a missed or
duplicated event never matters and nothing that matters lives only in memory. One
loop per operator (and, with the Lease, per cluster) makes it the single writer of
every status and serialises admission. Bursts of events coalesce into one pass.
"""

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from audioextract import logs, metrics
from audioextract.api.constants import BATCH_KIND, JOB_KIND
from audioextract.handlers.batch import Prepared, batch_key, finish_batch, prepare_batch
from audioextract.handlers.context import Context, World, controller_owner, key
from audioextract.handlers.extractionjob import reconcile_extraction_job
from audioextract.handlers.jobs import admit_jobs
from audioextract.handlers.kube import Kube, retry_after
from audioextract.handlers.lease import LeaderElector
from audioextract.handlers.links import DownloadLinks
from audioextract.handlers.notify import Notifier
from audioextract.reconcile.admission import BatchLimit
from audioextract.reconcile.conditions import now_rfc3339
from audioextract.reconcile.names import LABEL_APP_MANAGED_BY, MANAGED_BY
from audioextract.settings import Settings

log = logging.getLogger(__name__)

JOB_SELECTOR = f"{LABEL_APP_MANAGED_BY}={MANAGED_BY}"
DEBOUNCE_SECONDS = 0.2
# After a pass with errors the next one starts this soon, doubling up to the resync
# interval while errors persist; events still start a pass at once.
RETRY_MIN_SECONDS = 0.5


class Controller:
    """Runs reconcile passes when woken, on a resync timer, and only while leading."""

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
        self.wakeup = asyncio.Event()
        # The last pass's observations: the download links resolve destinations from them.
        self.world = World()
        links = DownloadLinks(
            kube, settings, lambda ns, name: self.world.extraction_jobs.get((ns, name))
        )
        self.notifier = Notifier(kube, self.wake, download_url=links)
        self.passes = 0
        self.errors = 0
        self._backoff = 0.0
        self._retry_after: float | None = None

    def wake(self) -> None:
        """Ask for a pass soon (called from kopf's event handlers)."""
        self.wakeup.set()

    async def observe(self) -> World:
        """List everything the pass needs, across all watched namespaces."""
        world = World()
        for ns in self.namespaces:
            world.batches += await self.kube.list_batches(ns)
            for ej in await self.kube.list_extraction_jobs(ns):
                world.extraction_jobs[key(ej)] = ej
            for job in await self.kube.list_jobs(ns, JOB_SELECTOR):
                owner = controller_owner(job, "ExtractionJob")
                if owner is not None:
                    world.jobs_by_owner.setdefault(owner["uid"], []).append(job)
        return world

    async def reconcile_once(self) -> None:
        """One full pass: ExtractionJobs, Batches (children, retry), admission, rollup."""
        ctx = Context(
            self.kube, self.settings, self.settings.worker_config(), now_rfc3339(), self.notifier
        )
        world = self.world = await self.observe()
        metrics.phase_counts(
            ((ej.get("status") or {}).get("phase") for ej in world.extraction_jobs.values()),
            ((b.get("status") or {}).get("phase") for b in world.batches),
        )
        for ej in list(world.extraction_jobs.values()):
            await self._guard(
                f"ExtractionJob {key(ej)}", reconcile_extraction_job(ctx, world, ej), JOB_KIND, ej
            )
        prepared: list[Prepared] = []
        for batch in world.batches:
            if batch["metadata"].get("deletionTimestamp"):
                continue
            try:
                prepared.append(await prepare_batch(ctx, world, batch))
            except Exception as exc:
                self._failed(exc, BATCH_KIND)
                log.exception(
                    "Batch %s: reconcile failed; retrying on the next pass",
                    batch_key(batch),
                    extra=logs.about(batch, BATCH_KIND),
                )
        limits: dict[str, BatchLimit] = {
            batch_key(p.batch): p.limit for p in prepared if p.limit is not None
        }
        await self._guard("admission", admit_jobs(ctx, world, limits), metrics.KIND_ADMISSION)
        for p in prepared:
            await self._guard(
                f"Batch {batch_key(p.batch)} rollup",
                finish_batch(ctx, world, p),
                BATCH_KIND,
                p.batch,
            )
        self.passes += 1

    async def _guard(
        self,
        what: str,
        coro: Coroutine[Any, Any, None],
        kind: str,
        obj: dict[str, Any] | None = None,
    ) -> None:
        # One object's failure (a bad spec, an API error) must never stop the loop or
        # the other objects: log it and let the next pass retry.
        try:
            await coro
        except Exception as exc:
            self._failed(exc, kind)
            log.exception(
                "%s: failed; retrying on the next pass",
                what,
                extra=logs.about(obj, kind) if obj else None,
            )

    def _failed(self, exc: BaseException, kind: str = metrics.KIND_LOOP) -> None:
        # ``kind`` is the metric's label: one of metrics.RECONCILE_KINDS.
        metrics.reconcile_error(kind)
        self.errors += 1
        wait = retry_after(exc)
        if wait is not None:
            self._retry_after = max(self._retry_after or 0.0, wait)

    async def _after_pass(self, failed: bool) -> float:
        """How long the next pass may wait for an event; honours a server's Retry-After.

        A failed pass (an API error, a timeout) is retried soon with a doubling backoff
        instead of only on the next event or resync: a refused write produces no event.
        """
        resync = self.settings.resync_seconds
        if not failed:
            self._backoff = 0.0
            return resync
        self._backoff = min(max(self._backoff * 2, RETRY_MIN_SECONDS), resync)
        if self._retry_after is not None:
            # The API server asked for a pause (429, 503): no pass before it is over.
            await asyncio.sleep(min(self._retry_after, resync))
            self._retry_after = None
        return self._backoff

    async def run(self) -> None:
        """Forever: wait for a wake-up or the resync interval, then run a pass if leading."""
        timeout = self.settings.resync_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=timeout)
            await asyncio.sleep(DEBOUNCE_SECONDS)
            self.wakeup.clear()
            if self.elector is not None and not self.elector.leading:
                metrics.phase_counts((), ())  # the leader counts; a standby must not
                timeout = self.settings.resync_seconds
                continue
            errors = self.errors
            try:
                await self.reconcile_once()
            except Exception as exc:
                self._failed(exc)
                log.exception("reconcile pass failed; retrying")
            timeout = await self._after_pass(self.errors > errors)
