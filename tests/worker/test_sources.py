"""Sources: HTTP(S) through the guard proxy, S3, volumes; every source error code."""

import json
from pathlib import Path

import pytest

from tests.support import media as m
from tests.support import s3
from tests.support.http_server import MediaServer, refusing_port
from tests.worker.conftest import RunWorker, media


def test_http_source_streams_through_the_proxy(
    run_worker: RunWorker, media_server: MediaServer
) -> None:
    run = run_worker({"url": media_server.url("range/av.mp4?token=s3cr3t")}, {"format": "mp3"})
    assert run.returncode == 0, run.stderr
    assert run.result["codec"] == "mp3"
    assert "s3cr3t" not in run.stderr and "s3cr3t" not in run.raw
    # Streamed: only Range requests, never a separate full download.
    assert all(e["event"] != "download-fallback" for e in run.logs())


def test_redirects_are_followed_hop_by_hop(
    run_worker: RunWorker, media_server: MediaServer
) -> None:
    run = run_worker({"url": media_server.url("redirect/2/range/audio.m4a")}, {"format": "m4a"})
    assert run.returncode == 0, run.stderr
    assert run.result["streamCopied"] is True


def test_redirect_to_metadata_address_is_refused(
    run_worker: RunWorker, media_server: MediaServer
) -> None:
    url = media_server.url("redirect-to?url=http://169.254.169.254/latest/meta-data/")
    run = run_worker({"url": url})
    assert run.returncode == 12, run.stderr
    assert run.error["code"] == "SourceForbidden"
    assert "169.254.169.254" in run.error["message"]


def test_loopback_refused_without_allow_networks(
    run_worker: RunWorker, media_server: MediaServer
) -> None:
    before = media_server.connections
    run = run_worker({"url": media_server.url("range/av.mp4")}, allow_loopback=False)
    assert run.returncode == 12
    assert run.error == {
        "code": "SourceForbidden",
        "message": run.error["message"],
        "retryable": False,
    }
    assert "loopback" in run.error["message"]
    assert media_server.connections == before


def test_no_range_server_with_faststart_streams(
    run_worker: RunWorker, media_server: MediaServer
) -> None:
    run = run_worker({"url": media_server.url("norange/av.mp4")})
    assert run.returncode == 0, run.stderr
    assert all(e["event"] != "download-fallback" for e in run.logs())


def test_moov_at_end_without_range_falls_back_to_download(
    run_worker: RunWorker, media_server: MediaServer
) -> None:
    run = run_worker({"url": media_server.url("norange/nofaststart.mp4")})
    assert run.returncode == 0, run.stderr
    assert any(e["event"] == "download-fallback" for e in run.logs())
    assert abs(run.result["durationSeconds"] - m.SECONDS) < 0.3


def test_moov_at_end_with_range_streams(run_worker: RunWorker, media_server: MediaServer) -> None:
    run = run_worker({"url": media_server.url("range/nofaststart.mp4")})
    assert run.returncode == 0, run.stderr
    assert all(e["event"] != "download-fallback" for e in run.logs())


@pytest.mark.parametrize(
    ("path", "code", "exit_code"),
    [
        ("status/404", "SourceNotFound", 11),
        ("range/missing.mp4", "SourceNotFound", 11),
        ("status/403", "SourceForbidden", 12),
        ("status/401", "SourceForbidden", 12),
        ("status/503", "SourceUnreachable", 20),
        ("range/video-only.mp4", "NoAudioStream", 13),
        ("range/garbage.mp4", "DecodeFailed", 14),
        ("range/truncated.mp4", "DecodeFailed", 14),
    ],
)
def test_http_errors(
    run_worker: RunWorker, media_server: MediaServer, path: str, code: str, exit_code: int
) -> None:
    run = run_worker({"url": media_server.url(path)})
    assert (run.returncode, run.error["code"]) == (exit_code, code), run.stderr
    assert run.error["message"]
    assert run.error["retryable"] is (exit_code >= 20)


