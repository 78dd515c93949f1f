"""The controller at scale on the real control plane, with an instant fake kubelet.

Every worker Pod succeeds at once (tests/support/instant_kubelet.py), so what is
exercised is the operator and the API server: the fan-out of the largest Batch the
API accepts, admission under a global cap while creates are still in flight, and a
SIGKILL in the middle of the fan-out. What is counted is what the API server saw
(a watch on the namespace's Jobs records every Job ever created and, in the server's
order, how many were unfinished at once), never the operator's own account.
"""

from collections.abc import Iterator
from typing import Any

import kubernetes.client
import kubernetes.watch
import pytest

from audioextract.api.constants import MAX_JOBS_PER_BATCH
from audioextract.reconcile.names import LABEL_EXTRACTION_JOB, MANAGED_BY
from tests.envtest.operator_helpers import GROUP, JOB_SELECTOR, VERSION, batch_manifest, get
from tests.envtest.operator_process import OperatorProcess
from tests.support.controlplane import ControlPlane
from tests.support.instant_kubelet import InstantKubelet, result_for
from tests.support.wait import wait_for
from tests.support.watch_thread import WatchThread

ENV = {
    "AUDIOEXTRACT_DEFAULT_DESTINATION": '{"s3": {"bucket": "audio", "prefix": "out"}}',
    # The resync is a safety net only: these runs must complete on watch events alone.
    "AUDIOEXTRACT_RESYNC_SECONDS": "600",
}


