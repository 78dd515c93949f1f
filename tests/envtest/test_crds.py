"""The generated CRDs on a real API server: install, examples, printer columns."""

import json
from pathlib import Path

import pytest

from audioextract.api.constants import MAX_JOBS_PER_BATCH
from tests.support.bad_inputs import BAD_INPUTS, BadInput
from tests.support.builders import batch, batch_job
from tests.support.controlplane import ControlPlane

REPO = Path(__file__).resolve().parent.parent.parent
# Annotations together may hold 262,144 bytes; keep room for the rest of the object.
CLIENT_SIDE_APPLY_MAX = 200_000
EXAMPLES = sorted(p for p in (REPO / "examples").glob("**/*") if p.suffix in (".yaml", ".yml"))


def test_crds_apply_server_side_and_are_established(
    control_plane: ControlPlane, crds: list[str]
) -> None:
    assert sorted(crds) == ["batches.audioextract.dev", "extractionjobs.audioextract.dev"]
    for name in crds:
        crd = json.loads(control_plane.kubectl("get", "crd", name, "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
        assert conditions.get("NonStructuralSchema") is None
    # Re-applying is a no-op for the same field manager (GitOps re-sync).
    again = control_plane.kubectl(
        "apply", "--server-side", "--field-manager=envtest", "-f", str(REPO / "crds")
    )
    assert "serverside-applied" in again.stdout
    resources = control_plane.kubectl("api-resources", "--api-group=audioextract.dev", "-o", "name")
    assert set(resources.stdout.split()) == {
        "batches.audioextract.dev",
        "extractionjobs.audioextract.dev",
    }
    categories = control_plane.kubectl("get", "audioextract", "-A", "-o", "name")
    assert categories.returncode == 0


@pytest.mark.parametrize(
    "example",
    EXAMPLES
    or [pytest.param(None, marks=pytest.mark.skip(reason="examples/ has no YAML files yet"))],
    ids=lambda p: str(p.relative_to(REPO)) if isinstance(p, Path) else "none",
)
def test_example_passes_server_side_dry_run(
    control_plane: ControlPlane, crds: list[str], namespace: str, example: Path
) -> None:
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(example), check=False
    )
    assert result.returncode == 0, f"{example.name} is refused:\n{result.stdout}{result.stderr}"
    assert "(server dry run)" in result.stdout


def _table(control_plane: ControlPlane, *args: str) -> list[list[str]]:
    out = control_plane.kubectl("get", *args).stdout
    return [line.split() for line in out.strip().splitlines()]


def test_printer_columns(control_plane: ControlPlane, crds: list[str], namespace: str) -> None:
    ej = {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "ExtractionJob",
        "metadata": {"name": "clip", "namespace": namespace},
        "spec": {
            "source": {"url": "https://media.example.com/clip.mp4"},
            "output": {"format": "flac"},
        },
    }
    batch = {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "Batch",
        "metadata": {"name": "episode", "namespace": namespace},
        "spec": {"jobs": [{"name": "intro", "source": {"url": "s3://media/raw/intro.mov"}}]},
    }
    control_plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(ej))
    control_plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(batch))
    control_plane.kubectl(
        "patch", "-n", namespace, "extractionjob", "clip", "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"phase": "Running"}}),
    )  # fmt: skip
    control_plane.kubectl(
        "patch", "-n", namespace, "batch", "episode", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Running", "succeeded": 2, "failed": 1, "total": 4}}),
    )  # fmt: skip

    header, row = _table(control_plane, "-n", namespace, "extractionjobs")
    assert header == ["NAME", "PHASE", "FORMAT", "AGE"]
    assert row[:3] == ["clip", "Running", "flac"]
    header, row = _table(control_plane, "-n", namespace, "batches")
    assert header == ["NAME", "PHASE", "SUCCEEDED", "FAILED", "TOTAL", "AGE"]
    assert row[:5] == ["episode", "Running", "2", "1", "4"]
    # The short name and the category work too.
    assert _table(control_plane, "-n", namespace, "ej", "-o", "name") == [
        ["extractionjob.audioextract.dev/clip"]
    ]
    names = {r[0] for r in _table(control_plane, "-n", namespace, "audioextract", "-o", "name")}
    assert names == {"extractionjob.audioextract.dev/clip", "batch.audioextract.dev/episode"}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c.id)
def test_api_server_refuses_every_bad_input(
    control_plane: ControlPlane, crds: list[str], case: BadInput
) -> None:
    # The same table the models and cel-python check: one table, three engines.
    body = json.dumps(case.obj)
    # Client-side apply copies the object into an annotation (256 KiB at most), which
    # would refuse a large case before the schema sees it: those go server-side.
    mode = ["--server-side"] if len(body) > CLIENT_SIDE_APPLY_MAX else []
    result = control_plane.kubectl(
        "apply", *mode, "--dry-run=server", "-n", "default", "-f", "-",
        input=body, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{case.id}: the API server accepted it"
    assert case.field in output, f"{case.id}: {case.field} not named in:\n{output}"
    assert case.message in output, f"{case.id}: {case.message!r} not in:\n{output}"


def test_largest_batch_is_accepted(control_plane: ControlPlane, crds: list[str]) -> None:
    # The largest Batch the schema admits, with the longest names, passes the API
    # server's list-map key check and the per-job CEL rules' runtime budget.
    jobs = [batch_job(f"j{i:05d}-" + "x" * 56) for i in range(MAX_JOBS_PER_BATCH)]
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", "default", "-f", "-",
        input=json.dumps(batch(name="largest", jobs=jobs)), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
