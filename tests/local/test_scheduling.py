"""Parallelism, priority order, the failure budget and retries, as the operator decides them."""

from pathlib import Path

from tests.local.conftest import MEDIA, RunCli, batch, http_job, results
from tests.support import http_server


def _windows(server: http_server.MediaServer, names: list[str]) -> dict[str, tuple[float, float]]:
    """Each job's window as the source server saw it: first request start to last request end."""
    windows: dict[str, tuple[float, float]] = {}
    for start, end, path in server.spans:
        for name in names:
            if path.endswith(f"?job={name}"):
                lo, hi = windows.get(name, (start, end))
                windows[name] = (min(lo, start), max(hi, end))
    return windows


def _max_overlap(windows: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in windows] + [(e, -1) for _, e in windows])
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def test_parallelism_is_the_smaller_limit_and_never_exceeded(
    run_cli: RunCli, source_server: http_server.MediaServer
) -> None:
    names = [f"par{i}" for i in range(5)]
    # Each source answer is held back, so a job's window on the server lasts seconds:
    # two jobs started together overlap there however slowly the workers start.
    jobs = [http_job(source_server, n, path=f"delay/1500/{MEDIA}") for n in names]
    obj = batch("par", jobs, parallelism=3)
    run = run_cli(obj, "--parallel", "2", "--status", "status.yaml")
    assert run.returncode == 0, run.stderr + run.stdout
    assert "at most 2 at once" in run.stderr
    windows = _windows(source_server, names)
    assert set(windows) == set(names)
    # Each window lies inside its worker's lifetime, so overlapping windows prove
    # overlapping jobs: never more than the limit, and the limit is actually used.
    assert _max_overlap(list(windows.values())) == 2


def test_priority_then_spec_order(run_cli: RunCli, source_server: http_server.MediaServer) -> None:
    jobs = [
        http_job(source_server, "low", priority="low"),
        http_job(source_server, "normal"),
        http_job(source_server, "high", priority="high"),
    ]
    run = run_cli(batch("prio", jobs, parallelism=1))
    assert run.returncode == 0, run.stderr + run.stdout
    started = [line.split()[-1] for line in run.stderr.splitlines() if " started " in line]
    assert started == ["high", "normal", "low"]


def test_failure_budget_cancels_queued_jobs(
    run_cli: RunCli, source_server: http_server.MediaServer
) -> None:
    jobs = [
        http_job(source_server, "broken", path="status/404"),
        http_job(source_server, "never-a"),
        http_job(source_server, "never-b"),
    ]
    obj = batch("budget", jobs, parallelism=1, failurePolicy={"maxFailedJobs": 0})
    run = run_cli(obj, "--status", "status.yaml")
    assert run.returncode == 1
    status = run.status()["status"]
    assert status["phase"] == "Failed"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Stalled"]["reason"] == "MaxFailedJobsExceeded"
    jobs_by_name = run.jobs()
    assert jobs_by_name["broken"]["error"]["code"] == "SourceNotFound"
    for name in ("never-a", "never-b"):
        assert jobs_by_name[name]["phase"] == "Failed"
        assert jobs_by_name[name]["error"]["code"] == "Cancelled"
    assert not any("?job=never" in path for _, _, path in source_server.spans)


def test_transient_error_is_retried_and_permanent_is_not(
    run_cli: RunCli, source_server: http_server.MediaServer, tmp_path: Path
) -> None:
    jobs = [
        # 503 on the first request, then the file: SourceUnreachable is transient.
        http_job(source_server, "flaky", path="flaky/1/av.mp4"),
        http_job(source_server, "gone", path="status/404", retries=5),
    ]
    run = run_cli(batch("retry", jobs, parallelism=2), "--status", "status.yaml")
    assert run.returncode == 1
    assert "retrying  flaky" in run.stderr
    assert "retrying  gone" not in run.stderr
    entries = run.jobs()
    assert entries["flaky"]["phase"] == "Succeeded"
    assert entries["gone"]["error"]["code"] == "SourceNotFound"
    assert run.status()["status"]["phase"] == "PartiallySucceeded"
    # ATTEMPTS column of the results table: 2 for the retried job, 1 for the 404.
    rows = results(run.stdout)
    assert rows["flaky"]["ATTEMPTS"] == "2"
    assert rows["gone"]["ATTEMPTS"] == "1"
    assert rows["gone"]["ERROR"].startswith("SourceNotFound: ")
    assert (tmp_path / "out" / "retry-flaky.mp3").is_file()
