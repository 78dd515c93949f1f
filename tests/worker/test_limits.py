"""Decode and output limits hold whatever the source declares (docs/worker.md, Limits)."""

from pathlib import Path

import pytest

from tests.support import bombs
from tests.support.http_server import MediaServer
from tests.worker.conftest import Run, RunWorker, media

# Low limits keep each bomb quick: ffmpeg stops a second past them.
LIMIT_SECONDS = "20"


@pytest.fixture(scope="module")
def bomb_files(media_files: dict[str, Path]) -> dict[str, Path]:
    """Ten minutes of 96 kHz silence that declare no length, in the media directory."""
    root = next(iter(media_files.values())).parent
    return {
        "bomb.flac": bombs.flac_without_length(root / "bomb.flac"),
        "bomb.mkv": bombs.piped_mkv(root / "bomb.mkv"),
    }


def _refused(run: Run) -> None:
    assert (run.returncode, run.error["code"], run.error["retryable"]) == (
        15,
        "InputTooLarge",
        False,
    ), run.stderr
    assert list(run.out_dir.iterdir()) == [], "nothing may reach the destination"
    scratch = run.out_dir.parent / "scratch"
    assert not any(scratch.iterdir()), "temp files must be removed"
    assert "Traceback" not in run.stderr


def _probed_duration(run: Run) -> float | None:
    probed = [e for e in run.logs() if e["event"] == "probed"]
    assert probed, run.stderr
    duration: float | None = probed[0]["durationSeconds"]
    return duration


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_flac_without_total_samples_is_stopped_at_the_media_limit(
    run_worker: RunWorker, bomb_files: dict[str, Path], fmt: str
) -> None:
    run = run_worker(
        media("bomb.flac"),
        {"format": fmt},
        env={"AUDIOEXTRACT_MAX_MEDIA_SECONDS": LIMIT_SECONDS},
    )
    # The probe saw no duration: only the limit on decoded time can catch it.
    assert _probed_duration(run) is None
    _refused(run)
    assert "media-seconds limit" in run.error["message"]


def test_piped_mkv_without_duration_over_http_is_stopped(
    run_worker: RunWorker, media_server: MediaServer, bomb_files: dict[str, Path]
) -> None:
    run = run_worker(
        {"url": media_server.url("norange/bomb.mkv")},
        {"format": "wav"},
        env={"AUDIOEXTRACT_MAX_MEDIA_SECONDS": LIMIT_SECONDS},
    )
    # A file this small is read to its end by the probe, which then estimates the
    # duration: which layer refuses it may vary, that it is refused may not.
    _refused(run)


def test_loudness_measurement_is_bounded_too(
    run_worker: RunWorker, bomb_files: dict[str, Path]
) -> None:
    run = run_worker(
        media("bomb.flac"),
        {"format": "mp3", "normalize": True},
        env={"AUDIOEXTRACT_MAX_MEDIA_SECONDS": LIMIT_SECONDS},
    )
    _refused(run)
    assert not any(e["event"] == "encode-start" for e in run.logs()), "refused while measuring"


def test_output_size_limit(run_worker: RunWorker) -> None:
    run = run_worker(
        media("av.mp4"), {"format": "wav"}, env={"AUDIOEXTRACT_MAX_OUTPUT_BYTES": "100000"}
    )
    _refused(run)
    assert "output-size limit" in run.error["message"]
    # Under the limit the same job succeeds: the check measures, it does not guess.
    run = run_worker(
        media("av.mp4"), {"format": "wav"}, env={"AUDIOEXTRACT_MAX_OUTPUT_BYTES": "10000000"}
    )
    assert run.returncode == 0, run.stderr


def test_within_the_media_limit_succeeds(run_worker: RunWorker) -> None:
    run = run_worker(
        media("av.mp4"), {"format": "flac"}, env={"AUDIOEXTRACT_MAX_MEDIA_SECONDS": "5"}
    )
    assert run.returncode == 0, run.stderr
