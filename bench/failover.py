"""Operator failover benchmark on a real control plane (KUBEBUILDER_ASSETS).

    make bench-failover                     # 3 rounds of each kind, default lease (15 s)
    PYTHONPATH=. .venv/bin/python bench/failover.py --rounds 5 --lease-seconds 5

Two `audio-extract operator` instances compete for the Lease. Each round stops the
holder and, at that same moment, creates a Batch; the figure is the time until the
other instance has created the Batch's first ExtractionJob, i.e. until work resumes.
Two ways to stop: SIGTERM (the holder releases the Lease on its way out) and SIGKILL
(a crash: the standby waits for the Lease to expire).
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import kubernetes.client
from tests.envtest.operator_process import OperatorProcess
from tests.support.controlplane import ControlPlane
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "failover"
LEASE = "audio-extract-operator"
GROUP, VERSION = "audioextract.dev", "v1alpha1"


def _holder(coordination: Any) -> str | None:
    try:
        lease = coordination.read_namespaced_lease(LEASE, NAMESPACE)
    except kubernetes.client.ApiException:
        return None
    holder: str | None = lease.spec.holder_identity
    return holder or None


def _batch(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Batch",
        "metadata": {"name": name},
        "spec": {"jobs": [{"name": "a", "source": {"url": "https://media.example.com/a.mp4"}}]},
    }


def _round(cp: ControlPlane, kill: bool, lease_seconds: int, index: int) -> float:
    custom: Any = kubernetes.client.CustomObjectsApi(cp.api_client)
    coordination: Any = kubernetes.client.CoordinationV1Api(cp.api_client)
    env = {
        "AUDIOEXTRACT_DEFAULT_DESTINATION": json.dumps({"volume": {"claimName": "out"}}),
        "AUDIOEXTRACT_LEASE_DURATION_SECONDS": str(lease_seconds),
        # Failover must not hinge on the periodic resync: events and the Lease drive it.
        "AUDIOEXTRACT_RESYNC_SECONDS": "60",
    }
    a = OperatorProcess(cp, NAMESPACE, {**env, "AUDIOEXTRACT_POD_NAME": f"a{index}"}, False)
    b = OperatorProcess(cp, NAMESPACE, {**env, "AUDIOEXTRACT_POD_NAME": f"b{index}"}, False)
    with a, b:
        holder = wait_for(
            lambda: _holder(coordination) if _holder(coordination) in (f"a{index}", f"b{index}")
            else None,
            timeout=120,
            what="a Lease holder",
        )  # fmt: skip
        leader = a if holder == f"a{index}" else b
        # Give the standby time to start its watches, as a long-running one has.
        time.sleep(5)
        name = f"r{index}-{'kill' if kill else 'term'}"
        started = time.monotonic()
        assert leader.proc is not None
        if kill:
            leader.kill()
        else:
            leader.proc.terminate()  # the clock runs from the signal, not from the exit
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "batches", _batch(name))
        wait_for(
            lambda: custom.list_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "extractionjobs",
                label_selector=f"audioextract.dev/batch={name}",
            )["items"],
            timeout=lease_seconds * 4 + 60,
            interval=0.05,
            what="the standby's first child",
        )  # fmt: skip
        return time.monotonic() - started


def main() -> None:
    """Run the rounds and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lease-seconds", type=int, default=15)
    args = parser.parse_args()
    assets = os.environ.get("KUBEBUILDER_ASSETS") or str(ROOT / ".cache" / "k8s")
    with ControlPlane(Path(assets), Path(tempfile.mkdtemp(prefix="failover-"))) as cp:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cp.kubectl("create", "namespace", NAMESPACE)
        figures: dict[str, list[float]] = {
            "SIGTERM (Lease released)": [],
            "SIGKILL (Lease expires)": [],
        }
        index = 0
        for kill, label in ((False, "SIGTERM (Lease released)"), (True, "SIGKILL (Lease expires)")):
            for _ in range(args.rounds):
                index += 1
                figures[label].append(_round(cp, kill, args.lease_seconds, index))
                print(f"{label}: {figures[label][-1]:.2f} s", flush=True)
    print(f"\n{platform.node()} ({os.cpu_count()} CPUs), lease {args.lease_seconds} s, "
          f"{args.rounds} rounds each\n")  # fmt: skip
    print("| how the leader stops | median | min | max |")
    print("|---|---:|---:|---:|")
    for label, values in figures.items():
        print(
            f"| {label} | {statistics.median(values):.2f} s | {min(values):.2f} s "
            f"| {max(values):.2f} s |"
        )


if __name__ == "__main__":
    main()
