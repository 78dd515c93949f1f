from hypothesis import given
from hypothesis import strategies as st

from audioextract.api.constants import BatchPhase, ErrorCode, JobPhase
from audioextract.api.spec import BatchSpec
from audioextract.api.status import BatchStatus, JobError
from audioextract.reconcile.conditions import find_condition
from audioextract.reconcile.rollup import (
    ChildSnapshot,
    invalid_spec_status,
    rollup,
    to_cancel,
    to_retry,
)
from tests.support.builders import job_result

RESULT = job_result(uri="s3://b/k.mp3", size_bytes=10, duration_seconds=1.0, sha256="0" * 64)
ERROR = JobError(code=ErrorCode.DECODE_FAILED, message="bad input " * 100, retryable=False)


def make_spec(n, **extra):
    return BatchSpec.model_validate(
        {
            "jobs": [{"name": f"j{i}", "source": {"url": "https://e.com/a.mp4"}} for i in range(n)],
            **extra,
        }
    )


def snap(i, phase):
    return ChildSnapshot(
        key=f"j{i}",
        name=f"b-j{i}",
        phase=phase,
        result=RESULT if phase == JobPhase.SUCCEEDED else None,
        error=ERROR if phase == JobPhase.FAILED else None,
        start_time=f"2026-01-01T00:00:0{i % 10}Z" if phase not in (None, JobPhase.QUEUED) else None,
        completion_time="2026-01-01T00:01:00Z"
        if phase in (JobPhase.SUCCEEDED, JobPhase.FAILED)
        else None,
    )


PHASES = st.sampled_from(
    [None, JobPhase.QUEUED, JobPhase.RUNNING, JobPhase.SUCCEEDED, JobPhase.FAILED]
)


@given(
    st.lists(PHASES, min_size=1, max_size=30),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 5)),
)
def test_counts_add_to_total_and_phase_rules(phases, suspend, max_failed):
    extra: dict[str, object] = {"suspend": suspend}
    if max_failed is not None:
        extra["failurePolicy"] = {"maxFailedJobs": max_failed}
    spec = make_spec(len(phases), **extra)
    children = [snap(i, p) for i, p in enumerate(phases)]
    status = rollup(spec, children, previous=None, generation=7, now="2026-01-01T00:02:00Z")
    assert (
        status.queued + status.running + status.succeeded + status.failed
        == status.total
        == len(phases)
    )
    assert status.observed_generation == 7
    assert len(status.jobs) == len(phases)
    budget = max_failed is not None and status.failed > max_failed
    finished = status.succeeded + status.failed == status.total
    if budget and status.running == 0:
        assert status.phase == BatchPhase.FAILED
    elif finished and status.failed == 0:
        assert status.phase == BatchPhase.SUCCEEDED
    elif finished and status.succeeded == 0:
        assert status.phase == BatchPhase.FAILED
    elif finished:
        assert status.phase == BatchPhase.PARTIALLY_SUCCEEDED
    elif suspend:
        assert status.phase == BatchPhase.SUSPENDED
    elif status.queued == status.total:
        assert status.phase == BatchPhase.QUEUED
    else:
        assert status.phase == BatchPhase.RUNNING
    final = status.phase in (
        BatchPhase.SUCCEEDED,
        BatchPhase.FAILED,
        BatchPhase.PARTIALLY_SUCCEEDED,
    )
    assert (status.completion_time is not None) == final
    types = {c.type: c.status for c in status.conditions}
    assert types["Reconciling"] == (
        "True" if status.phase in (BatchPhase.QUEUED, BatchPhase.RUNNING) else "False"
    )
    assert types["Ready"] == ("True" if status.phase == BatchPhase.SUCCEEDED else "False")
    assert types["Stalled"] == (
        "True" if status.phase in (BatchPhase.FAILED, BatchPhase.PARTIALLY_SUCCEEDED) else "False"
    )
    for entry in status.jobs:
        assert entry.error is None or len(entry.error.message) <= 256


def test_partial_success_names_first_failed_job():
    spec = make_spec(3)
    children = [snap(0, JobPhase.SUCCEEDED), snap(1, JobPhase.FAILED), snap(2, JobPhase.SUCCEEDED)]
    status = rollup(spec, children, previous=None, generation=1, now="2026-01-01T00:02:00Z")
    assert (status.phase, status.succeeded, status.failed, status.total) == (
        BatchPhase.PARTIALLY_SUCCEEDED,
        2,
        1,
        3,
    )
    stalled = find_condition(status.conditions, "Stalled")
    assert (
        stalled.status == "True" and "'j1'" in stalled.message and "DecodeFailed" in stalled.message
    )
    assert (
        status.jobs[0].result is not None
        and status.jobs[0].result.dump()
        == {"uri": "s3://b/k.mp3", "sizeBytes": 10, "durationSeconds": 1.0, "sha256": "0" * 64}
        and status.jobs[0].error is None
        and status.jobs[1].result is None
        and status.jobs[1].error.code == ErrorCode.DECODE_FAILED
    )
    assert status.completion_time == "2026-01-01T00:01:00Z"
    assert status.start_time == "2026-01-01T00:00:00Z"


def test_rollup_is_stable_and_keeps_transition_times():
    spec = make_spec(2)
    children = [snap(0, JobPhase.RUNNING), snap(1, None)]
    first = rollup(spec, children, previous=None, generation=1, now="t1")
    again = rollup(spec, children, previous=first, generation=1, now="t2")
    assert again == first


def test_retry_reopens_and_keeps_carried_fields():
    spec = make_spec(2)
    prev = rollup(
        spec,
        [snap(0, JobPhase.SUCCEEDED), snap(1, JobPhase.FAILED)],
        previous=None,
        generation=1,
        now="t1",
    )
    prev = prev.model_copy(update={"retry_token": "r1"})
    assert [c.key for c in to_retry([snap(0, JobPhase.SUCCEEDED), snap(1, JobPhase.FAILED)])] == [
        "j1"
    ]
    status = rollup(
        spec,
        [snap(0, JobPhase.SUCCEEDED), snap(1, JobPhase.QUEUED)],
        previous=prev,
        generation=1,
        now="t2",
    )
    assert (
        status.phase == BatchPhase.RUNNING
        and status.completion_time is None
        and status.retry_token == "r1"
    )


def test_failure_policy_cancels_queued():
    spec = make_spec(3, failurePolicy={"maxFailedJobs": 0})
    children = [snap(0, JobPhase.FAILED), snap(1, JobPhase.QUEUED), snap(2, None)]
    assert [c.key for c in to_cancel(spec, children)] == ["j1", "j2"]
    status = rollup(spec, children, previous=None, generation=1, now="t")
    assert status.phase == BatchPhase.FAILED
    assert to_cancel(make_spec(3), children) == []


def test_invalid_spec_status():
    status = invalid_spec_status(
        BatchStatus(), "jobs[0].source: exactly one", generation=2, now="t"
    )
    assert status.phase == BatchPhase.FAILED and status.observed_generation == 2
    cond = find_condition(status.conditions, "Stalled")
    assert cond.reason == "InvalidSpec" and "jobs[0].source" in cond.message
