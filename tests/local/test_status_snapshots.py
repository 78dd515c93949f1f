"""The runner keeps each job's rollup snapshot until the job changes; the status is the same.

Every status change rolls up all the jobs of a Batch. The runner keeps a job's snapshot
(and with it the job's status entry) while the job's fields stay as they are, so only
changed jobs are converted again. These tests hold that against building every
snapshot afresh, as the operator does, through random sequences of changes.
"""

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from audioextract.api.constants import ErrorCode, JobPhase
from audioextract.local.load import from_object
from audioextract.local.plan import build_plan
from audioextract.local.state import JobState, batch_status
from audioextract.reconcile.observe import make_error
from audioextract.reconcile.rollup import ChildSnapshot, rollup
from tests.support.builders import batch, batch_job, job_result

JOBS = 4
NOW = "2026-12-02T08:00:00Z"
# What the runner sets on a job as it runs, and values it sets them to.
CHANGES: dict[str, list[Any]] = {
    "phase": [JobPhase.QUEUED, JobPhase.RUNNING, JobPhase.SUCCEEDED, JobPhase.FAILED],
    "attempts": [1, 2, 3],
    "start_time": [None, "2026-12-02T07:00:00Z", "2026-12-02T07:00:05Z"],
    "completion_time": [None, "2026-12-02T07:01:00Z"],
    "result": [None, job_result(uri="volume://out/a.mp3"), job_result(uri="volume://out/b.mp3")],
    "error": [
        None,
        make_error(ErrorCode.DECODE_FAILED, "bad input " * 40),
        make_error(ErrorCode.TIMEOUT, "too slow"),
    ],
    "step": [None, "encode"],
    "step_percent": [None, 50.0],
}
CHANGE = st.tuples(
    st.integers(0, JOBS - 1),
    st.sampled_from(sorted(CHANGES)),
    st.integers(0, 2),
)


def fresh(state: JobState) -> ChildSnapshot:
    """A snapshot built from the state's fields now, as the operator builds its own."""
    return ChildSnapshot(
        key=state.job.key,
        name=state.job.name,
        phase=state.phase,
        result=state.result,
        error=state.error,
        start_time=state.start_time,
        completion_time=state.completion_time,
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(CHANGE, max_size=4), min_size=1, max_size=12))
def test_kept_snapshots_roll_up_to_the_status_fresh_ones_give(
    tmp_path_factory: Any, rounds: list[list[tuple[int, str, int]]]
) -> None:
    tmp: Path = tmp_path_factory.mktemp("plan")
    plan = build_plan(
        from_object(batch(jobs=[batch_job(f"j{i}") for i in range(JOBS)])), {}, tmp / "out", None
    )
    assert plan.loaded.batch is not None
    states = [JobState(job) for job in plan.jobs]
    previous = None
    for changes in rounds:  # a round: some fields change, then a status is computed
        for index, name, pick in changes:
            values = CHANGES[name]
            setattr(states[index], name, values[pick % len(values)])
        for state in states:
            assert state.snapshot() == fresh(state)
        kept = batch_status(plan, states, previous, NOW)
        expected = rollup(
            plan.loaded.batch,
            [fresh(s) for s in states],
            previous=previous,
            generation=1,
            now=NOW,
        )
        assert kept == expected
        previous = kept


def test_a_snapshot_is_kept_until_a_field_it_holds_changes(tmp_path: Path) -> None:
    plan = build_plan(from_object(batch(jobs=[batch_job("j0")])), {}, tmp_path / "out", None)
    state = JobState(plan.jobs[0])
    first = state.snapshot()
    assert state.snapshot() is first
    assert first.entry is first.entry  # the status entry is built once per snapshot
    state.step, state.step_percent, state.attempts = "encode", 50.0, 1  # not in a snapshot
    assert state.snapshot() is first
    state.phase = JobPhase.RUNNING
    second = state.snapshot()
    assert second is not first
    assert second.phase == JobPhase.RUNNING and second.entry.phase == JobPhase.RUNNING
