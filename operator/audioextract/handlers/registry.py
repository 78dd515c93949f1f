"""Every kopf registration of the operator, in one place.

kopf watches Batches, ExtractionJobs, the operator's Jobs and their Pods; its indexing hooks feed
the controller's cache and its event handlers wake the keys an event concerns
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

from audioextract.api.constants import (
    BATCH_KIND,
    BATCH_PLURAL,
    GROUP,
    JOB_KIND,
    JOB_PLURAL,
    VERSION,
)
from audioextract.handlers.controller import Controller
from audioextract.reconcile.names import LABEL_APP_MANAGED_BY, MANAGED_BY

REGISTRY = kopf.OperatorRegistry()

log = logging.getLogger(__name__)


class _Target:
    """The running controller the hooks below feed (set by ``audio-extract operator``)."""

    def __init__(self) -> None:
        self.controller: Controller | None = None


TARGET = _Target()


def _observed(kind: str, body: kopf.Body) -> None:
    if TARGET.controller is not None:
        TARGET.controller.observed(kind, dict(body))


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


# Every hook is a coroutine: kopf runs synchronous handlers in a thread pool, and the
# cache and the work queues belong to the event loop's thread alone.
# Indexing hooks: kopf calls them for every listed or watched object, before any handler,
# and starts handlers only once every object of every indexed kind went through them,
# so the first decision is made over a complete cache. They keep nothing in kopf's own
# index (they return None); the cache holds the slim projection.


@kopf.index(GROUP, VERSION, BATCH_PLURAL, registry=REGISTRY)
async def batch_index(body: kopf.Body, **_: Any) -> None:
    """A Batch as listed or watched: into the cache."""
    _observed(BATCH_KIND, body)


@kopf.index(GROUP, VERSION, JOB_PLURAL, registry=REGISTRY)
async def extraction_job_index(body: kopf.Body, **_: Any) -> None:
    """An ExtractionJob as listed or watched: into the cache."""
    _observed(JOB_KIND, body)


@kopf.index("batch", "v1", "jobs", labels={LABEL_APP_MANAGED_BY: MANAGED_BY}, registry=REGISTRY)
async def job_index(body: kopf.Body, **_: Any) -> None:
    """One of the operator's Jobs as listed or watched: into the cache."""
    _observed("Job", body)


@kopf.index("", "v1", "pods", labels={LABEL_APP_MANAGED_BY: MANAGED_BY}, registry=REGISTRY)
async def pod_index(body: kopf.Body, **_: Any) -> None:
    """A worker Pod as listed or watched: into the cache (its termination message)."""
    _observed("Pod", body)


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
