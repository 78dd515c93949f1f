from hypothesis import given
from hypothesis import strategies as st

from audioextract.api.constants import Priority
from audioextract.reconcile.admission import Active, BatchLimit, Candidate, admit


def cand(name, priority=Priority.NORMAL, created="2026-01-01T00:00:00Z", batch="ns/b", kueue=False):
    return Candidate(
        namespace="ns", name=name, priority=priority, created=created, batch=batch, kueue=kueue
    )


def test_order_priority_then_age_then_name():
    queued = [
        cand("c", Priority.LOW, "2026-01-01T00:00:00Z"),
        cand("b", Priority.NORMAL, "2026-01-01T00:00:02Z"),
        cand("a", Priority.NORMAL, "2026-01-01T00:00:01Z"),
        cand("z", Priority.HIGH, "2026-01-01T00:00:09Z"),
        cand("y", Priority.NORMAL, "2026-01-01T00:00:01Z"),
    ]
    chosen = admit(queued, [], {"ns/b": BatchLimit()}, None)
    assert [c.name for c in chosen] == ["z", "a", "y", "b", "c"]


def test_global_cap_counts_running_jobs():
    queued = [cand(str(i)) for i in range(5)]
    chosen = admit(queued, [Active("ns/b")] * 2, {"ns/b": BatchLimit()}, 3)
    assert len(chosen) == 1


def test_parallelism_skips_full_batch_without_blocking_others():
    queued = [
        cand("a1", created="2026-01-01T00:00:00Z", batch="ns/a"),
        cand("a2", created="2026-01-01T00:00:01Z", batch="ns/a"),
        cand("b1", created="2026-01-01T00:00:02Z", batch="ns/b"),
    ]
    limits = {"ns/a": BatchLimit(parallelism=1), "ns/b": BatchLimit(parallelism=1)}
    assert [c.name for c in admit(queued, [], limits, 10)] == ["a1", "b1"]
    assert [c.name for c in admit(queued, [Active("ns/a")], limits, 10)] == ["b1"]


def test_suspended_and_unknown_batches_admit_nothing():
    queued = [cand("a", batch="ns/a"), cand("b", batch="ns/unknown"), cand("s", batch=None)]
    chosen = admit(queued, [], {"ns/a": BatchLimit(suspended=True)}, None)
    assert [c.name for c in chosen] == ["s"]


def test_kueue_jobs_bypass_global_cap_but_not_parallelism():
    queued = [cand("k1", kueue=True), cand("k2", kueue=True), cand("n")]
    chosen = admit(queued, [Active(None)], {"ns/b": BatchLimit(parallelism=2)}, 1)
    assert [c.name for c in chosen] == ["k1", "k2"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ns/a", "ns/b", None]),
            st.sampled_from(list(Priority)),
            st.integers(0, 50),
        ),
        max_size=40,
    ),
    st.lists(st.sampled_from(["ns/a", "ns/b", None]), max_size=10),
    st.integers(0, 12),
    st.integers(1, 5),
)
def test_caps_never_exceeded(items, running, cap, par):
    queued = [
        cand(f"j{i}", prio, f"2026-01-01T00:{age:02d}:00Z", batch)
        for i, (batch, prio, age) in enumerate(items)
    ]
    limits = {"ns/a": BatchLimit(parallelism=par), "ns/b": BatchLimit(parallelism=par)}
    active = [Active(b) for b in running]
    chosen = admit(queued, active, limits, cap)
    assert len(chosen) + len(active) <= max(cap, len(active))
    for b in ("ns/a", "ns/b"):
        now = sum(1 for c in chosen if c.batch == b) + sum(1 for a in active if a.batch == b)
        assert now <= max(par, sum(1 for a in active if a.batch == b))
