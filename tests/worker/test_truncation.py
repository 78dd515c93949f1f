"""Truncated sources, dropped connections, limits reached while streaming, trims past the end.

ffmpeg exits 0 on an early end of input; each of these must still fail with its
own error code (docs/worker.md, "Truncation").
"""

import pytest

from audioextract.worker.errors import WorkerError
from tests.support import media as m
from tests.support.http_server import MediaServer
from tests.worker.conftest import InProcess, RunWorker, media


@pytest.mark.parametrize(
    ("fmt", "copied"), [("mp3", False), ("m4a", True), ("flac", False), ("aac", True)]
)
def test_truncated_faststart_file_is_decode_failed(
    in_process: InProcess, fmt: str, copied: bool
) -> None:
    src = in_process.media_dir / "av.mp4"
    half = m.cut(src, in_process.media_dir / "half-faststart.mp4", 0.5)
    # The index is whole, so the probe still declares the full duration.
    assert abs(m.probe(half).duration - m.SECONDS) < 0.1
    with pytest.raises(WorkerError) as err:
        in_process(media(half.name), {"format": fmt})
    assert err.value.code == "DecodeFailed", err.value
    assert "truncated" in err.value.message and f"{m.SECONDS:.2f} s" in err.value.message
    # The same file whole: no false alarm (stream copy or not).
    result = in_process(media("av.mp4"), {"format": fmt})
    assert result.stream_copied is copied


def test_dropped_connection_is_unreachable_and_retryable(
    run_worker: RunWorker, media_server: MediaServer
) -> None:
    run = run_worker({"url": media_server.url("drop/flac.mkv")}, {"format": "mp3"})
    assert (run.returncode, run.error["code"], run.error["retryable"]) == (
        20,
        "SourceUnreachable",
        True,
    ), run.result
    assert "closed after" in run.error["message"]


def test_dropped_connection_during_stream_copy(
    run_worker: RunWorker, media_server: MediaServer
) -> None:
    run = run_worker({"url": media_server.url("drop/av.mkv")}, {"format": "mp3"})
    assert run.error["code"] == "SourceUnreachable", run.result


def test_limit_reached_while_streaming_is_input_too_large(
    run_worker: RunWorker, media_server: MediaServer
) -> None:
    size = (media_server.root / "flac.mkv").stat().st_size
    run = run_worker(
        {"url": media_server.url("nolength/flac.mkv")},
        {"format": "mp3"},
        env={"AUDIOEXTRACT_MAX_INPUT_BYTES": str(size // 2)},
    )
    assert (run.returncode, run.error["code"]) == (15, "InputTooLarge"), run.result


@pytest.mark.parametrize("fmt", ["mp3", "opus", "flac", "wav"])
def test_trim_past_the_end_is_permanent_at_once(run_worker: RunWorker, fmt: str) -> None:
    run = run_worker(media("flac.mkv"), {"format": fmt, "startSeconds": 10})
    assert (run.returncode, run.error["code"], run.error["retryable"]) == (
        10,
        "InvalidSpec",
        False,
    ), run.result
    message = run.error["message"]
    assert "startSeconds is 10 s" in message and f"{m.SECONDS:.3f} s long" in message


def test_trim_inside_the_source_is_kept(in_process: InProcess) -> None:
    result = in_process(
        media("flac.mkv"), {"format": "flac", "startSeconds": 3, "durationSeconds": 5}
    )
    assert abs(result.duration_seconds - (m.SECONDS - 3)) < 0.05
