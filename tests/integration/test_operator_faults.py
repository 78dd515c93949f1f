"""The operator against the kmock emulator: API errors, hanging calls, dropped watches.

Each test runs the real ``audio-extract operator`` (a subprocess, ``--standalone``,
namespace ``default``) against a fresh emulator (tests/support/kube_emulator.py) and
asserts what the operator ends up writing there, that it is still running, and that
it stops cleanly. Real API semantics are the envtest tier's job; here only resilience.

The operator's resync timer is 300 s (tests/support/operator_run.py), so every reconcile
that heals a fault was started by a watch event or by the operator's own retry of a
failed pass, never by the timer.
"""

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.kube_emulator import GROUP_VERSION, NAMESPACE, EmulatorThread, Fault, Served
from tests.support.operator_run import OperatorRun
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(60)

BATCHES = f"{GROUP_VERSION}/batches"
EJS = f"{GROUP_VERSION}/extractionjobs"
JOBS = "batch/v1/jobs"
API = f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}"
JOBS_API = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
CONVERGE = 20  # seconds; a healthy pass takes well under one


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    em = EmulatorThread().start()
    try:
        yield em
    finally:
        em.stop()


@pytest.fixture
def operator(emulator: EmulatorThread) -> Iterator[OperatorRun]:
    with OperatorRun(emulator) as op:
        # Ready once kopf watches all three resources.
        wait_for(
            lambda: (
                all(emulator.call(lambda em, p=p: em.open_watches(p)) for p in (BATCHES, EJS, JOBS))
                or not op.alive()
            ),
            timeout=20,
            what="the operator's watches",
        )
        assert op.alive(), op.log()
        yield op
        assert op.alive(), f"the operator exited:\n{op.log()[-5000:]}"
        assert op.stop() == 0, f"the operator did not stop cleanly:\n{op.log()[-5000:]}"


def batch(name: str, *jobs: str) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Batch",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "jobs": [
                {"name": j, "source": {"url": f"https://cdn.example.com/{j}.mp4"}} for j in jobs
            ]
        },
    }


def by_name(em: EmulatorThread, plural: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in em.stored(plural)}


def jobs_started(em: EmulatorThread) -> None:
    """Stand in for the Job controller and kubelet: each Job reports one ready Pod.

    The operator records a run as Running once its Job shows a ready worker Pod
    (docs/operator.md, "Write budget"); the emulator runs no controllers.
    """
    for job in em.stored(JOBS):
        if not (job.get("status") or {}).get("ready"):
            em.patch_status(JOBS, job["metadata"]["name"], {"active": 1, "ready": 1})


def reconciled(em: EmulatorThread, name: str, *jobs: str) -> bool:
    """The Batch's children exist and run, each with its Job, and the rollup is written."""
    jobs_started(em)
    b = by_name(em, BATCHES).get(name)
    if b is None:
        return False
    status = b.get("status") or {}
    if status.get("phase") != "Running" or status.get("running") != len(jobs):
        return False
    ejs, k8s_jobs = by_name(em, EJS), by_name(em, JOBS)
    for j in jobs:
        ej = ejs.get(f"{name}-{j}")
        if ej is None or (ej.get("status") or {}).get("phase") != "Running":
            return False
        if ej["status"].get("jobName") != f"{name}-{j}-1" or f"{name}-{j}-1" not in k8s_jobs:
            return False
    return True


def wait_reconciled(em: EmulatorThread, op: OperatorRun, name: str, *jobs: str) -> None:
    wait_for(
        lambda: reconciled(em, name, *jobs) or not op.alive(),
        timeout=CONVERGE,
        what=f"Batch {name} reconciled",
    )
    assert op.alive(), f"the operator exited:\n{op.log()[-5000:]}"


def operator_calls(log: list[Served], method: str, path: str) -> list[Served]:
    return [
        s for s in log if s.agent.startswith("OpenAPI") and s.method == method and s.path == path
    ]


def assert_created_once(em: EmulatorThread, name: str, *jobs: str) -> None:
    """Every child and every Job exists exactly once and was POSTed successfully once."""
    log = em.served()
    ejs = [o for o in em.stored(EJS) if o["metadata"]["name"].startswith(f"{name}-")]
    assert sorted(o["metadata"]["name"] for o in ejs) == sorted(f"{name}-{j}" for j in jobs)
    k8s_jobs = [o for o in em.stored(JOBS) if o["metadata"]["name"].startswith(f"{name}-")]
    assert sorted(o["metadata"]["name"] for o in k8s_jobs) == sorted(f"{name}-{j}-1" for j in jobs)
    # One successful create per object, and no create that ran into an existing one (409).
    children = [f"{name}-{j}" for j in jobs]
    runs = [f"{name}-{j}-1" for j in jobs]
    for collection, names in ((f"{API}/extractionjobs", children), (JOBS_API, runs)):
        posts = [
            (s.name, s.status)
            for s in operator_calls(log, "POST", collection)
            if not s.faulted and s.name in names
        ]
        assert sorted(posts) == sorted((n, 201) for n in names), posts


