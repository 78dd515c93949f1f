"""The API: pydantic models for Batch and ExtractionJob, the single source of the CRDs."""

from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562): the worker imports one model module and
# must not pay for building the others (docs/performance.md).
_EXPORTS = {
    "API_VERSION": "audioextract.api.constants",
    "Batch": "audioextract.api.resources",
    "BatchJob": "audioextract.api.spec",
    "BatchPhase": "audioextract.api.constants",
    "BatchSpec": "audioextract.api.spec",
    "BatchStatus": "audioextract.api.status",
    "Condition": "audioextract.api.status",
    "Destination": "audioextract.api.spec",
    "ErrorCode": "audioextract.api.constants",
    "ExtractionJob": "audioextract.api.resources",
    "ExtractionJobSpec": "audioextract.api.spec",
    "ExtractionJobStatus": "audioextract.api.status",
    "Format": "audioextract.api.constants",
    "GROUP": "audioextract.api.constants",
    "JobDefaults": "audioextract.api.spec",
    "JobEntry": "audioextract.api.status",
    "JobError": "audioextract.api.status",
    "JobPhase": "audioextract.api.constants",
    "JobResult": "audioextract.api.status",
    "Output": "audioextract.api.spec",
    "Priority": "audioextract.api.constants",
    "Quality": "audioextract.api.constants",
    "Source": "audioextract.api.spec",
    "VERSION": "audioextract.api.constants",
    "Webhook": "audioextract.api.spec",
    "WebhookEvent": "audioextract.api.constants",
    "WebhookStatus": "audioextract.api.status",
}

if TYPE_CHECKING:
    from audioextract.api.constants import (
        API_VERSION,
        GROUP,
        VERSION,
        BatchPhase,
        ErrorCode,
        Format,
        JobPhase,
        Priority,
        Quality,
        WebhookEvent,
    )
    from audioextract.api.resources import Batch, ExtractionJob
    from audioextract.api.spec import (
        BatchJob,
        BatchSpec,
        Destination,
        ExtractionJobSpec,
        JobDefaults,
        Output,
        Source,
        Webhook,
    )
    from audioextract.api.status import (
        BatchStatus,
        Condition,
        ExtractionJobStatus,
        JobEntry,
        JobError,
        JobResult,
        WebhookStatus,
    )


def __getattr__(name: str) -> Any:
    """Import an exported name's module when the name is first used."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Batch",
    "BatchJob",
    "BatchPhase",
    "BatchSpec",
    "BatchStatus",
    "Condition",
    "Destination",
    "ErrorCode",
    "ExtractionJob",
    "ExtractionJobSpec",
    "ExtractionJobStatus",
    "Format",
    "JobDefaults",
    "JobEntry",
    "JobError",
    "JobPhase",
    "JobResult",
    "Output",
    "Priority",
    "Quality",
    "Source",
    "Webhook",
    "WebhookEvent",
    "WebhookStatus",
]
