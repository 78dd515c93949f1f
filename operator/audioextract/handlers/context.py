"""What one reconcile shares: the API facade, the settings, the cache, the notifier, the time."""

from dataclasses import dataclass
from typing import Any

from audioextract import metrics
from audioextract.api.base import Model
from audioextract.api.constants import JOB_KIND
from audioextract.api.status import ExtractionJobStatus
from audioextract.handlers.cache import Cache
from audioextract.handlers.kube import Kube
from audioextract.handlers.notify import Notifier
from audioextract.reconcile.extractionjob import JobConfig
from audioextract.reconcile.manifest import WorkerConfig
from audioextract.reconcile.patch import merge_patch
from audioextract.settings import Settings

Obj = dict[str, Any]


@dataclass
class Context:
    """One reconcile: the facade, the settings, the cache and the time it started."""

    kube: Kube
    settings: Settings
    worker: WorkerConfig
    now: str
    notifier: Notifier
    cache: Cache

    async def write_status(self, kind: str, plural: str, obj: Obj, new: Model) -> Obj:
        """Patch ``obj``'s status to ``new`` only when it differs, onto the version read.

        The patch carries the read ``resourceVersion``: a 409 means someone wrote the
        object since, and the caller re-plans from a fresher read. The written object
        goes into the cache at once.
        """
        patch = merge_patch(obj.get("status") or {}, new.dump())
        if not patch:
            return obj
        meta = obj["metadata"]
        updated = await self.kube.patch_status(
            plural,
            meta["namespace"],
            meta["name"],
            patch,
            resource_version=meta.get("resourceVersion"),
        )
        if kind == JOB_KIND and isinstance(new, ExtractionJobStatus):
            before = (obj.get("status") or {}).get("phase")
            metrics.job_status_written(before, new, meta.get("creationTimestamp"))
        return self.cache.put(kind, updated) or obj

    def job_config(self) -> JobConfig:
        """The settings an ExtractionJob's plan depends on."""
        return JobConfig(
            worker=self.worker,
            default_destination=self.settings.default_destination,
        )
