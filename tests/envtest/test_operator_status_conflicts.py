"""Two writers of one Batch status: the operator and a client with guarded updates.

While the operator runs a Batch, another client keeps replacing the Batch's status
through the status subresource with the resourceVersion it read (an optimistic
update, as ``kubectl edit --subresource=status`` or another controller would do),
back to back, adding its own condition each time. Every such write moves the resourceVersion under
the operator. The test proves that

- the API server enforces the guard: a replace with a stale resourceVersion is 409;
- no child's update is lost: the Batch's counts never go backwards, and the final
  counts and every ``jobs[]`` entry match the children's final phases;
- the operator never writes from a stale read: the other writer's condition never
  goes back to an older value, and survives to the end. The operator's status patch
  carries the resourceVersion it read; on 409 it reads the Batch again and recomputes
  (its log says "status conflict (409)").
"""

import itertools
import threading
import time
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
import kubernetes.watch
from kubernetes.client.exceptions import ApiException

from tests.envtest.operator_helpers import (
    DEST,
    GROUP,
    VERSION,
    batch_manifest,
    get,
    make_video,
    phase_is,
)
from tests.envtest.operator_process import OperatorProcess
from tests.support.controlplane import ControlPlane
from tests.support.kubelet import FakeKubelet
from tests.support.wait import wait_for
from tests.support.watch_thread import WatchThread

# Eight children give the operator enough Batch status writes to meet the other
# writer's updates as 409s on every run, not only on a lucky one.
JOBS = ("a", "b", "c", "d", "e", "f", "g", "h")
AUDIT = "ExternalAudit"


def audit_number(status: dict[str, Any]) -> int:
    """The other writer's counter in its condition's message; -1 when absent."""
    for c in status.get("conditions") or []:
        if c["type"] == AUDIT:
            return int(c["message"].split()[-1])
    return -1


