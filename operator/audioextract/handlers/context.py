"""What one reconcile pass sees and shares: the API facade, the settings, the listed objects."""

from dataclasses import dataclass, field
from typing import Any

from audioextract.api.constants import BATCH_KIND
from audioextract.handlers.kube import Kube
from audioextract.reconcile.manifest import WorkerConfig
from audioextract.settings import Settings

Obj = dict[str, Any]


@dataclass
class Context:
    """One pass: the facade, the settings and the time the pass started."""

    kube: Kube
    settings: Settings
    worker: WorkerConfig
    now: str


@dataclass
class World:
    """Everything listed at the start of a pass, updated in place as the pass writes.

    Keyed by (namespace, name) for ExtractionJobs and by the owning ExtractionJob's uid
    for Jobs, so that ownership (not only labels) decides what belongs together.
    """

    batches: list[Obj] = field(default_factory=list)
    extraction_jobs: dict[tuple[str, str], Obj] = field(default_factory=dict)
    jobs_by_owner: dict[str, list[Obj]] = field(default_factory=dict)


def key(obj: Obj) -> tuple[str, str]:
    """(namespace, name) of an object."""
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def controller_owner(obj: Obj, kind: str | None = None) -> Obj | None:
    """The controller owner reference of ``obj`` (optionally only of the given kind)."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("controller") and (kind is None or ref.get("kind") == kind):
            return dict(ref)
    return None


def batch_id(ej: Obj) -> str | None:
    """The "<namespace>/<batch>" of a Batch's child, None for a standalone ExtractionJob."""
    ref = controller_owner(ej, BATCH_KIND)
    if ref is None:
        return None
    return f"{ej['metadata'].get('namespace', '')}/{ref['name']}"


def is_finished(job: Obj) -> bool:
    """Whether a batch/v1 Job has reached Complete or Failed."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return True
    return False
