"""Loudness normalisation on a dynamic source, measured with ebur128 in the test.

The source is pink noise with loud and quiet sections (loudness range about 9 LU,
above the default 7 LU target: where loudnorm's dynamic mode misses the target).
"""

from pathlib import Path

import pytest

from tests.support import media as m
from tests.support.http_server import MediaServer
from tests.worker.conftest import InProcess, RunWorker, media

TOLERANCE_LU = 0.5


@pytest.mark.parametrize(
    ("fmt", "target", "peak", "method"),
    [
        ("flac", -23.0, -1.0, "linear"),
        ("mp3", -23.0, -1.0, "linear"),
        ("opus", -16.0, -1.0, "linear"),
        # +7 dB on a source peaking at -7.5 dBTP: only a limiter keeps the peak down.
        ("wav", -11.0, -1.0, "linear+limiter"),
        ("m4a", -11.0, -1.0, "linear+limiter"),
        ("ogg", -11.0, -2.0, "linear+limiter"),
        ("aac", -14.0, -1.0, None),
        ("alac", -14.0, -1.0, None),
    ],
)
def test_dynamic_source_meets_the_target(
    in_process: InProcess, fmt: str, target: float, peak: float, method: str | None
) -> None:
    src = m.dynamic(in_process.media_dir)
    source = m.r128(src)
    result = in_process(
        media(src.name),
        {
            "format": fmt,
            "normalize": True,
            "loudness": {"integratedLufs": target, "truePeakDb": peak},
        },
    )
    got = m.r128(in_process.path(result))
    assert abs(got.integrated - target) <= TOLERANCE_LU, (fmt, got)
    assert got.true_peak <= peak, (fmt, got)
    loud = result.loudness
    assert loud is not None and loud.target_met is True, loud
    if method is not None:
        assert loud.method == method
    # The result's figures agree with the test's own measurement.
    assert loud.input_integrated_lufs == pytest.approx(source.integrated, abs=0.2)
    assert loud.input_true_peak_db == pytest.approx(source.true_peak, abs=0.2)
    assert loud.input_lra is not None and loud.input_lra > 7
    assert loud.integrated_lufs == pytest.approx(got.integrated, abs=0.15)
    assert result.loudness_lufs == loud.integrated_lufs
    # The loudness range is kept, and said so.
    assert "loudness range" in str(loud.reason)


def test_short_clip_says_why(in_process: InProcess) -> None:
    src = m.lavfi_wav(in_process.media_dir, "short.wav", "anoisesrc=color=pink:d=0.3")
    result = in_process(media(src.name), {"format": "flac", "normalize": True})
    loud = result.loudness
    assert loud is not None
    assert (loud.method, loud.target_met) == ("none", False)
    assert "0.30 s long" in str(loud.reason) and result.loudness_lufs is None
    assert abs(result.duration_seconds - 0.3) < 0.01


def test_digital_silence_says_why(in_process: InProcess) -> None:
    src = m.lavfi_wav(in_process.media_dir, "silence.wav", "anullsrc=r=48000:cl=stereo:d=2")
    result = in_process(media(src.name), {"format": "mp3", "normalize": True})
    loud = result.loudness
    assert loud is not None and (loud.method, loud.target_met) == ("none", False)
    assert "digital silence" in str(loud.reason) and loud.integrated_lufs is None


def test_every_pass_streams_through_the_proxy(
    run_worker: RunWorker, media_server: MediaServer, media_files: dict[str, Path]
) -> None:
    src = m.dynamic(next(iter(media_files.values())).parent)
    run = run_worker(
        {"url": media_server.url(f"range/{src.name}")},
        {"format": "m4a", "normalize": True, "loudness": {"integratedLufs": -11}},
    )
    assert run.returncode == 0, run.stderr
    passes = [e for e in run.logs() if e["event"] == "loudness-pass"]
    assert passes and run.result["loudness"]["targetMet"] is True
    got = m.r128(run.out_dir / run.result["uri"].rsplit("/", 1)[1])
    assert abs(got.integrated + 11) <= TOLERANCE_LU and got.true_peak <= -1.0