def test_refused_connection_is_unreachable(run_worker: RunWorker) -> None:
    with refusing_port() as port:
        run = run_worker({"url": f"http://127.0.0.1:{port}/video.mp4"})
    assert (run.returncode, run.error["code"]) == (20, "SourceUnreachable")
    assert run.error["retryable"] is True


def test_dns_failure_is_unreachable(run_worker: RunWorker) -> None:
    run = run_worker({"url": "http://no-such-host.invalid/video.mp4"})
    assert (run.returncode, run.error["code"]) == (20, "SourceUnreachable")


def test_stalled_server_hits_the_read_timeout(
    run_worker: RunWorker, media_server: MediaServer
) -> None:
    run = run_worker(
        {"url": media_server.url("hang")}, env={"AUDIOEXTRACT_RW_TIMEOUT_SECONDS": "1"}
    )
    assert (run.returncode, run.error["code"]) == (20, "SourceUnreachable")
    assert "timed out" in run.error["message"]


def test_task_timeout_kills_ffmpeg(run_worker: RunWorker, media_server: MediaServer) -> None:
    run = run_worker({"url": media_server.url("slow/av.mp4")}, timeout_seconds=2)
    assert (run.returncode, run.error["code"]) == (16, "Timeout")
    scratch = Path(run.out_dir.parent / "scratch")
    assert not any(scratch.iterdir())


def test_oversized_input_is_refused(run_worker: RunWorker, media_server: MediaServer) -> None:
    run = run_worker(
        {"url": media_server.url("range/av.mp4")}, env={"AUDIOEXTRACT_MAX_INPUT_BYTES": "10000"}
    )
    assert (run.returncode, run.error["code"]) == (15, "InputTooLarge")


def test_oversized_volume_input_is_refused(run_worker: RunWorker) -> None:
    run = run_worker(media("av.mp4"), env={"AUDIOEXTRACT_MAX_INPUT_BYTES": "10000"})
    assert (run.returncode, run.error["code"]) == (15, "InputTooLarge")


def test_too_long_media_is_refused(run_worker: RunWorker) -> None:
    run = run_worker(media("av.mp4"), env={"AUDIOEXTRACT_MAX_MEDIA_SECONDS": "2"})
    assert (run.returncode, run.error["code"]) == (15, "InputTooLarge")


def test_missing_volume_file(run_worker: RunWorker) -> None:
    run = run_worker(media("nope.mp4"))
    assert (run.returncode, run.error["code"]) == (11, "SourceNotFound")


def test_symlink_escaping_the_volume_is_refused(
    run_worker: RunWorker, media_files: dict[str, Path]
) -> None:
    link = next(iter(media_files.values())).parent / "escape.mp4"
    if not link.exists():
        link.symlink_to("/etc/hostname")
    run = run_worker(media("escape.mp4"))
    assert (run.returncode, run.error["code"]) == (12, "SourceForbidden")


def test_audio_track_selection(run_worker: RunWorker) -> None:
    first = run_worker(media("two-tracks.mkv"), {"format": "wav"})
    second = run_worker(media("two-tracks.mkv"), {"format": "wav"} | {}, name="second")
    assert first.result["channels"] == 1
    assert second.result["channels"] == 1
    chosen = run_worker({**media("two-tracks.mkv"), "audioTrack": 1}, {"format": "wav"}, name="t1")
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.result["channels"] == 2
    missing = run_worker({**media("two-tracks.mkv"), "audioTrack": 2}, name="t2")
    assert (missing.returncode, missing.error["code"]) == (13, "NoAudioStream")


def test_invalid_task_is_invalid_spec(run_worker: RunWorker, tmp_path: Path) -> None:
    run = run_worker(media("av.mp4"), {"format": "mp3", "bitrate": "128k", "quality": "high"})
    assert (run.returncode, run.error["code"]) == (10, "InvalidSpec")


