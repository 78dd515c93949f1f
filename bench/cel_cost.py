"""CEL cost of the Batch CRD's rules as the real API server estimates it (KUBEBUILDER_ASSETS).

    .venv/bin/python -m bench.cel_cost

The API server estimates every ``x-kubernetes-validations`` rule's worst-case cost when
a CRD is created, multiplies it by how many times the rule can run (the ``maxItems`` /
``maxProperties`` of every list and map above it) and refuses the CRD when one rule
exceeds the per-call limit or all of them together exceed the per-CRD limit. It reports
neither figure on success, only on refusal ("... exceeds budget by factor of ...").

So this script creates (server-side dry run) copies of the generated Batch CRD under
another group with ``spec.jobs.maxItems`` raised, finds by bisection the largest
``maxItems`` the API server still accepts, and prints the refusal messages around it.
The per-job rules cost the same for every item, so the estimated total at 1,000 jobs
is (limit that refused) * 1,000 / (largest accepted maxItems), within one item.
It also applies a 1,000-job Batch with the longest values the rules look at (within the
rule on the total length of locations), so the runtime cost is checked too (the API server refuses an object whose rules run out of
their runtime budget).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tests.support.controlplane import ControlPlane

from audioextract.api.constants import MAX_JOBS_PER_BATCH
from audioextract.api.crd import batch_crd
from audioextract.api.spec import LOCATION_RULE

ROOT = Path(__file__).resolve().parent.parent
PROBE_GROUP = "costprobe.example.com"


def _strip_rules(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("x-kubernetes-validations", None)
        for value in node.values():
            _strip_rules(value)
    elif isinstance(node, list):
        for value in node:
            _strip_rules(value)


def probe_crd(max_items: int, only_location_rule: bool = False) -> dict[str, Any]:
    """The Batch CRD under another group, with ``spec.jobs.maxItems`` set.

    ``only_location_rule`` keeps the spec's rule on the total length of locations alone,
    so the bisection measures that rule's estimated cost by itself.
    """
    crd = copy.deepcopy(batch_crd())
    crd["metadata"]["name"] = f"batches.{PROBE_GROUP}"
    crd["spec"]["group"] = PROBE_GROUP
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    if only_location_rule:
        rule = [r for r in spec["x-kubernetes-validations"] if r["rule"] == LOCATION_RULE]
        _strip_rules(schema)
        spec["x-kubernetes-validations"] = rule
    spec["properties"]["jobs"]["maxItems"] = max_items
    return crd


def accepted(
    cp: ControlPlane, max_items: int, only_location_rule: bool = False
) -> tuple[bool, str]:
    """Whether the API server accepts the probe CRD, and its message when it does not."""
    result = cp.kubectl(
        "create", "--dry-run=server", "-f", "-",
        input=json.dumps(probe_crd(max_items, only_location_rule)), check=False,
    )  # fmt: skip
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def bisect(cp: ControlPlane, only_location_rule: bool = False) -> tuple[int, int, str] | None:
    """(largest accepted maxItems, smallest refused, its message); None if never refused."""
    low = high = MAX_JOBS_PER_BATCH
    while True:  # find a refused size
        high *= 4
        ok, message = accepted(cp, high, only_location_rule)
        if not ok:
            break
        low = high
        if high > 10**9:
            return None
    refused_message = message
    while high - low > max(1, low // 1000):
        mid = (low + high) // 2
        ok, message = accepted(cp, mid, only_location_rule)
        if ok:
            low = mid
        else:
            high, refused_message = mid, message
    return low, high, refused_message


def largest_batch(cp: ControlPlane) -> tuple[bool, str]:
    """A 1,000-job Batch whose values are as long as the rules allow (runtime cost)."""
    cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    # Long where a rule reads a string (the '..' regex on paths, tag keys), within the
    # location rule's total (MAX_BATCH_LOCATION_CHARS for all paths and claim names
    # together): a 125-character source and destination path on every job.
    path = "d/" * 60 + "x.mp4"  # 125 characters of path segments
    jobs = []
    for i in range(MAX_JOBS_PER_BATCH):
        jobs.append(
            {
                "name": f"j{i:05d}-" + "x" * 56,
                "source": {
                    "volume": {"claimName": "videos", "path": path},
                    "audioTrack": 1,
                },
                "output": {
                    "format": "mp3",
                    "quality": "high",
                    "channels": 2,
                    "tags": {f"k{t:02d}" + "a" * 9: "v" for t in range(32)},
                    "destination": {"volume": {"claimName": "audio", "path": "d/" * 60 + "out"}},
                },
            }
        )
    batch = {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "Batch",
        "metadata": {"name": "largest"},
        "spec": {"jobs": jobs},
    }
    result = cp.kubectl(
        "create", "--dry-run=server", "-n", "default", "-f", "-", input=json.dumps(batch),
        check=False, timeout=300,
    )  # fmt: skip
    return result.returncode == 0, (result.stdout + result.stderr).strip()[-2000:]


def main() -> None:
    """Bisect the largest accepted maxItems and print what the API server said."""
    assets = os.environ.get("KUBEBUILDER_ASSETS") or str(ROOT / ".cache" / "k8s")
    with ControlPlane(Path(assets), Path(tempfile.mkdtemp(prefix="cel-cost-"))) as cp:
        ok, message = accepted(cp, MAX_JOBS_PER_BATCH)
        print(f"maxItems={MAX_JOBS_PER_BATCH}: {'accepted' if ok else 'REFUSED: ' + message}")
        for only, what in ((False, "all rules"), (True, "the location rule alone")):
            found = bisect(cp, only)
            if found is None:
                print(f"{what}: accepted up to 1e9 items: the estimated cost does not grow")
                continue
            low, high, refused_message = found
            print(f"{what}: largest accepted maxItems: {low}; refused at {high}:")
            print(refused_message)
            print(
                f"{what}: estimated cost at {MAX_JOBS_PER_BATCH} jobs: "
                f"{MAX_JOBS_PER_BATCH / low:.2%} of the limit named in the refusal above"
            )
        ok, message = largest_batch(cp)
        print(f"1,000-job Batch with the longest values: {'accepted' if ok else 'REFUSED'}")
        print(message)


if __name__ == "__main__":
    main()