def test_transient_errors_are_retried_until_converged(
    emulator: EmulatorThread, operator: OperatorRun
) -> None:
    faults = [
        # The operator reads from its watch-fed cache and lists nothing; its Batch status
        # write meets a conflict instead, and is recomputed and written again.
        Fault("PATCH", f"{API}/batches/[^/]+/status$", status=409, reason="Conflict", times=1),
        Fault("POST", f"{API}/extractionjobs$", status=500, reason="InternalError", times=2),
        Fault("POST", f"{JOBS_API}$", status=429, reason="TooManyRequests", retry_after=1, times=2),
        Fault(
            "PATCH",
            f"{API}/extractionjobs/[^/]+/status$",
            status=503,
            reason="Unavailable",
            times=2,
        ),
        Fault("PATCH", f"{API}/batches/[^/]+/status$", status=500, times=1),
    ]
    for fault in faults:
        emulator.add_fault(fault)
    emulator.create(BATCHES, batch("ep1", "intro", "interview", "outro"))

    wait_reconciled(emulator, operator, "ep1", "intro", "interview", "outro")

    assert [f.hits for f in faults] == [f.times for f in faults], "every fault was hit"
    assert_created_once(emulator, "ep1", "intro", "interview", "outro")
    # After a 429 with Retry-After: 1 the operator waits before it tries that create
    # again (other creates already in flight at that moment are not recalled).
    log = emulator.served()
    job_posts = operator_calls(log, "POST", JOBS_API)
    throttled = [p for p in job_posts if p.status == 429]
    assert len(throttled) == 2
    for before in throttled:
        retry = next(p for p in job_posts if p.name == before.name and p.at > before.at)
        assert retry.at - before.at >= 0.9, "Retry-After was not honoured"
    # After the 409 the status was written again (recomputed, not given up), and the
    # operator's only reads were its one list of each kind before its first decision:
    # everything else comes from the watch-fed cache.
    patches = operator_calls(log, "PATCH", f"{API}/batches/ep1/status")
    assert [p.status for p in patches][:1] == [409] and patches[-1].status == 200
    ours = [s for s in log if s.agent.startswith("OpenAPI")]
    gets = [s for s in ours if s.method == "GET"]
    assert sorted(s.path.rsplit("/", 1)[-1] for s in gets) == [
        "batches",
        "extractionjobs",
        "jobs",
        "pods",
    ], gets
    first_write = min(s.at for s in ours if s.method != "GET")
    assert all(s.at < first_write for s in gets)


def test_hanging_calls_time_out_and_later_passes_reconcile(
    emulator: EmulatorThread, operator: OperatorRun
) -> None:
    # Two writes that never answer (until the test ends): the operator's client timeout
    # (1 s here) must give up on them, or their workers would stall for good.
    hang_list = emulator.add_fault(
        Fault("PATCH", f"{API}/extractionjobs/slow-a/status$", delay=600, times=1)
    )
    hang_patch = emulator.add_fault(
        Fault("PATCH", f"{API}/batches/slow/status$", delay=600, times=1)
    )
    emulator.create(BATCHES, batch("slow", "a", "b"))

    wait_reconciled(emulator, operator, "slow", "a", "b")
    assert (hang_list.hits, hang_patch.hits) == (1, 1)

    # Both held requests are still open on the emulator's side; the loop goes on anyway.
    emulator.create(BATCHES, batch("later", "c"))
    wait_reconciled(emulator, operator, "later", "c")
    assert_created_once(emulator, "slow", "a", "b")
    assert_created_once(emulator, "later", "c")


@pytest.mark.parametrize("gone", [True, False], ids=["410-gone", "closed"])
def test_watch_dropped_then_a_new_batch_is_still_seen(
    emulator: EmulatorThread, operator: OperatorRun, gone: bool
) -> None:
    emulator.create(BATCHES, batch("before", "a"))
    wait_reconciled(emulator, operator, "before", "a")

    kopf_lists_before = len(
        [s for s in emulator.served() if s.agent.startswith("kopf") and s.path == f"{API}/batches"]
    )
    dropped = {
        p: emulator.run(lambda em, p=p: em.drop_watches(p, gone=gone)) for p in (BATCHES, EJS, JOBS)
    }
    assert all(dropped.values()), f"no open watch to drop: {dropped}"

    def rewatched() -> bool:
        kopf = [
            s
            for s in emulator.served()
            if s.agent.startswith("kopf") and s.path == f"{API}/batches"
        ]
        # 410: kopf lists again, then watches; closed: kopf watches again (from the last version).
        return len(kopf) > kopf_lists_before and emulator.call(lambda em: em.open_watches(BATCHES))

    wait_for(rewatched, timeout=10, what="kopf watching Batches again")

    emulator.create(BATCHES, batch("after", "b", "c"))
    wait_reconciled(emulator, operator, "after", "b", "c")
    assert_created_once(emulator, "after", "b", "c")


