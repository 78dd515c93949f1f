"""Kubernetes Events the operator posts: one poster (reasons: :mod:`audioextract.reconcile.events`)."""

import logging
from typing import Any

from kubernetes.client.exceptions import ApiException

from audioextract.handlers.kube import Kube
from audioextract.reconcile.conditions import now_rfc3339
from audioextract.reconcile.events import (
    CANCELLED,
    CHILDREN_CREATED,
    INVALID_SPEC,
    JOB_DELETED,
    JOB_FAILED,
    JOB_STARTED,
    JOB_SUCCEEDED,
    NORMAL,
    PHASE_CHANGED,
    RETRY_REQUESTED,
    TASK_SECRET_FORBIDDEN,
    TTL_EXPIRED,
    WARNING,
    WEBHOOK_FAILED,
)
from audioextract.reconcile.names import MANAGED_BY, short_hash

log = logging.getLogger(__name__)

# Types and reasons are named once, in reconcile/events.py (plans name the Events they want).
__all__ = [
    "CANCELLED",
    "CHILDREN_CREATED",
    "INVALID_SPEC",
    "JOB_DELETED",
    "JOB_FAILED",
    "JOB_STARTED",
    "JOB_SUCCEEDED",
    "NORMAL",
    "PHASE_CHANGED",
    "RETRY_REQUESTED",
    "TASK_SECRET_FORBIDDEN",
    "TTL_EXPIRED",
    "WARNING",
    "WEBHOOK_FAILED",
    "post",
]


async def post(kube: Kube, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """Post an Event about ``obj``; failures are logged, never raised (Events are best effort)."""
    meta = obj.get("metadata", {})
    now = now_rfc3339()
    namespace = meta.get("namespace", "default")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name', 'x')[:200]}.{short_hash(now + reason + message, 16)}",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": namespace,
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "source": {"component": MANAGED_BY},
        "reportingComponent": MANAGED_BY,
    }
    try:
        await kube.create_event(namespace, body)
    except ApiException as exc:
        log.warning("could not post event %s on %s: %s", reason, meta.get("name"), exc.reason)