class StatusWriter:
    """Replaces the Batch's status with its own condition, guarded by resourceVersion."""

    def __init__(self, cp: ControlPlane, namespace: str, name: str) -> None:
        self.api_client = cp.new_api_client()
        self.custom: Any = kubernetes.client.CustomObjectsApi(self.api_client)
        self.namespace, self.name = namespace, name
        self.written = 0  # successful replaces
        self.conflicts = 0  # 409s: the operator wrote between our read and our write
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, "batches", self.name, obj
        )
        return out

    def with_audit(self, obj: dict[str, Any], n: int) -> dict[str, Any]:
        conditions = [c for c in obj["status"].get("conditions") or [] if c["type"] != AUDIT]
        conditions.append(
            {
                "type": AUDIT,
                "status": "True",
                "reason": "Audited",
                "message": f"audit {n}",
                "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
        obj["status"]["conditions"] = conditions
        return obj

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                obj = get(self.custom, self.namespace, "batches", self.name)
                if obj.get("status"):
                    self.replace(self.with_audit(obj, self.written + 1))
                    self.written += 1
            except ApiException as exc:
                if exc.status == 409:
                    self.conflicts += 1
                else:
                    self.errors.append(f"{exc.status}: {exc.reason}")
            # Back-to-back: the operator reads the Batch from its watch-fed cache just
            # before writing, so only a busy second writer makes its writes meet 409s.
            time.sleep(0.002)

    def __enter__(self) -> "StatusWriter":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.api_client.close()


class BatchHistory(WatchThread):
    """Every version of the Batch, in order, from a watch."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        super().__init__(cp)
        self.namespace = namespace
        self.versions: list[dict[str, Any]] = []

    def _run(self) -> None:
        custom = kubernetes.client.CustomObjectsApi(self.api_client)
        try:
            for event in self._watch.stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                "batches",
                timeout_seconds=300,
            ):
                self.versions.append(event["object"])
        except Exception:
            if not self._stopped.is_set():
                raise


def test_operator_status_survives_a_second_guarded_writer(
    controller_manager: ControlPlane,
    crds: list[str],
    namespace: str,
    kubelet: FakeKubelet,
    api_client: kubernetes.client.ApiClient,
) -> None:
    media = kubelet.volume_dir("media")
    for name in JOBS:
        make_video(media / f"{name}.mp4", 1.0)
    kubelet.volume_dir("out")
    custom: Any = kubernetes.client.CustomObjectsApi(api_client)
    jobs = [
        {"name": n, "source": {"volume": {"claimName": "media", "path": f"{n}.mp4"}}} for n in JOBS
    ]
    env = {"AUDIOEXTRACT_DEFAULT_DESTINATION": DEST}
    with (
        BatchHistory(controller_manager, namespace) as history,
        OperatorProcess(controller_manager, namespace, env) as op,
    ):
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "batches", batch_manifest("contended", jobs, parallelism=2)
        )
        with StatusWriter(controller_manager, namespace, "contended") as writer:
            # The guard itself: a replace with a resourceVersion that has moved is 409.
            stale = wait_for(
                lambda: (o := get(custom, namespace, "batches", "contended")).get("status") and o,
                what="a first status",
            )
            wait_for(
                lambda: (
                    get(custom, namespace, "batches", "contended")["metadata"]["resourceVersion"]
                    != stale["metadata"]["resourceVersion"]
                ),
                what="the resourceVersion to move",
            )
            try:
                writer.replace(writer.with_audit(stale, 0))
            except ApiException as exc:
                assert exc.status == 409, exc
            else:
                raise AssertionError("a replace with a stale resourceVersion was accepted")

            wait_for(
                phase_is(custom, namespace, "contended", "Succeeded"),
                timeout=90,
                interval=0.3,
                what="Batch Succeeded",
            )
            time.sleep(1)  # a few more writes on the finished Batch
        assert not writer.errors, writer.errors
        last_audit = writer.written

        # The operator's last word stands, and the other writer's condition with it.
        def settled() -> dict[str, Any] | None:
            b = get(custom, namespace, "batches", "contended")
            return b if audit_number(b["status"]) == last_audit else None

        batch = wait_for(settled, timeout=10, what="the other writer's last condition kept")
        time.sleep(2)  # two resync passes: nothing left to correct
        op.assert_healthy()
        log = op.log()
    final = get(custom, namespace, "batches", "contended")
    assert final["metadata"]["resourceVersion"] == batch["metadata"]["resourceVersion"]

    st = final["status"]
    assert (st["phase"], st["total"], st["succeeded"], st["failed"]) == (
        "Succeeded",
        len(JOBS),
        len(JOBS),
        0,
    )
    assert (st["queued"], st["running"]) == (0, 0)
    for entry in st["jobs"]:
        ej = get(custom, namespace, "extractionjobs", entry["extractionJob"])
        assert entry["phase"] == ej["status"]["phase"] == "Succeeded"
        assert entry["result"]["uri"] == ej["status"]["result"]["uri"]
        assert entry["result"]["sizeBytes"] == ej["status"]["result"]["sizeBytes"]
    assert sorted(e["name"] for e in st["jobs"]) == list(JOBS)
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds["Ready"] == "True" and conds["Complete"] == "True"
    assert conds["Reconciling"] == "False" and conds[AUDIT] == "True"

    # Both writers were busy on the same object.
    assert writer.written >= 10, writer.written
    statuses = [v.get("status") or {} for v in history.versions]
    operator_writes = sum(
        1
        for before, after in itertools.pairwise(statuses)
        if {k: v for k, v in before.items() if k != "conditions"}
        != {k: v for k, v in after.items() if k != "conditions"}
    )
    assert operator_writes >= 3, operator_writes
    # No version ever took a count back (a lost child update) or the other writer's
    # condition back to an older value (a write computed from a stale read).
    for before, after in itertools.pairwise(statuses):
        assert after.get("succeeded", 0) >= before.get("succeeded", 0), (before, after)
        assert audit_number(after) >= audit_number(before), (before, after)
    # The operator met the other writer's updates as 409s and recomputed from a fresh read.
    recomputed = log.count("status conflict (409)")
    assert recomputed >= 1, "the operator never met a conflict: the test proved nothing"
    print(
        f"writer: {writer.written} writes, {writer.conflicts} conflicts; "
        f"{len(history.versions)} Batch versions; operator recomputed {recomputed} times"
    )
