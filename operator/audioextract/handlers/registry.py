"""Every kopf registration of the operator, in one place.

kopf watches Batches, ExtractionJobs and the operator's Jobs; each event only wakes
the reconcile loop (:mod:`audioextract.handlers.controller`), which recomputes from
listed state. Handlers return nothing (kopf would store a return value under
``status.<handler id>``, which the structural schema prunes) and there are no
change or deletion handlers, so kopf adds neither its last-handled-configuration
annotation nor a finalizer: children go away through owner references and the
garbage collector.
"""

import logging
from typing import Any

import kopf

from audioextract.api.constants import BATCH_PLURAL, GROUP, JOB_PLURAL, VERSION
from audioextract.reconcile.names import LABEL_APP_MANAGED_BY, MANAGED_BY

REGISTRY = kopf.OperatorRegistry()

log = logging.getLogger(__name__)


class _Waker:
    """Holds the function the event handlers call to wake the loop."""

    def __init__(self) -> None:
        self.wake: Any = None


WAKER = _Waker()


def _wake() -> None:
    if WAKER.wake is not None:
        WAKER.wake()


@kopf.on.login(registry=REGISTRY)
def login(**kwargs: Any) -> Any:
    """In-cluster service account, else KUBECONFIG, as the kubernetes client finds them."""
    return kopf.login_via_client(**kwargs)


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


@kopf.on.event(GROUP, VERSION, BATCH_PLURAL, registry=REGISTRY)
def batch_event(**_: Any) -> None:
    """A Batch changed: reconcile soon."""
    _wake()


@kopf.on.event(GROUP, VERSION, JOB_PLURAL, registry=REGISTRY)
def extraction_job_event(**_: Any) -> None:
    """An ExtractionJob changed: reconcile soon (its Batch's rollup may change)."""
    _wake()


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_APP_MANAGED_BY: MANAGED_BY}, registry=REGISTRY)
def job_event(**_: Any) -> None:
    """One of the operator's Jobs changed: reconcile soon."""
    _wake()
