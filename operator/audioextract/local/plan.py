"""From a validated object to the jobs to run: names, resolved specs, worker tasks, volumes.

Names and defaults are the operator's: a Batch's job ``key`` becomes the
ExtractionJob ``<batch>-<key>`` (:func:`child_name`), its spec comes from
:func:`resolve_batch_job`, and the worker task from :func:`build_task`. Jobs without
a destination write to ``--out``: it is mounted for the worker as the reserved
volume :data:`OUT_CLAIM`, which is the runner's "default destination".
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from audioextract.api.constants import Priority
from audioextract.api.defaults import (
    effective_priority,
    effective_retries,
    effective_timeout,
    job_key,
    resolve_batch_job,
    resolve_standalone,
)
from audioextract.api.spec import BatchSpec, Destination, ExtractionJobSpec, VolumeDirectory
from audioextract.api.task import Task, build_task
from audioextract.local.load import InvalidInputError, Loaded
from audioextract.reconcile.names import child_name

# The claim name under which --out is mounted for the worker. A valid claim name (the
# task is validated like any other) that no one is likely to use for a real volume.
OUT_CLAIM = "audioextract-local-out"
# Where jobs without a destination write: the --out directory, as a volume.
LOCAL_DESTINATION = Destination(volume=VolumeDirectory(claim_name=OUT_CLAIM))


@dataclass(frozen=True)
class LocalJob:
    """One job to run: its place in the spec, its names, resolved spec and worker task."""

    index: int
    key: str
    name: str
    spec: ExtractionJobSpec
    task: Task

    @property
    def priority(self) -> Priority:
        """Admission priority."""
        return effective_priority(self.spec)

    @property
    def retries(self) -> int:
        """Retries after transient failures."""
        return effective_retries(self.spec)

    @property
    def timeout(self) -> int:
        """Seconds one attempt may take."""
        return effective_timeout(self.spec)

    @property
    def normalize(self) -> bool:
        """Whether the worker runs a measuring pass before encoding."""
        return bool(self.task.output.normalize)


@dataclass(frozen=True)
class Plan:
    """Everything the runner needs, decided before any job starts."""

    loaded: Loaded
    jobs: list[LocalJob]
    volumes: dict[str, Path]
    out_dir: Path
    batch_parallelism: int | None
    max_concurrent: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def parallelism(self) -> int:
        """Most jobs running at once (the smaller of both limits)."""
        limits = [x for x in (self.batch_parallelism, self.max_concurrent) if x is not None]
        return min(limits) if limits else 1


def parse_volumes(entries: Sequence[str]) -> dict[str, Path]:
    """``NAME=DIR`` flags to a claim -> existing directory map; raises InvalidInputError."""
    volumes: dict[str, Path] = {}
    errors = []
    for entry in entries:
        name, sep, directory = entry.partition("=")
        if not sep or not name or not directory:
            errors.append(f"--volume {entry!r}: expected NAME=DIR")
            continue
        if name == OUT_CLAIM:
            errors.append(f"--volume {entry!r}: {OUT_CLAIM} is reserved for --out")
            continue
        path = Path(directory).expanduser()
        if not path.is_dir():
            errors.append(f"--volume {entry!r}: {directory} is not a directory")
            continue
        volumes[name] = path.resolve()
    if errors:
        raise InvalidInputError(errors)
    return volumes


def _unmapped(where: str, spec: ExtractionJobSpec, volumes: dict[str, Path]) -> list[str]:
    """Errors for volume claims the spec names and no --volume maps."""
    errors = []
    src = spec.source.volume
    if src is not None and src.claim_name not in volumes:
        errors.append(
            f"{where}.source.volume.claimName: volume {src.claim_name!r} is not mapped; "
            f"pass --volume {src.claim_name}=DIR"
        )
    dest = spec.output.destination if spec.output else None
    if dest is not None and dest.volume is not None and dest.volume.claim_name not in volumes:
        errors.append(
            f"{where}.output.destination.volume.claimName: volume {dest.volume.claim_name!r} "
            f"is not mapped; pass --volume {dest.volume.claim_name}=DIR"
        )
    return errors


def _resolved(loaded: Loaded) -> list[tuple[int, str, str, ExtractionJobSpec, str]]:
    """(index, key, ExtractionJob name, resolved spec, field prefix) per job, in spec order."""
    if loaded.batch is not None:
        spec: BatchSpec = loaded.batch
        out = []
        for index, job in enumerate(spec.jobs):
            key = job_key(job, index)
            out.append(
                (
                    index,
                    key,
                    child_name(loaded.name, key),
                    resolve_batch_job(spec, job),
                    f"spec.jobs[{index}]",
                )
            )
        return out
    assert loaded.job is not None
    return [(0, loaded.name, loaded.name, resolve_standalone(loaded.job), "spec")]


def build_plan(
    loaded: Loaded, volumes: dict[str, Path], out_dir: Path, parallel: int | None
) -> Plan:
    """Resolve every job and its task; raises InvalidInputError naming unmapped volumes."""
    default = LOCAL_DESTINATION
    jobs: list[LocalJob] = []
    errors: list[str] = []
    for index, key, name, spec, where in _resolved(loaded):
        errors += _unmapped(where, spec, volumes)
        jobs.append(LocalJob(index, key, name, spec, build_task(name, spec, default)))
    if errors:
        raise InvalidInputError(errors)
    notes = []
    batch_parallelism = loaded.batch.parallelism if loaded.batch is not None else None
    max_concurrent = parallel
    if batch_parallelism is None and parallel is None:
        # Neither limit given: one job per CPU, as the default.
        max_concurrent = os.cpu_count() or 1
    ignored = [
        what
        for what, value in (
            ("queueName", loaded.batch.queue_name if loaded.batch else None),
            (
                "ttlSecondsAfterFinished",
                loaded.batch.ttl_seconds_after_finished if loaded.batch else None,
            ),
            ("resources", any(j.spec.resources for j in jobs) or None),
        )
        if value is not None
    ]
    if ignored:
        notes.append(f"ignored when running locally: {', '.join(ignored)}")
    out = out_dir.expanduser().resolve()
    return Plan(
        loaded=loaded,
        jobs=jobs,
        volumes={**volumes, OUT_CLAIM: out},
        out_dir=out,
        batch_parallelism=batch_parallelism,
        max_concurrent=max_concurrent,
        notes=notes,
    )