class JobLedger(WatchThread):
    """Every Job of the namespace as the API server reports it, from one list + watch."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        super().__init__(cp)
        self.batch = kubernetes.client.BatchV1Api(self.api_client)
        self.namespace = namespace
        self.created: list[str] = []  # every ADDED Job, in order (a name twice: a duplicate)
        self.owners: dict[str, str] = {}
        self.unfinished: set[str] = set()
        self.max_unfinished = 0
        self.errors: list[str] = []

    @staticmethod
    def _finished(job: Any) -> bool:
        return any(
            c.type in ("Complete", "Failed") and c.status == "True"
            for c in (job.status.conditions or [])
        )

    def _run(self) -> None:
        listed = self.batch.list_namespaced_job(self.namespace, label_selector=JOB_SELECTOR)
        assert not listed.items
        version = listed.metadata.resource_version
        while not self._stopped.is_set():
            try:
                for event in self._watch.stream(
                    self.batch.list_namespaced_job,
                    self.namespace,
                    label_selector=JOB_SELECTOR,
                    resource_version=version,
                    timeout_seconds=60,
                ):
                    job = event["object"]
                    version = job.metadata.resource_version
                    name = job.metadata.name
                    if event["type"] == "ADDED":
                        self.created.append(name)
                        self.owners[name] = next(
                            (r.name for r in job.metadata.owner_references or [] if r.controller),
                            "",
                        )
                    if (
                        event["type"] == "DELETED"
                        or self._finished(job)
                        or job.metadata.deletion_timestamp
                    ):
                        self.unfinished.discard(name)
                    else:
                        self.unfinished.add(name)
                    self.max_unfinished = max(self.max_unfinished, len(self.unfinished))
            except Exception as exc:
                if not self._stopped.is_set():
                    self.errors.append(repr(exc))
                    return


@pytest.fixture
def instant(controller_manager: ControlPlane, namespace: str) -> Iterator[InstantKubelet]:
    with InstantKubelet(controller_manager.new_api_client(), namespace) as kubelet:
        yield kubelet
    assert not kubelet.errors, kubelet.errors


def jobs(n: int) -> list[dict[str, Any]]:
    return [
        {"name": f"j{i:04d}", "source": {"url": f"https://media.example.com/{i}.mp4"}}
        for i in range(n)
    ]


def wait_final(custom: Any, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        b = get(custom, namespace, "batches", name)
        st = b.get("status") or {}
        return b if st.get("phase") in ("Succeeded", "Failed", "PartiallySucceeded") else None

    return wait_for(final, timeout=timeout, interval=0.5, what=f"Batch {name} final")


def assert_exact(batch: dict[str, Any], ledger: JobLedger, n: int, custom: Any) -> None:
    """All n succeeded, each entry the result of its one Job, one Job per child, run 1."""
    st = batch["status"]
    assert st["phase"] == "Succeeded", st.get("conditions")
    assert (st["total"], st["succeeded"], st["failed"], st["running"], st["queued"]) == (
        n, n, 0, 0, 0,
    )  # fmt: skip
    name = batch["metadata"]["name"]
    expected = {f"{name}-j{i:04d}-1" for i in range(n)}
    assert len(ledger.created) == n, f"{len(ledger.created) - n} duplicate or extra Jobs"
    assert set(ledger.created) == expected
    assert sorted(ledger.owners.values()) == sorted(j.removesuffix("-1") for j in expected)
    entries = {e["name"]: e for e in st["jobs"]}
    assert len(entries) == n
    for i in range(n):
        entry = entries[f"j{i:04d}"]
        want = result_for(f"{name}-j{i:04d}-1")
        assert entry["phase"] == "Succeeded"
        assert entry["result"] == {
            k: want[k] for k in ("uri", "sizeBytes", "durationSeconds", "sha256")
        }
    children = custom.list_namespaced_custom_object(
        GROUP, VERSION, batch["metadata"]["namespace"], "extractionjobs"
    )["items"]
    assert len(children) == n
    assert all(c["status"]["attempts"] == 1 for c in children)


@pytest.mark.timeout(900)
def test_largest_batch_completes_with_exact_counts_and_no_duplicate_job(
    controller_manager: ControlPlane,
    crds: list[str],
    namespace: str,
    instant: InstantKubelet,
    api_client: kubernetes.client.ApiClient,
) -> None:
    n = MAX_JOBS_PER_BATCH
    custom: Any = kubernetes.client.CustomObjectsApi(api_client)
    env = {**ENV, "AUDIOEXTRACT_MAX_CONCURRENT_JOBS": str(n)}
    with (
        JobLedger(controller_manager, namespace) as ledger,
        OperatorProcess(controller_manager, namespace, env) as op,
    ):
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "batches", batch_manifest("big", jobs(n))
        )
        batch = wait_final(custom, namespace, "big", timeout=600)
        op.assert_healthy()
    assert not ledger.errors, ledger.errors
    assert_exact(batch, ledger, n, custom)
    assert len(instant.completed) == n


@pytest.mark.timeout(600)
def test_global_cap_holds_while_creates_are_in_flight(
    controller_manager: ControlPlane,
    crds: list[str],
    namespace: str,
    instant: InstantKubelet,
    api_client: kubernetes.client.ApiClient,
) -> None:
    cap, n = 7, 120
    custom: Any = kubernetes.client.CustomObjectsApi(api_client)
    env = {**ENV, "AUDIOEXTRACT_MAX_CONCURRENT_JOBS": str(cap)}
    with (
        JobLedger(controller_manager, namespace) as ledger,
        OperatorProcess(controller_manager, namespace, env) as op,
    ):
        # Two Batches at once: admission is one decision across both.
        for name in ("capped-a", "capped-b"):
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "batches", batch_manifest(name, jobs(n // 2))
            )
        for name in ("capped-a", "capped-b"):
            wait_final(custom, namespace, name, timeout=600)
        op.assert_healthy()
    assert not ledger.errors, ledger.errors
    assert ledger.max_unfinished <= cap, ledger.max_unfinished
    # The cap was actually reached: otherwise the bound proved nothing.
    assert ledger.max_unfinished == cap, ledger.max_unfinished
    assert len(ledger.created) == len(set(ledger.created)) == n


@pytest.mark.timeout(600)
def test_sigkill_mid_fan_out_then_restart_loses_nothing_and_duplicates_nothing(
    controller_manager: ControlPlane,
    crds: list[str],
    namespace: str,
    instant: InstantKubelet,
    api_client: kubernetes.client.ApiClient,
) -> None:
    n = min(MAX_JOBS_PER_BATCH, 200)
    custom: Any = kubernetes.client.CustomObjectsApi(api_client)
    env = {**ENV, "AUDIOEXTRACT_MAX_CONCURRENT_JOBS": str(n)}
    with JobLedger(controller_manager, namespace) as ledger:
        first = OperatorProcess(controller_manager, namespace, env).start()
        try:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "batches", batch_manifest("crash", jobs(n))
            )
            # Kill once Jobs are being created: children and Jobs are both mid-way.
            wait_for(lambda: len(ledger.created) >= 5, timeout=120, interval=0.01, what="Jobs")
            first.kill()
        finally:
            first.stop()
        at_kill = len(ledger.created)
        with OperatorProcess(controller_manager, namespace, env) as second:
            batch = wait_final(custom, namespace, "crash", timeout=600)
            second.assert_healthy()
    assert not ledger.errors, ledger.errors
    print(f"Jobs created before the kill: {at_kill} of {n}")
    assert at_kill < n, "the kill came after the fan-out: the test proved nothing"
    assert_exact(batch, ledger, n, custom)


# What the operator writes for one Batch child, as (resource, subresource, verb) in the
# API server's apiserver_request_total. Nobody else writes these in this namespace's
# run: the Job controller writes jobs/status and Pods, the kubelet Pods' status, and
# no owner is deleted, so the garbage collector deletes nothing.
CHILD_WRITES = {
    ("extractionjobs", "", "POST"),
    ("extractionjobs", "status", "PATCH"),
    ("extractionjobs", "status", "PUT"),
    ("extractionjobs", "", "PATCH"),
    ("extractionjobs", "", "PUT"),
    ("secrets", "", "POST"),
    ("jobs", "", "POST"),
    ("jobs", "", "PATCH"),
    ("jobs", "", "DELETE"),
}
_WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE"}  # the metric's verb label


def api_writes(api_client: kubernetes.client.ApiClient) -> dict[tuple[str, str, str], float]:
    """apiserver_request_total summed over codes, by (resource, subresource, verb).

    Every request counts, refused ones (409) included: a retried write costs twice.
    """
    config = api_client.configuration
    headers = {"Authorization": config.get_api_key_with_prefix("authorization") or ""}
    resp = api_client.call_api("GET", f"{config.host}/metrics", header_params=headers)
    resp.read()
    assert resp.status == 200, resp.status
    totals: dict[tuple[str, str, str], float] = {}
    for line in resp.data.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
        labels = dict(
            part.split("=", 1) for part in labels_text.replace('"', "").split(",") if "=" in part
        )
        verb = labels.get("verb", "")
        if verb not in _WRITE_VERBS:
            continue
        key = (labels.get("resource", ""), labels.get("subresource", ""), verb)
        totals[key] = totals.get(key, 0.0) + float(value)
    return totals


@pytest.mark.timeout(600)
def test_each_batch_child_costs_at_most_five_api_writes(
    controller_manager: ControlPlane,
    crds: list[str],
    namespace: str,
    api_client: kubernetes.client.ApiClient,
) -> None:
    """The write budget of docs/operator.md, counted at the API server, Events included.

    Each worker Pod is reported running and ready until its ExtractionJob shows
    ``Running``, then succeeds: every child takes the long path (recorded Running, then
    final), the one a real worker takes.
    """
    n = 60
    custom: Any = kubernetes.client.CustomObjectsApi(api_client)
    core = kubernetes.client.CoreV1Api(api_client)
    batch_api = kubernetes.client.BatchV1Api(api_client)
    env = {**ENV, "AUDIOEXTRACT_MAX_CONCURRENT_JOBS": str(n)}
    # The metric counts the whole API server: let earlier tests' namespaces finish
    # terminating (the namespace controller deletes their Jobs) before counting.
    wait_for(
        lambda: not [ns for ns in core.list_namespace().items if ns.status.phase == "Terminating"],
        timeout=180,
        interval=0.5,
        what="no namespace terminating",
    )
    before = api_writes(api_client)

    def recorded_running(pod: dict[str, Any]) -> bool:
        # The Pod's ExtractionJob (its Job's owner, named by the Pod's labels).
        name = pod["metadata"]["labels"][LABEL_EXTRACTION_JOB]
        ej = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "extractionjobs", name)
        return bool((ej.get("status") or {}).get("phase") == "Running")

    kubelet = InstantKubelet(
        controller_manager.new_api_client(), namespace, threads=n, run_until=recorded_running
    )
    with kubelet, OperatorProcess(controller_manager, namespace, env) as op:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "batches", batch_manifest("frugal", jobs(n))
        )
        batch = wait_final(custom, namespace, "frugal", timeout=300)
        assert batch["status"]["succeeded"] == n, batch["status"]
        op.assert_healthy()
    assert not kubelet.errors, kubelet.errors
    # The finished Jobs stay for Kubernetes' TTL controller: the operator deletes none.
    finished = batch_api.list_namespaced_job(namespace, label_selector=JOB_SELECTOR).items
    assert len(finished) == n
    assert {j.spec.ttl_seconds_after_finished for j in finished} == {3600}
    after = api_writes(api_client)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in CHILD_WRITES}
    # Events the operator posted about the children (the Job controller's own Events
    # are about Jobs and are not the operator's writes).
    child_events = [
        e
        for e in core.list_namespaced_event(namespace).items
        if e.involved_object.kind == "ExtractionJob"
        and (e.reporting_component or (e.source.component if e.source else "")) == MANAGED_BY
    ]
    writes = sum(delta.values()) + len(child_events)
    print(f"writes for {n} children: {writes:.0f} ({writes / n:.2f} per child)")
    print({f"{r}/{s}:{v}" if s else f"{r}:{v}": c for (r, s, v), c in delta.items() if c})
    print(f"Events about children: {len(child_events)}")
    # The counted writes happened: a metric that stays at 0 would prove nothing.
    assert delta[("jobs", "", "POST")] == n
    assert delta[("jobs", "", "DELETE")] == 0
    assert delta[("extractionjobs", "", "POST")] == n
    assert delta[("extractionjobs", "status", "PATCH")] == 2 * n, "Running, then final"
    assert writes <= 5 * n, f"{writes / n:.2f} writes per child"
