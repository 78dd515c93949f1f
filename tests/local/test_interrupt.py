"""Ctrl-C: workers are stopped with SIGTERM, nothing is left at a final path, status says Cancelled."""

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.local.conftest import RunCli, batch, cli_env, command, http_job
from tests.support import http_server


def _wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_sigint_stops_cleanly(
    run_cli: RunCli, tmp_path: Path, source_server: http_server.MediaServer
) -> None:
    jobs = [
        # /slow/ trickles the file at ~10 KB/s: the job is still reading when interrupted.
        http_job(source_server, "slow", path="slow/av.mp4", output={"normalize": True}),
        http_job(source_server, "waiting"),
    ]
    (tmp_path / "batch.yaml").write_text(yaml.safe_dump(batch("stop", jobs, parallelism=1)))
    proc = subprocess.Popen(
        command("batch.yaml", "--status", "status.yaml"),
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: any("job=slow" in r[1] for r in source_server.requests))
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    status = yaml.safe_load((tmp_path / "status.yaml").read_text())["status"]
    jobs_by_name = {j["name"]: j for j in status["jobs"]}
    assert jobs_by_name["slow"]["error"]["code"] == "Cancelled"
    assert jobs_by_name["waiting"]["error"]["code"] == "Cancelled"
    assert status["phase"] == "Failed"
    out = tmp_path / "out"
    assert list(out.iterdir()) == []  # no final file, and no partial one either
    # The runner's and the worker's scratch space is gone.
    assert list((tmp_path / "tmp").iterdir()) == []
    assert "Cancelled" in stdout
