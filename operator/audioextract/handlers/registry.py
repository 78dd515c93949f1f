"""Every kopf registration of the operator, in one place.

kopf watches Batches, ExtractionJobs, the operator's Jobs and their Pods; its event
handlers feed the controller's cache and wake the keys an event concerns
(:mod:`audioextract.handlers.controller`); they decide nothing. Handlers return nothing (kopf would store a return value under
``status.<handler id>``, which the structural schema prunes) and there are no
change or deletion handlers, so kopf adds neither its last-handled-configuration
annotation nor a finalizer: children go away through owner references and the
garbage collector.
"""

import logging
from collections.abc import Iterable
from typing import Any

import kopf
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory

from audioextract.api.constants import (
    BATCH_KIND,
    BATCH_PLURAL,
    GROUP,
    JOB_KIND,
    JOB_PLURAL,
    VERSION,
)
from audioextract.handlers.controller import Controller
from audioextract.handlers.kube import PAGE_SIZE
from audioextract.reconcile.names import LABEL_APP_MANAGED_BY, MANAGED_BY

REGISTRY = kopf.OperatorRegistry()
# How long kopf keeps an object's worker (and its last event) after handling it.
IDLE_WORKER_SECONDS = 0.1

log = logging.getLogger(__name__)


class _Target:
    """The running controller the hooks below feed (set by ``audio-extract operator``)."""

    def __init__(self) -> None:
        self.controller: Controller | None = None


TARGET = _Target()


def _event(kind: str, event: kopf.RawEvent | dict[str, Any]) -> None:
    if TARGET.controller is not None:
        TARGET.controller.event(kind, event.get("type"), dict(event["object"]))


@kopf.on.login(registry=REGISTRY)
def login(**kwargs: Any) -> Any:
    """In-cluster service account, else KUBECONFIG, as the kubernetes client finds them."""
    return kopf.login_via_client(**kwargs)


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: the operator has no create/update handlers for kopf to diff for.

    kopf builds an object's "essence" on every watch event all the same, and its
    default storage deep-copies the whole body to do it — a Batch's 1,000-entry status
    included, on every rollup write — only to throw the copy away. Nothing is stored
    either (kopf's last-handled-configuration annotation stays off our objects).
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        """An empty essence: nothing here compares essences."""
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        """No stored essence."""
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Store nothing."""


class ForgetfulMemories(ResourceMemories):
    """kopf's per-object memory, never kept past the event that needed it.

    kopf remembers every object it has seen until its deletion: a memo, an error
    throttler and the state of daemons, timers, indexes and resume handlers — ~3 KB per
    object, ~35 MB for 10,000 finished ExtractionJobs and their Jobs and Pods. The
    operator uses none of these (its event handlers only feed the cache and never
    raise), so each memory lives for one event only (kopf's "ephemeral" memories).
    kopf does not export the class; ``kopf.operator`` takes an instance (``memories=``).
    """

    async def recall(
        self,
        raw_body: kopf.RawBody,
        *,
        memobase: Any = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        """A fresh memory for this event, not stored."""
        return await super().recall(
            raw_body, memobase=memobase, noticed_by_listing=noticed_by_listing, ephemeral=True
        )


@kopf.on.startup(registry=REGISTRY)
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Operator-wide kopf settings."""
    # The operator posts its own Events with stable reasons; kopf's handler-progress
    # events would only add noise.
    settings.posting.enabled = False
    # Watches are re-established regularly, so a silently broken watch heals itself.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # `--namespace` takes exact names only, so kopf need not list and watch all
    # namespaces to match patterns; with the operator's namespaced RBAC that listing
    # is refused and kopf would back off for about a minute before its watches start.
    settings.scanning.disabled = True
    settings.persistence.diffbase_storage = NoDiffBase()
    # kopf lists each kind before watching it; unpaginated, the list of 10,000
    # ExtractionJobs (managedFields included) is ~50 MB of JSON parsed at once, and the
    # memory of that moment stays with the process. In pages, as the controller's own list.
    settings.watching.chunk_size = PAGE_SIZE
    # kopf's per-object worker keeps the last event (the whole body, managedFields
    # included) while it waits for the next one, 5 s by default: at start, thousands of
    # bodies at once. The handlers are quick; a worker need not outlive its event.
    settings.queueing.idle_timeout = IDLE_WORKER_SECONDS


# Every hook is a coroutine: kopf runs synchronous handlers in a thread pool, and the
# cache and the work queues belong to the event loop's thread alone.
# No kopf indexes: kopf holds back every object's handlers until all objects of all
# indexed kinds went through their index, and that barrier (a toggle per object, every
# waiter re-checking every toggle on each change) costs time cubic in the number of
# objects — minutes of a busy core at start with 10,000 finished ExtractionJobs and
# their Jobs and Pods. The controller lists everything once itself before its first
# decision (Controller.run), as an informer does; these hooks keep the cache current.


@kopf.on.event("", "v1", "pods", labels={LABEL_APP_MANAGED_BY: MANAGED_BY}, registry=REGISTRY)
async def pod_event(event: kopf.RawEvent, **_: Any) -> None:
    """A worker Pod changed: only the cache needs to know (its Job's event wakes the work)."""
    _event("Pod", event)


@kopf.on.event(GROUP, VERSION, BATCH_PLURAL, registry=REGISTRY)
async def batch_event(event: kopf.RawEvent, **_: Any) -> None:
    """A Batch changed: reconcile it."""
    _event(BATCH_KIND, event)


@kopf.on.event(GROUP, VERSION, JOB_PLURAL, registry=REGISTRY)
async def extraction_job_event(event: kopf.RawEvent, **_: Any) -> None:
    """An ExtractionJob changed: reconcile it, and its Batch's status soon."""
    _event(JOB_KIND, event)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_APP_MANAGED_BY: MANAGED_BY}, registry=REGISTRY)
async def job_event(event: kopf.RawEvent, **_: Any) -> None:
    """One of the operator's Jobs changed: reconcile its ExtractionJob."""
    _event("Job", event)
