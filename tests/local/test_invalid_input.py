"""Invalid files exit 2 with one message per problem, naming the field."""

from pathlib import Path

import pytest

from tests.local.conftest import RunCli, batch
from tests.support.bad_inputs import BAD_INPUTS, BadInput

CASES = {
    "wrong-format",
    "quality-and-bitrate",
    "duplicate-job-names",
    "volume-path-escapes",
    "unknown-field",
    "ej-no-source",
    "webhook-in-batch-job",
}


@pytest.mark.parametrize("case", [c for c in BAD_INPUTS if c.id in CASES], ids=lambda c: c.id)
def test_bad_input_exits_2_naming_the_field(run_cli: RunCli, case: BadInput) -> None:
    run = run_cli(case.obj, file="bad.yaml")
    assert run.returncode == 2, run.stderr
    assert "error: bad.yaml is not valid:" in run.stderr
    lines = [line.strip() for line in run.stderr.splitlines()[1:]]
    assert any(line.startswith(f"{case.field}") and case.message in line for line in lines), lines


def test_every_error_is_listed(run_cli: RunCli) -> None:
    obj = batch(
        "two",
        [
            {"name": "a", "source": {"url": "ftp://x/y"}},
            {"name": "b", "source": {"url": "https://x/y"}, "output": {"format": "mp4"}},
        ],
    )
    run = run_cli(obj, file="two.json")
    assert run.returncode == 2
    assert "  spec.jobs[0].source.url: String should match pattern" in run.stderr
    assert "  spec.jobs[1].output.format: Input should be 'mp3'" in run.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: Pod\n", "kind: expected Batch or ExtractionJob, got 'Pod'"),
        ("{not json", "not valid JSON or YAML"),
        ("- a\n- b\n", "expected a Batch or an ExtractionJob object"),
    ],
)
def test_not_an_object(run_cli: RunCli, tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "x.yaml").write_text(text)
    run = run_cli(None, file="x.yaml")
    assert run.returncode == 2
    assert expected in run.stderr


def test_unmapped_volume_and_missing_secret(run_cli: RunCli) -> None:
    obj = batch(
        "vols",
        [{"name": "a", "source": {"volume": {"claimName": "uploads", "path": "a.mp4"}}}],
        webhook={"url": "http://127.0.0.1:9/h", "secretRef": {"name": "s"}},
    )
    run = run_cli(obj)
    assert run.returncode == 2
    assert (
        "spec.jobs[0].source.volume.claimName: volume 'uploads' is not mapped; "
        "pass --volume uploads=DIR" in run.stderr
    )
    run = run_cli(None, "--volume", "uploads=.")
    assert run.returncode == 2
    assert "spec.webhook: a signing secret is needed" in run.stderr
    run = run_cli(None, "--volume", "uploads=.", "--webhook-secret", "whsec_!!")
    assert run.returncode == 2
    assert "--webhook-secret: signing secret #1 is not whsec_ + base64" in run.stderr


def test_metrics_file_in_a_missing_directory_exits_2_naming_the_flag(run_cli: RunCli) -> None:
    obj = batch("one", [{"name": "a", "source": {"url": "https://media.example.com/a.mp4"}}])
    run = run_cli(obj, "--metrics-file", "nowhere/audioextract.prom")
    assert run.returncode == 2, run.stderr
    assert "--metrics-file: nowhere is not a writable directory" in run.stderr
