"""The Batch status budget (reconcile/budget.py): what is cut, in which order, and said so."""

from hypothesis import given
from hypothesis import strategies as st

from audioextract.api.constants import ErrorCode, JobPhase
from audioextract.api.status import BatchStatus, EntryResult, JobEntry, JobError, WebhookStatus
from audioextract.reconcile.budget import (
    CONDITION_ROOM,
    SET_ELEMENT_OVERHEAD,
    STATUS_OVERHEAD,
    budgeted_bytes,
    fit_status,
    json_bytes,
    listing_command,
)
from audioextract.reconcile.conditions import STATUS_TRUNCATED, find_condition
from audioextract.reconcile.rollup import REASON_STATUS_FITS, REASON_STATUS_TRUNCATED

NOW = "2026-12-02T08:00:00Z"


def entry(i: int, failed: bool = False) -> JobEntry:
    if failed:
        return JobEntry(
            name=f"j{i}",
            extraction_job=f"b-j{i}",
            phase=JobPhase.FAILED,
            error=JobError(code=ErrorCode.DECODE_FAILED, message="m" * 200, retryable=False),
        )
    return JobEntry(
        name=f"j{i}",
        extraction_job=f"b-j{i}",
        phase=JobPhase.SUCCEEDED,
        result=EntryResult(
            uri=f"s3://out/{i}/" + "x" * 300, size_bytes=1, duration_seconds=1.0, sha256="0" * 64
        ),
    )


def status(n: int, failed_every: int = 0) -> BatchStatus:
    return BatchStatus(
        phase="Running",
        total=n,
        jobs=[entry(i, bool(failed_every) and i % failed_every == 0) for i in range(n)],
        observed_generation=1,
    )


def stored(st_: BatchStatus, other: int) -> int:
    """The stored object's size as fit_status budgets it."""
    return budgeted_bytes(st_, other)


def fit(st_: BatchStatus, other: int, budget: int) -> BatchStatus:
    return fit_status(st_, other, namespace="ns", batch_name="b", now=NOW, budget=budget)


def test_a_status_that_fits_is_returned_unchanged():
    st_ = status(10)
    assert fit(st_, 1000, stored(st_, 1000)) is st_


def test_results_are_left_out_from_the_last_entry_backwards_and_the_condition_says_so():
    st_ = status(10)
    budget = stored(st_, 1000) - 1500
    out = fit(st_, 1000, budget)
    assert out.jobs is not None and len(out.jobs) == 10
    cut = [e.result is None for e in out.jobs]
    # A prefix keeps its results; the tail lost them: about 400 bytes per result.
    assert cut == sorted(cut) and 4 <= sum(cut) <= 7
    assert [e.phase for e in out.jobs] == [JobPhase.SUCCEEDED] * 10
    assert stored(out, 1000) <= budget
    cond = find_condition(out.conditions, STATUS_TRUNCATED)
    assert cond is not None and cond.status == "True" and cond.reason == REASON_STATUS_TRUNCATED
    assert f"the result of {sum(cut)} entries" in cond.message
    assert "kubectl get ej -n ns -l audioextract.dev/batch=b" in cond.message
    assert out.total == 10 and out.phase == "Running"


def test_error_messages_go_after_results_then_whole_entries():
    st_ = status(20, failed_every=2)
    other = 5000
    without_results = st_.model_copy(
        update={"jobs": [e.model_copy(update={"result": None}) for e in st_.jobs or ()]}
    )
    # Less than the entries without any result: error messages must go too.
    budget = stored(without_results, other) + CONDITION_ROOM - 600
    out = fit(st_, other, budget)
    assert out.jobs is not None and len(out.jobs) == 20
    assert all(e.result is None for e in out.jobs)
    assert any(e.error is not None and e.error.message == "" for e in out.jobs)
    assert all(e.error is not None and e.error.code for e in out.jobs[::2])
    assert stored(out, other) <= budget
    # A budget smaller than names and phases alone: the last entries go.
    tiny = fit(st_, other, stored(BatchStatus(phase="Running", total=20), other) + 2000)
    assert tiny.jobs is not None and 0 < len(tiny.jobs) < 20
    cond = find_condition(tiny.conditions, STATUS_TRUNCATED)
    assert cond is not None and f"the last {20 - len(tiny.jobs)} entries" in cond.message


def test_no_room_at_all_leaves_counts_phase_and_conditions():
    st_ = status(5)
    out = fit(st_, 10_000, 5_000)
    assert out.jobs is None and out.total == 5 and out.phase == "Running"
    assert find_condition(out.conditions, STATUS_TRUNCATED) is not None


def test_the_condition_turns_false_once_the_status_fits_again():
    st_ = status(10)
    cut = fit(st_, 1000, stored(st_, 1000) - 1500)
    whole = st_.model_copy(update={"conditions": cut.conditions})
    again = fit(whole, 1000, stored(whole, 1000) + 10)
    cond = find_condition(again.conditions, STATUS_TRUNCATED)
    assert cond is not None and (cond.status, cond.reason) == ("False", REASON_STATUS_FITS)
    assert again.jobs == st_.jobs


def test_listing_command_uses_the_label_value_of_a_long_name():
    name = "a." * 100 + "b"
    command = listing_command("media", name)
    value = command.rsplit("=", 1)[1]
    assert command.startswith("kubectl get ej -n media -l audioextract.dev/batch=")
    assert len(value) <= 63 and "." not in value


@given(st.integers(0, 40), st.integers(0, 5), st.integers(0, 30_000))
def test_the_result_never_exceeds_the_budget_when_counts_fit(n, failed_every, budget_less):
    st_ = status(n, failed_every)
    other = 2000
    budget = max(stored(st_, other) - budget_less, stored(BatchStatus(), other) + 3 * 1024)
    out = fit(st_, other, budget)
    assert stored(out, other) <= budget
    # Only the tail is touched: a kept entry is the original or a cut-down copy of it.
    for before, after in zip(st_.jobs or (), out.jobs or (), strict=False):
        assert (after.name, after.phase) == (before.name, before.phase)


def test_settled_webhook_ids_count_twice_status_and_the_writers_managed_fields():
    ids = [f"msg_{i:032x}" for i in range(1001)]
    st_ = BatchStatus(phase="Running", total=0, webhook=WebhookStatus(settled=ids))
    plain = 5000 + STATUS_OVERHEAD + json_bytes(st_.dump())
    assert budgeted_bytes(st_, 5000) == plain + sum(len(i) + SET_ELEMENT_OVERHEAD for i in ids)
