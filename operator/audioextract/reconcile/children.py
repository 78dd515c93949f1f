"""The ExtractionJobs a Batch should have (DESIGN §3, step 1)."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audioextract.api.constants import API_VERSION, BATCH_KIND, JOB_KIND, LABEL_BATCH, LABEL_JOB
from audioextract.api.defaults import job_key, resolve_batch_job
from audioextract.api.spec import BatchSpec
from audioextract.reconcile.names import (
    APP_NAME,
    LABEL_APP_COMPONENT,
    LABEL_APP_INSTANCE,
    LABEL_APP_MANAGED_BY,
    LABEL_APP_NAME,
    MANAGED_BY,
    batch_label_value,
    child_name,
)


@dataclass(frozen=True)
class BatchRef:
    """Identity of a Batch object, enough to own and label its children."""

    name: str
    namespace: str
    uid: str


def owner_reference(api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    """A controller owner reference that lets the garbage collector delete the child."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_labels(batch_name: str, key: str) -> dict[str, str]:
    """Labels of a Batch's child: ours for selection, app.kubernetes.io/* for tooling."""
    return {
        LABEL_BATCH: batch_label_value(batch_name),
        LABEL_JOB: key,
        LABEL_APP_NAME: APP_NAME,
        LABEL_APP_INSTANCE: batch_label_value(batch_name),
        LABEL_APP_COMPONENT: "extractionjob",
        LABEL_APP_MANAGED_BY: MANAGED_BY,
    }


def child_manifest(batch: BatchRef, spec: BatchSpec, index: int) -> dict[str, Any]:
    """The ExtractionJob manifest of the job at ``index`` of the Batch."""
    job = spec.jobs[index]
    key = job_key(job, index)
    return {
        "apiVersion": API_VERSION,
        "kind": JOB_KIND,
        "metadata": {
            "name": child_name(batch.name, key),
            "namespace": batch.namespace,
            "labels": child_labels(batch.name, key),
            "ownerReferences": [owner_reference(API_VERSION, BATCH_KIND, batch.name, batch.uid)],
        },
        "spec": resolve_batch_job(spec, job).dump(),
    }


def desired_children(batch: BatchRef, spec: BatchSpec) -> list[dict[str, Any]]:
    """One ExtractionJob manifest per job of the Batch, in spec order.

    Names are ``<batch>-<job key>`` (cut with a hash when too long), so re-applying the
    Batch maps every job to the same child and never duplicates one.
    """
    return [child_manifest(batch, spec, index) for index in range(len(spec.jobs))]


def is_owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether ``obj`` has a controller owner reference to the object with ``uid``.

    Label selectors narrow lists server-side; this check makes sure a look-alike
    object (same labels, other owner) is never counted or touched.
    """
    for ref in obj.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("uid") == uid and ref.get("controller"):
            return True
    return False
