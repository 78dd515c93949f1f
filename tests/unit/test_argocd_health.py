"""The Argo CD health checks, run by a real Lua 5.1 interpreter (lupa's Lua 5.1 runtime).

Argo CD evaluates health.lua with gopher-lua (Lua 5.1 semantics) and the object as the
global ``obj``; its own test (util/lua/health_test.go) runs every ``health_test.yaml``
case and compares the returned table with ``healthStatus``. This does the same, and
checks that the test objects are real: their statuses validate against the operator's
status models, and every phase of both kinds is covered.
"""

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from audioextract.api.constants import BatchPhase, JobPhase
from audioextract.api.status import BatchStatus, ExtractionJobStatus
from tools.chart import HEALTH

KINDS = {"Batch": (BatchStatus, BatchPhase), "ExtractionJob": (ExtractionJobStatus, JobPhase)}
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def cases() -> list[Any]:
    out = []
    for kind in KINDS:
        tests = yaml.safe_load((HEALTH / kind / "health_test.yaml").read_text())["tests"]
        out += [pytest.param(kind, t, id=f"{kind}-{Path(t['inputPath']).stem}") for t in tests]
    return out


def health(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """health.lua's result for ``obj``, as Argo CD computes it."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    assert lua.eval("_VERSION") == "Lua 5.1"
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((HEALTH / kind / "health.lua").read_text())
    return dict(result.items())


@pytest.mark.parametrize(("kind", "case"), cases())
def test_health_lua_matches_health_test_yaml(kind: str, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((HEALTH / kind / case["inputPath"]).read_text())
    assert obj["kind"] == kind
    result = health(kind, obj)
    assert result == case["healthStatus"]
    assert result["status"] in ARGO_STATUSES


@pytest.mark.parametrize("kind", KINDS)
def test_test_objects_are_real_and_cover_every_phase(kind: str) -> None:
    model, phases = KINDS[kind]
    tests = yaml.safe_load((HEALTH / kind / "health_test.yaml").read_text())["tests"]
    seen = set()
    files = {p.name for p in (HEALTH / kind / "testdata").glob("*.yaml")}
    assert files == {Path(t["inputPath"]).name for t in tests}, "a testdata file without a test"
    for t in tests:
        obj = yaml.safe_load((HEALTH / kind / t["inputPath"]).read_text())
        status = obj.get("status")
        if status is None or status["phase"] not in {p.value for p in phases}:
            continue  # not observed yet, or the unknown-phase case
        model.model_validate(status)
        seen.add(status["phase"])
    assert seen == {p.value for p in phases}


def test_expected_messages_are_what_the_statuses_say() -> None:
    # The message is the phase and the Ready condition's message, whatever the phase.
    for name in ("running", "partially-succeeded", "suspended"):
        obj = yaml.safe_load((HEALTH / "Batch" / "testdata" / f"{name}.yaml").read_text())
        (ready,) = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"]
        assert health("Batch", obj)["message"] == f"{obj['status']['phase']}: {ready['message']}"


def test_a_changed_spec_is_progressing_until_observed() -> None:
    obj = yaml.safe_load((HEALTH / "Batch" / "testdata" / "succeeded.yaml").read_text())
    assert health("Batch", obj)["status"] == "Healthy"
    obj["metadata"]["generation"] = 2
    assert health("Batch", obj) == {
        "status": "Progressing",
        "message": "Waiting for the operator to observe generation 2",
    }
    obj["status"]["observedGeneration"] = 2
    assert health("Batch", obj)["status"] == "Healthy"


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus' generic reading of a custom resource (what Flux and kpt use)."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return "InProgress"
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or ()}
    if conditions.get("Reconciling") == "True":
        return "InProgress"
    if conditions.get("Stalled") == "True":
        return "Failed"
    return "Current"


# Argo CD's verdict next to kstatus' for the same object (docs/gitops.md's tables).
AGREES = {
    "Progressing": {"InProgress"},
    "Healthy": {"Current"},
    "Degraded": {"Failed"},
    "Suspended": {"Current"},
}


# (Unknown, a phase from a newer operator, has no kstatus counterpart: kstatus reads
# only the conditions.)
@pytest.mark.parametrize(
    ("kind", "case"),
    [c for c in cases() if c.values[1]["healthStatus"]["status"] != "Unknown"],
)
def test_argo_cd_and_kstatus_agree(kind: str, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((HEALTH / kind / case["inputPath"]).read_text())
    argo = case["healthStatus"]["status"]
    assert kstatus(obj) in AGREES[argo], (argo, kstatus(obj))
