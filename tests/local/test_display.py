"""The display and the results table, without running anything."""

import io
from pathlib import Path

from audioextract.api.constants import JobPhase
from audioextract.api.status import JobError
from audioextract.local.display import Display, human_size, local_path, results_table
from audioextract.local.load import from_object
from audioextract.local.plan import OUT_CLAIM, Plan, build_plan
from audioextract.local.state import JobState
from tests.support.builders import batch, batch_job, job_result


def _plan(tmp_path: Path) -> Plan:
    obj = batch(jobs=[batch_job("a"), batch_job("b", output={"format": "flac", "normalize": True})])
    return build_plan(from_object(obj), {}, tmp_path / "out", None)


def test_local_paths_and_sizes(tmp_path: Path) -> None:
    volumes = {OUT_CLAIM: tmp_path / "out"}
    assert local_path(f"volume://{OUT_CLAIM}/x/a.mp3", volumes) == str(tmp_path / "out/x/a.mp3")
    assert local_path("s3://b/k.mp3", volumes) == "s3://b/k.mp3"
    assert local_path("volume://other/a.mp3", volumes) == "volume://other/a.mp3"
    assert (human_size(999), human_size(1234567)) == ("999 B", "1.2 MB")


def test_live_view_redraws_in_place_and_keeps_finished_lines(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    states = [JobState(job) for job in plan.jobs]
    out = io.StringIO()
    view = Display(plan, states, out, live=True)
    states[1].phase, states[1].attempts = JobPhase.RUNNING, 1
    states[1].step, states[1].step_percent = "encode", 50.0
    view.job_started(states[1])
    assert "75%" in out.getvalue()  # measuring was the first half, encoding half done
    states[0].phase = JobPhase.FAILED
    states[0].error = JobError(code="SourceNotFound", message="HTTP 404", retryable=False)
    view.job_finished(states[0])
    text = out.getvalue()
    assert "\x1b[2F\x1b[J" in text  # back up over the two-line block, erase, redraw
    assert "failed    a: SourceNotFound: HTTP 404" in text
    view.close()
    assert out.getvalue().endswith("\x1b[J")


def test_plain_view_writes_lines_only(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    states = [JobState(job) for job in plan.jobs]
    out = io.StringIO()
    view = Display(plan, states, out, live=False)
    states[0].phase, states[0].attempts = JobPhase.RUNNING, 1
    view.job_started(states[0])
    view.job_progress(states[0])  # within 5 s of the start: not logged
    assert "\x1b" not in out.getvalue()
    assert out.getvalue().count("\n") == 1


def test_results_table(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    states = [JobState(job) for job in plan.jobs]
    states[0].phase, states[0].attempts = JobPhase.SUCCEEDED, 2
    states[0].result = job_result(
        uri=f"volume://{OUT_CLAIM}/episode-42-a.mp3", size_bytes=2048, duration_seconds=3.0
    )
    table = results_table(plan, states).splitlines()
    assert table[0].split() == [
        "JOB",
        "PHASE",
        "OUTPUT",
        "SIZE",
        "DURATION",
        "TIME",
        "ATTEMPTS",
        "ERROR",
    ]
    assert table[1].split()[:2] == ["a", "Succeeded"]
    assert "episode-42-a.mp3" in table[1] and "2.0 KB" in table[1] and "3.0s" in table[1]
    assert table[2].split()[:2] == ["b", "Queued"]