def test_one_batch_failing_forever_does_not_stop_the_others(
    emulator: EmulatorThread, operator: OperatorRun
) -> None:
    broken = emulator.add_fault(
        Fault("PATCH", f"{API}/batches/broken/status$", status=422, reason="Invalid", times=None)
    )
    emulator.create(BATCHES, batch("broken", "x"))
    emulator.create(BATCHES, batch("healthy", "y", "z"))

    wait_reconciled(emulator, operator, "healthy", "y", "z")
    # The broken Batch's children still run; only its own status cannot be written.
    wait_for(
        lambda: (
            (by_name(emulator, EJS).get("broken-x") or {}).get("status", {}).get("phase")
            == "Running"
        ),
        timeout=CONVERGE,
        what="the broken Batch's child running",
    )
    assert "status" not in by_name(emulator, BATCHES)["broken"]

    # Nothing else happens now, yet the operator keeps retrying the write (its own
    # backoff: 0.5 s, 1 s, 2 s, ...), and not in a hot loop.
    wait_for(lambda: broken.hits >= 3, timeout=CONVERGE, what="the failing write retried")
    first = broken.hits
    time.sleep(2)
    assert broken.hits - first <= 4, f"{broken.hits - first} retries in 2 s: a hot loop"

    # A Batch created while the other keeps failing is reconciled as usual, at once.
    emulator.create(BATCHES, batch("newcomer", "w"))
    wait_reconciled(emulator, operator, "newcomer", "w")
    assert_created_once(emulator, "healthy", "y", "z")
    assert_created_once(emulator, "newcomer", "w")


def patch_as_user(em: EmulatorThread, path: str, body: dict[str, Any]) -> None:
    """A merge patch by another client (the Job controller, here), not faulted."""
    req = urllib.request.Request(
        f"{em.url}{path}",
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"Content-Type": "application/merge-patch+json", "User-Agent": "test-user"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def test_watch_expiry_mid_run_heals(emulator: EmulatorThread, operator: OperatorRun) -> None:
    emulator.create(BATCHES, batch("mid", "a", "b"))
    wait_reconciled(emulator, operator, "mid", "a", "b")
    lists_before = len(
        [s for s in emulator.served() if s.agent.startswith("kopf") and s.path == JOBS_API]
    )
    dropped = [
        emulator.run(lambda em, p=p: em.drop_watches(p, gone=True)) for p in (BATCHES, EJS, JOBS)
    ]
    assert all(dropped), dropped
    # Meanwhile the Job of "a" fails for good: its deadline passed.
    failed = {
        "type": "Failed",
        "status": "True",
        "reason": "DeadlineExceeded",
        "message": "Job was active longer than specified deadline",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    patch_as_user(emulator, f"{JOBS_API}/mid-a-1/status", {"status": {"conditions": [failed]}})

    def healed() -> bool:
        b = by_name(emulator, BATCHES)["mid"].get("status") or {}
        ej = by_name(emulator, EJS)["mid-a"].get("status") or {}
        return (
            (b.get("failed"), b.get("running")) == (1, 1)
            and (ej.get("error") or {}).get("code") == "Timeout"
        ) or not operator.alive()

    wait_for(healed, timeout=CONVERGE, what="the failed Job recorded after the 410")
    assert operator.alive(), operator.log()[-5000:]
    # kopf listed the Jobs again after the 410 (the cache was rebuilt, not patched up).
    lists_after = [
        s for s in emulator.served() if s.agent.startswith("kopf") and s.path == JOBS_API
    ]
    assert len(lists_after) > lists_before
    # Nothing created twice; the failed run's Job stays for its ttlSecondsAfterFinished
    # (Kubernetes' TTL controller, which this emulator does not run): the operator
    # deletes no finished Job.
    posts = [
        (s.name, s.status) for s in operator_calls(emulator.served(), "POST", JOBS_API) if s.name
    ]
    assert sorted(posts) == [("mid-a-1", 201), ("mid-b-1", 201)], posts
    assert sorted(by_name(emulator, JOBS)) == ["mid-a-1", "mid-b-1"]
    deletes = [
        s for s in emulator.served() if s.agent.startswith("OpenAPI") and s.method == "DELETE"
    ]
    assert deletes == [], deletes
