"""Every format with each preset and an explicit bitrate, checked with ffprobe.

Also loudness normalisation and bit-identical stream copy.
"""

import subprocess
from pathlib import Path

import pytest

from tests.support import media as m
from tests.worker.conftest import RunWorker, media

LOSSY = {
    # format: (ffprobe codec, container, explicit bitrate, tolerance for that bitrate)
    "mp3": ("mp3", "mp3", "128k", 0.05),
    "aac": ("aac", "aac", "160k", 0.15),
    "m4a": ("aac", "mov,mp4,m4a,3gp,3g2,mj2", "160k", 0.15),
    "opus": ("opus", "ogg", "64k", 0.15),
    "ogg": ("vorbis", "ogg", "128k", 0.25),
}
LOSSLESS = {
    "flac": ("flac", "flac", "s16"),
    "wav": ("pcm_s16le", "wav", "s16"),
    "alac": ("alac", "mov,mp4,m4a,3gp,3g2,mj2", "s16p"),
}


def _out(run_dir: Path, result: dict[str, object]) -> Path:
    name = str(result["uri"]).rsplit("/", 1)[1]
    return run_dir / name


@pytest.mark.parametrize("fmt", sorted(LOSSY))
def test_lossy_presets_and_bitrate(run_worker: RunWorker, fmt: str) -> None:
    codec, container, bitrate, tolerance = LOSSY[fmt]
    rates = []
    for quality in ("low", "medium", "high"):
        run = run_worker(
            media("flac.mkv"), {"format": fmt, "quality": quality}, name=f"{fmt}-{quality}"
        )
        assert run.returncode == 0, run.stderr
        probe = m.probe(_out(run.out_dir, run.result))
        assert (probe.codec, probe.format_name) == (codec, container)
        assert probe.channels == 2
        assert probe.sample_rate == 48000
        assert abs(probe.duration - m.SECONDS) < 0.15
        assert run.result["streamCopied"] is False
        assert probe.bit_rate is not None
        rates.append(probe.bit_rate)
    assert rates[0] < rates[1] < rates[2], rates
    run = run_worker(media("flac.mkv"), {"format": fmt, "bitrate": bitrate}, name=f"{fmt}-cbr")
    assert run.returncode == 0, run.stderr
    probe = m.probe(_out(run.out_dir, run.result))
    want = int(bitrate[:-1]) * 1000
    assert probe.bit_rate is not None
    assert abs(probe.bit_rate - want) <= tolerance * want, (probe.bit_rate, want)


@pytest.mark.parametrize("fmt", sorted(LOSSLESS))
def test_lossless_from_lossy_is_16_bit(run_worker: RunWorker, fmt: str) -> None:
    codec, container, sample_fmt = LOSSLESS[fmt]
    run = run_worker(media("av.mp4"), {"format": fmt})
    assert run.returncode == 0, run.stderr
    probe = m.probe(_out(run.out_dir, run.result))
    stream = probe.raw["streams"][0]
    assert (probe.codec, probe.format_name, stream["sample_fmt"]) == (codec, container, sample_fmt)
    assert abs(probe.duration - m.SECONDS) < 0.1
    assert run.result["codec"] == codec and run.result["sampleRate"] == 48000


@pytest.mark.parametrize(("fmt", "codec"), [("flac", "flac"), ("wav", "pcm_s24le")])
def test_lossless_from_hires_keeps_24_bit(run_worker: RunWorker, fmt: str, codec: str) -> None:
    run = run_worker(media("hires.mkv"), {"format": fmt, "sampleRate": 48000})
    assert run.returncode == 0, run.stderr
    probe = m.probe(_out(run.out_dir, run.result))
    stream = probe.raw["streams"][0]
    assert probe.codec == codec and probe.sample_rate == 48000
    assert int(stream.get("bits_per_raw_sample") or stream.get("bits_per_sample")) == 24


def test_sample_rate_channels_trim_and_tags(run_worker: RunWorker) -> None:
    run = run_worker(
        media("av.mp4"),
        {
            "format": "mp3",
            "sampleRate": 22050,
            "channels": 1,
            "startSeconds": 1,
            "durationSeconds": 2,
            "tags": {"title": "Episode 42", "artist": "Ünïcode Artist"},
            "filename": "episode",
        },
    )
    assert run.returncode == 0, run.stderr
    assert run.result["uri"].endswith("/episode.mp3")
    probe = m.probe(run.out_dir / "episode.mp3")
    assert (probe.sample_rate, probe.channels) == (22050, 1)
    assert abs(probe.duration - 2) < 0.1
    assert probe.tags["title"] == "Episode 42" and probe.tags["artist"] == "Ünïcode Artist"
    assert sorted(p.name for p in run.out_dir.iterdir()) == ["episode.mp3"]


