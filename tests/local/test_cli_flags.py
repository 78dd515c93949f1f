"""Bad flags exit 2 naming the flag (no traceback); --version; run --help; same validation as the CRD."""

import subprocess
import sys
from pathlib import Path

import pytest

from audioextract import __version__
from tests.local.conftest import RunCli, batch

GOOD = batch("flags", [{"name": "a", "source": {"url": "https://cdn.example/a.mp4"}}])


@pytest.mark.parametrize(
    ("args", "flag", "message"),
    [
        (["--out", "afile"], "--out afile", "exists and is not a directory"),
        (["--out", "afile/sub"], "--out afile/sub", "cannot be created"),
        (["--status", "nodir/status.yaml"], "--status nodir/status.yaml", "does not exist"),
        (["--status", "."], "--status .", "is a directory"),
        (["--volume", "uploads"], "--volume 'uploads'", "expected NAME=DIR"),
        (["--volume", "uploads=missing"], "--volume 'uploads=missing'", "is not a directory"),
        (["--parallel", "0"], "--parallel", "must be at least 1"),
        (["--parallel", "x"], "--parallel", "is not a whole number"),
        (["--drain-seconds", "-1"], "--drain-seconds", "at least 0"),
        (["--drain-seconds", "nan"], "--drain-seconds", "at least 0"),
        (["--bogus"], "--bogus", "unrecognized arguments"),
    ],
)
def test_bad_flag_exits_2_naming_it(
    run_cli: RunCli, tmp_path: Path, args: list[str], flag: str, message: str
) -> None:
    (tmp_path / "afile").write_text("x")
    run = run_cli(GOOD, *args)
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr
    assert flag in run.stderr and message in run.stderr, run.stderr
    # A flag's problem is not blamed on the file.
    assert "is not valid" not in run.stderr


def test_version(run_cli: RunCli) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "audioextract", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"audio-extract {__version__}"


def test_run_help_lists_exit_codes_and_environment(run_cli: RunCli) -> None:
    run = run_cli(None, "--help")
    assert run.returncode == 0
    text = run.stdout
    assert "exit codes:" in text and "130" in text and "environment:" in text
    for var in (
        "AUDIOEXTRACT_ALLOW_NETWORKS",
        "AUDIOEXTRACT_WEBHOOK_SECRET",
        "AUDIOEXTRACT_MAX_INPUT_BYTES",
        "AWS_ACCESS_KEY_ID",
    ):
        assert var in text


@pytest.mark.parametrize(
    ("output", "field"),
    [
        ({"sample_rate": 44100}, 'spec.jobs[0].output.sample_rate: unknown field "sample_rate"'),
        ({"start_seconds": 1}, 'spec.jobs[0].output.start_seconds: unknown field "start_seconds"'),
        ({"channels": "2"}, "spec.jobs[0].output.channels"),
        ({"normalize": "yes"}, "spec.jobs[0].output.normalize"),
    ],
)
def test_only_what_the_crd_accepts(run_cli: RunCli, output: dict[str, object], field: str) -> None:
    obj = batch(
        "snake", [{"name": "a", "source": {"url": "https://cdn.example/a.mp4"}, "output": output}]
    )
    run = run_cli(obj)
    assert run.returncode == 2 and field in run.stderr, run.stderr


def test_two_jobs_one_output_exit_2_naming_both(run_cli: RunCli) -> None:
    obj = batch(
        "dup",
        [
            {
                "name": "a",
                "source": {"url": "https://cdn.example/a.mp4"},
                "output": {"filename": "x"},
            },
            {
                "name": "b",
                "source": {"url": "https://cdn.example/b.mp4"},
                "output": {"filename": "x.mp3"},
            },
            {
                "name": "c",
                "source": {"url": "https://cdn.example/c.mp4"},
                "output": {"filename": "x", "format": "flac"},
            },
        ],
    )
    run = run_cli(obj)
    assert run.returncode == 2, run.stderr
    assert (
        "spec.jobs[1] (b) and spec.jobs[0] (a) both write" in run.stderr and "x.mp3" in run.stderr
    )
    assert "(c)" not in run.stderr  # x.flac is another object


def test_crds_write_to_an_impossible_directory_exits_2(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "audioextract", "crds", "--write", str(tmp_path / "afile" / "d")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: --write {tmp_path / 'afile' / 'd'}: ")
