"""The output-size limit derived from the format and the media-seconds limit."""

import pytest

from audioextract.api.constants import Format
from audioextract.api.spec import Output
from audioextract.worker import limits
from audioextract.worker.command import AudioInfo, plan_encode

HOUR = 3600.0
STEREO_48K = AudioInfo(codec="aac", sample_rate=48000, channels=2, bit_rate=128000)


def _limit(output: Output, info: AudioInfo = STEREO_48K) -> int:
    plan = plan_encode(output, info)
    return limits.for_encode(HOUR, None, plan, info, output.bitrate).max_output_bytes


def test_wav_limit_is_pcm_size_of_the_media_limit() -> None:
    pcm = 48000 * 2 * 2 * HOUR
    assert pcm < _limit(Output(format=Format.WAV)) <= pcm * 1.1 + limits.OUTPUT_OVERHEAD_BYTES


def test_limit_follows_the_planned_rate_and_channels() -> None:
    small = _limit(Output(format=Format.WAV, sample_rate=8000, channels=1))
    big = _limit(Output(format=Format.WAV, sample_rate=96000, channels=8))
    assert big > 20 * small


@pytest.mark.parametrize("fmt", [Format.MP3, Format.OPUS, Format.OGG, Format.AAC, Format.M4A])
def test_lossy_limit_covers_the_highest_presets_and_not_much_more(fmt: Format) -> None:
    limit = _limit(Output(format=fmt, quality="high"))
    assert 320_000 / 8 * HOUR < limit < 1_000_000 / 8 * HOUR


def test_explicit_bitrate_raises_the_lossy_limit() -> None:
    assert _limit(Output(format=Format.AAC, bitrate="2000k")) > 2_000_000 / 8 * HOUR


def test_configured_size_caps_the_derived_one() -> None:
    plan = plan_encode(Output(format=Format.WAV), STEREO_48K)
    assert limits.for_encode(HOUR, 1234, plan, STEREO_48K, None).max_output_bytes == 1234
    derived = limits.for_encode(HOUR, None, plan, STEREO_48K, None).max_output_bytes
    assert limits.for_encode(HOUR, 10**15, plan, STEREO_48K, None).max_output_bytes == derived


def test_options_go_before_the_output() -> None:
    bounds = limits.Limits(max_seconds=10, max_output_bytes=99)
    args = bounds.apply(["ffmpeg", "-i", "in", "out.wav"])
    assert args == ["ffmpeg", "-i", "in", "-t", "11.000", "-fs", "100", "out.wav"]
    assert bounds.apply(["ffmpeg", "-i", "in", "-"], output_size=False)[-3:] == [
        "-t",
        "11.000",
        "-",
    ]
