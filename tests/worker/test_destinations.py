"""Destinations (volume, presigned PUT, S3) and their failures; cancellation; result size."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import s3
from tests.support.http_server import MediaServer
from tests.worker.conftest import LOOPBACK, RunWorker, media


def test_volume_destination_is_atomic_and_named(run_worker: RunWorker) -> None:
    run = run_worker(
        media("av.mp4"),
        {"format": "flac", "destination": {"volume": {"claimName": "out", "path": "a/b"}}},
        name="ep1",
    )
    assert run.returncode == 0, run.stderr
    assert run.result["uri"] == "volume://out/a/b/ep1.flac"
    files = list((run.out_dir / "a" / "b").iterdir())
    assert [f.name for f in files] == ["ep1.flac"]
    assert hashlib.sha256(files[0].read_bytes()).hexdigest() == run.result["sha256"]
    assert run.result["sizeBytes"] == files[0].stat().st_size


def test_presigned_put(run_worker: RunWorker, media_server: MediaServer) -> None:
    url = media_server.url("upload/clip.mp3?X-Amz-Signature=topsecret&X-Amz-Credential=abc")
    run = run_worker(media("av.mp4"), {"format": "mp3", "destination": {"url": url}})
    assert run.returncode == 0, run.stderr
    assert run.result["uri"] == media_server.url("upload/clip.mp3")
    body = media_server.uploads["clip.mp3"]
    assert hashlib.sha256(body).hexdigest() == run.result["sha256"]
    put = [r for r in media_server.requests if r[0] == "PUT"][-1]
    assert put[2]["Content-Length"] == str(len(body))
    assert "topsecret" not in run.stderr and "topsecret" not in run.raw


def test_put_failure_is_output_write_failed(
    run_worker: RunWorker, media_server: MediaServer
) -> None:
    run = run_worker(
        media("av.mp4"), {"destination": {"url": media_server.url("status/500?sig=x")}}
    )
    assert (run.returncode, run.error["code"], run.error["retryable"]) == (
        22,
        "OutputWriteFailed",
        True,
    )
    assert "500" in run.error["message"]


def test_unmounted_volume_is_output_write_failed(run_worker: RunWorker) -> None:
    run = run_worker(media("av.mp4"), {"destination": {"volume": {"claimName": "not-mounted"}}})
    assert (run.returncode, run.error["code"]) == (22, "OutputWriteFailed"), run.raw


def test_unwritable_directory_is_output_write_failed(run_worker: RunWorker) -> None:
    # A file where the destination directory should be: mkdir fails even for root.
    run = run_worker(media("av.mp4"), name="first")
    (run.out_dir / "blocker").write_text("x")
    run = run_worker(
        media("av.mp4"), {"destination": {"volume": {"claimName": "out", "path": "blocker/sub"}}}
    )
    assert (run.returncode, run.error["code"]) == (22, "OutputWriteFailed"), run.raw


def test_s3_missing_bucket_is_output_write_failed(run_worker: RunWorker, s3_endpoint: str) -> None:
    run = run_worker(
        media("av.mp4"),
        {"destination": {"s3": {"bucket": "no-such-bucket", "endpoint": s3_endpoint}}},
    )
    assert (run.returncode, run.error["code"]) == (22, "OutputWriteFailed"), run.raw
    assert "NoSuchBucket" in run.error["message"]
    assert s3.S3_ENV["AWS_SECRET_ACCESS_KEY"] not in run.stderr


def test_sigterm_cancels_and_cleans_up(tmp_path: Path, media_server: MediaServer) -> None:
    task = {
        "name": "cancel-me",
        "source": {"url": media_server.url("slow/av.mp4")},
        "output": {"format": "mp3", "destination": {"volume": {"claimName": "out"}}},
        "timeoutSeconds": 60,
    }
    (tmp_path / "task.json").write_text(json.dumps(task))
    (tmp_path / "out").mkdir()
    scratch = tmp_path / "scratch"
    env = {
        **os.environ,
        "AUDIOEXTRACT_ALLOW_NETWORKS": LOOPBACK,
        "AUDIOEXTRACT_TEMP_DIR": str(scratch),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "audioextract",
            "worker",
            "--task",
            str(tmp_path / "task.json"),
            "--result",
            str(tmp_path / "result.json"),
            "--volume",
            f"out={tmp_path / 'out'}",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if '"probed"' in line or '"encode-start"' in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 23
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["error"]["code"] == "Cancelled" and result["error"]["retryable"] is True
    assert list(scratch.iterdir()) == []
    assert list((tmp_path / "out").iterdir()) == []


def test_put_to_blocked_address_is_refused(run_worker: RunWorker) -> None:
    run = run_worker(
        media("av.mp4"), {"destination": {"url": "http://169.254.169.254/upload?sig=x"}}
    )
    assert (run.returncode, run.error["code"]) == (10, "InvalidSpec")
    assert "sig=x" not in run.raw