def test_s3_source_and_destination(
    run_worker: RunWorker, s3_endpoint: str, media_files: dict[str, Path]
) -> None:
    client = s3.client(s3_endpoint)
    client.create_bucket(Bucket="media")
    client.upload_file(str(media_files["av.webm"]), "media", "raw/clip.webm")
    run = run_worker(
        {"url": "s3://media/raw/clip.webm", "s3": {"endpoint": s3_endpoint}},
        {
            "format": "opus",
            "destination": {"s3": {"bucket": "media", "prefix": "audio/", "endpoint": s3_endpoint}},
        },
        name="clip",
    )
    assert run.returncode == 0, run.stderr
    assert run.result["uri"] == "s3://media/audio/clip.opus"
    assert run.result["streamCopied"] is True
    body = client.get_object(Bucket="media", Key="audio/clip.opus")["Body"].read()
    import hashlib

    assert hashlib.sha256(body).hexdigest() == run.result["sha256"]
    assert s3.S3_ENV["AWS_SECRET_ACCESS_KEY"] not in run.stderr
    assert "X-Amz-Signature" not in run.stderr


def test_s3_source_missing_key(run_worker: RunWorker, s3_endpoint: str) -> None:
    client = s3.client(s3_endpoint)
    client.create_bucket(Bucket="empty")
    run = run_worker({"url": "s3://empty/none.mp4", "s3": {"endpoint": s3_endpoint}})
    assert (run.returncode, run.error["code"]) == (11, "SourceNotFound")


def test_s3_source_without_credentials(
    run_worker: RunWorker, s3_endpoint: str, media_files: dict[str, Path]
) -> None:
    # Without keys the request goes unsigned (public buckets work); a private
    # object is refused by the store, and no other credentials are tried.
    client = s3.client(s3_endpoint)
    client.create_bucket(Bucket="locked")
    client.upload_file(str(media_files["av.mp4"]), "locked", "x.mp4")
    run = run_worker(
        {"url": "s3://locked/x.mp4", "s3": {"endpoint": s3_endpoint}},
        env={
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
        },
    )
    assert (run.returncode, run.error["code"]) == (12, "SourceForbidden"), run.raw


def test_too_many_redirects(run_worker: RunWorker, media_server: MediaServer) -> None:
    run = run_worker({"url": media_server.url("redirect/7/range/av.mp4")})
    assert (run.returncode, run.error["code"]) == (20, "SourceUnreachable")
    assert "redirects" in run.error["message"]


def test_task_from_environment(tmp_path: Path, media_files: dict[str, Path]) -> None:
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    task = {
        "name": "from-env",
        "source": {"volume": {"claimName": "media", "path": "audio.m4a"}},
        "output": {"format": "m4a", "destination": {"volume": {"claimName": "out"}}},
        "timeoutSeconds": 60,
    }
    env = {
        **os.environ,
        "AUDIOEXTRACT_TASK": json.dumps(task),
        "AUDIOEXTRACT_VOLUMES_ROOT": str(tmp_path),
        "AUDIOEXTRACT_TEMP_DIR": str(tmp_path / "scratch"),
    }
    (tmp_path / "media").symlink_to(media_files["audio.m4a"].parent)
    result = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "audioextract", "worker", "--result", str(result)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(result.read_text())["uri"] == "volume://out/from-env.m4a"
    assert (out / "from-env.m4a").is_file()


def test_https_source_is_verified(
    run_worker: RunWorker, media_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.support.http_server import self_signed_cert, serve_tls

    cert, key = self_signed_cert(tmp_path_factory.mktemp("tls"))
    root = media_files["audio.m4a"].parent
    with serve_tls(root, cert, key) as server:
        url = server.url("range/audio.m4a")
        assert url.startswith("https://")
        trusted = run_worker(
            {"url": url}, {"format": "m4a"}, env={"AUDIOEXTRACT_CA_FILE": str(cert)}
        )
        untrusted = run_worker({"url": url}, {"format": "m4a"}, name="untrusted")
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.result["streamCopied"] is True
    assert (untrusted.returncode, untrusted.error["code"]) == (20, "SourceUnreachable")
    assert "TLS verification failed" in untrusted.error["message"]