def test_opus_maps_unsupported_sample_rates_to_48k(run_worker: RunWorker) -> None:
    run = run_worker(media("av.mp4"), {"format": "opus", "sampleRate": 44100})
    assert run.returncode == 0, run.stderr
    assert m.probe(_out(run.out_dir, run.result)).sample_rate == 48000
    assert any(e["event"] == "note" and "48000" in e["message"] for e in run.logs())


@pytest.mark.parametrize(
    ("fmt", "channels", "layout"),
    [("opus", 6, "5.1"), ("ogg", 6, "5.1"), ("flac", 6, "5.1(side)"), ("mp3", 2, "stereo")],
)
def test_surround_ac3_source(run_worker: RunWorker, fmt: str, channels: int, layout: str) -> None:
    # AC-3 5.1 is 5.1(side): libopus needs it remapped to 5.1, mp3 downmixed to stereo.
    run = run_worker(media("surround.mkv"), {"format": fmt, "normalize": fmt == "opus"})
    assert run.returncode == 0, run.stderr
    stream = next(
        s
        for s in m.probe(_out(run.out_dir, run.result)).raw["streams"]
        if s["codec_type"] == "audio"
    )
    assert (stream["channels"], stream["channel_layout"]) == (channels, layout)


@pytest.mark.parametrize(("fmt", "target"), [("mp3", None), ("m4a", -16.0)])
def test_normalize_hits_the_target(run_worker: RunWorker, fmt: str, target: float | None) -> None:
    output: dict[str, object] = {"format": fmt, "normalize": True}
    if target is not None:
        output["loudness"] = {"integratedLufs": target}
    run = run_worker(media("av.mp4"), output)
    assert run.returncode == 0, run.stderr
    want = -23.0 if target is None else target
    measured = m.integrated_loudness(_out(run.out_dir, run.result))
    assert abs(measured - want) <= 1.0, measured
    assert abs(run.result["loudnessLufs"] - measured) <= 0.3
    assert m.probe(_out(run.out_dir, run.result)).sample_rate == 48000
    events = [e for e in run.logs() if e["event"] == "progress"]
    assert {"measure", "encode"} <= {e["step"] for e in events}
    assert any(e["percent"] == 100.0 for e in events)


@pytest.mark.parametrize(
    ("source", "fmt"),
    [
        ("av.mp4", "m4a"),
        ("av.mp4", "aac"),
        ("av.mkv", "mp3"),
        ("av.webm", "opus"),
        ("vorbis.ogg", "ogg"),
        ("flac.mkv", "flac"),
        ("pcm.mov", "wav"),
        ("alac.mov", "alac"),
    ],
)
def test_stream_copy_is_bit_identical(
    run_worker: RunWorker, media_files: dict[str, Path], source: str, fmt: str
) -> None:
    run = run_worker(media(source), {"format": fmt, "quality": "high"})
    assert run.returncode == 0, run.stderr
    assert run.result["streamCopied"] is True
    out = _out(run.out_dir, run.result)
    assert m.audio_packets_md5(out) == m.audio_packets_md5(media_files[source])


def test_processing_disables_stream_copy(run_worker: RunWorker) -> None:
    run = run_worker(media("av.mp4"), {"format": "m4a", "startSeconds": 1})
    assert run.returncode == 0, run.stderr
    assert run.result["streamCopied"] is False


def test_never_decodes_video(run_worker: RunWorker, media_files: dict[str, Path]) -> None:
    run = run_worker(media("av.mp4"), {"format": "mp3"})
    probe = m.probe(_out(run.out_dir, run.result))
    assert [s["codec_type"] for s in probe.raw["streams"]] == ["audio"]
    # The encode command maps only the audio track and disables video/subtitle/data.
    start = next(e for e in run.logs() if e["event"] == "encode-start")
    assert start["streamCopy"] is False
    out = subprocess.run(
        ["ffprobe", "-v", "error", str(media_files["av.mp4"])], capture_output=True, check=True
    )
    assert out.returncode == 0
