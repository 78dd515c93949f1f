"""What one status write of a 1,000-job Batch costs the API server, by CRD rule set.

    .venv/bin/python -m bench.status_write [--rounds 30]

On the real API server (KUBEBUILDER_ASSETS), the generated Batch CRD is installed
under three other groups: as generated; with every CEL rule guarded so that it only
runs on a value that changed (``optionalOldSelf`` and ``oldSelf.value() == self ||
rule``); and with no CEL rule at all. The same 1,000-job Batch (the operator
benchmark's) is created in each, then its status is merge-patched with a 1,000-entry
status (results filling in as rounds go by), round-robin across the three so that
machine noise falls on all alike. Prints the median, least and most seconds per
``PATCH`` for each: what the spec's rules add to every status write, since the API
server validates the whole object on a status write.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
from tests.support.controlplane import ControlPlane

from audioextract.api.crd import batch_crd
from bench.cel_cost import _strip_rules
from bench.operator import batch_body

ROOT = Path(__file__).resolve().parent.parent
VERSION = "v1alpha1"
JOBS = 1000


def _guard(node: Any) -> None:
    """Every rule runs only where the value differs from the stored one (or is new)."""
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations") or []:
            rule["rule"] = f"(oldSelf.hasValue() && oldSelf.value() == self) || ({rule['rule']})"
            rule["optionalOldSelf"] = True
        for value in node.values():
            _guard(value)
    elif isinstance(node, list):
        for value in node:
            _guard(value)


VARIANTS: dict[str, tuple[str, Callable[[Any], None] | None]] = {
    "generated": ("generated.bench.example.com", None),
    "guarded": ("guarded.bench.example.com", _guard),
    "no CEL": ("nocel.bench.example.com", _strip_rules),
}


def variant_crd(group: str, change: Callable[[Any], None] | None) -> dict[str, Any]:
    """The generated Batch CRD under ``group``, its schema changed by ``change``."""
    crd = copy.deepcopy(batch_crd())
    crd["metadata"]["name"] = f"{crd['spec']['names']['plural']}.{group}"
    crd["spec"]["group"] = group
    if change is not None:
        change(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    return crd


def status(done: int) -> dict[str, Any]:
    """A 1,000-entry Batch status with ``done`` results filled in."""
    entries = []
    for i in range(JOBS):
        entry: dict[str, Any] = {
            "name": f"ep-{i:04d}",
            "extractionJob": f"big-ep-{i:04d}",
            "phase": "Succeeded" if i < done else "Queued",
        }
        if i < done:
            entry["result"] = {
                "uri": f"s3://audio-out/bench/big-ep-{i:04d}.mp3",
                "sizeBytes": 1_000_000 + i,
                "durationSeconds": 61.2,
                "sha256": f"{i:064x}",
            }
        entries.append(entry)
    return {"status": {"total": JOBS, "succeeded": done, "queued": JOBS - done, "jobs": entries}}


def main() -> None:
    """Install the variants, create the Batch in each, time the status patches."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    assets = os.environ.get("KUBEBUILDER_ASSETS") or str(ROOT / ".cache" / "k8s")
    with ControlPlane(Path(assets), Path(tempfile.mkdtemp(prefix="status-write-"))) as cp:
        for group, change in VARIANTS.values():
            cp.kubectl(
                "apply", "--server-side", "-f", "-", input=json.dumps(variant_crd(group, change))
            )
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        api: Any = kubernetes.client.CustomObjectsApi(cp.api_client)
        for group, _change in VARIANTS.values():
            body = batch_body("big", JOBS)
            body["apiVersion"] = f"{group}/{VERSION}"
            api.create_namespaced_custom_object(group, VERSION, "default", "batches", body)
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for done in range(args.rounds + 2):
            patch = status(min(JOBS, done * JOBS // args.rounds))
            for name, (group, _change) in VARIANTS.items():
                started = time.perf_counter()
                api.patch_namespaced_custom_object_status(
                    group, VERSION, "default", "batches", "big", patch
                )
                if done >= 2:  # the first two rounds warm the API server's caches
                    times[name].append(time.perf_counter() - started)
        print(f"status PATCH of a {JOBS}-job Batch, {args.rounds} rounds, seconds:")
        for name, values in times.items():
            print(
                f"  {name:10s} median {statistics.median(values):.3f}"
                f"  least {min(values):.3f}  most {max(values):.3f}"
            )


if __name__ == "__main__":
    main()
