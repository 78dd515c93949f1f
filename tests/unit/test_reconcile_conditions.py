from audioextract.reconcile.conditions import (
    Lifecycle,
    find_condition,
    lifecycle_conditions,
    set_condition,
)


def test_transition_time_moves_only_when_status_flips():
    c1 = set_condition(None, "Ready", "False", "Working", "m", now="t1")
    c2 = set_condition(c1, "Ready", "False", "StillWorking", "m2", now="t2")
    ready = find_condition(c2, "Ready")
    assert (
        ready is not None and ready.last_transition_time == "t1" and ready.reason == "StillWorking"
    )
    c3 = set_condition(c2, "Ready", "True", "Done", "", now="t3")
    ready = find_condition(c3, "Ready")
    assert ready is not None and ready.last_transition_time == "t3"
    assert len(c3) == 1
    assert find_condition(c1, "Ready").last_transition_time == "t1"  # input untouched


def truth(conds):
    return {c.type: c.status for c in conds}


def test_kstatus_sets():
    prog = lifecycle_conditions(
        None, Lifecycle.PROGRESSING, "R", "m", now="t", observed_generation=3
    )
    assert truth(prog) == {
        "Ready": "False",
        "Reconciling": "True",
        "Stalled": "False",
        "Complete": "False",
        "Failed": "False",
        "Suspended": "False",
    }
    assert all(c.observed_generation == 3 for c in prog)
    ok = truth(lifecycle_conditions(prog, Lifecycle.SUCCEEDED, "R", "m", now="t"))
    assert ok["Ready"] == "True" and ok["Complete"] == "True" and ok["Reconciling"] == "False"
    bad = truth(lifecycle_conditions(prog, Lifecycle.FAILED, "R", "m", now="t"))
    assert bad["Stalled"] == "True" and bad["Failed"] == "True" and bad["Ready"] == "False"
    part = truth(lifecycle_conditions(prog, Lifecycle.PARTIALLY_SUCCEEDED, "R", "m", now="t"))
    assert part["Stalled"] == "True" and part["Complete"] == "True" and part["Failed"] == "False"
    sus = truth(lifecycle_conditions(prog, Lifecycle.SUSPENDED, "R", "m", now="t"))
    assert sus["Suspended"] == "True" and sus["Reconciling"] == "False"
