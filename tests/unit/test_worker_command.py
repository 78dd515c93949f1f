"""The worker's pure parts: encode plans, ffmpeg arguments, loudnorm, result JSON, helpers."""

import json

import pytest

from audioextract.api.constants import ErrorCode, Format
from audioextract.api.spec import Loudness, Output
from audioextract.api.status import JobError, JobResult
from audioextract.worker.command import (
    DEMUXERS,
    AudioInfo,
    InputSpec,
    Measurement,
    build_command,
    build_measure_command,
    loudness_targets,
    loudnorm_filter,
    output_filename,
    parse_ebur128,
    plan_encode,
)
from audioextract.worker.job import mp4_index_first
from audioextract.worker.log import redact_url
from audioextract.worker.main import result_json, scrub
from tests.support.builders import job_result

AAC = AudioInfo(codec="aac", sample_rate=44100, channels=2, bit_rate=128000)
FLAC24 = AudioInfo(codec="flac", sample_rate=96000, channels=2, bits=24)
MP3 = AudioInfo(codec="mp3", sample_rate=44100, channels=2, bit_rate=192000)


def out(**kw: object) -> Output:
    return Output.model_validate({"format": "mp3", **kw})


@pytest.mark.parametrize(
    ("fmt", "codec", "copy"),
    [
        ("m4a", "aac", True),
        ("aac", "aac", True),
        ("mp3", "aac", False),
        ("flac", "flac", True),
        ("wav", "pcm_s16le", True),
        ("opus", "opus", True),
        ("ogg", "vorbis", True),
        ("alac", "alac", True),
        ("ogg", "opus", False),
        ("alac", "aac", False),
    ],
)
def test_stream_copy_when_codec_fits(fmt: str, codec: str, copy: bool) -> None:
    src = AudioInfo(codec=codec, sample_rate=48000, channels=2)
    plan = plan_encode(out(format=fmt), src)
    assert plan.stream_copy is copy
    assert (plan.codec == "copy") is copy


@pytest.mark.parametrize(
    "extra",
    [
        {"normalize": True},
        {"startSeconds": 1},
        {"durationSeconds": 5},
        {"sampleRate": 48000},
        {"channels": 1},
        {"bitrate": "64k"},
    ],
)
def test_processing_prevents_stream_copy(extra: dict[str, object]) -> None:
    assert plan_encode(out(format="m4a", **extra), AAC).stream_copy is False


def test_same_values_as_source_keep_stream_copy() -> None:
    plan = plan_encode(
        out(format="m4a", sampleRate=44100, channels=2, bitrate="128k", quality=None), AAC
    )
    assert plan.stream_copy is True


def test_presets_and_explicit_bitrate() -> None:
    assert plan_encode(out(quality="high"), AAC).options == {"q:a": 2}
    assert plan_encode(out(quality="low"), AAC).options == {"q:a": 6}
    assert plan_encode(out(), AAC).options == {"q:a": 4}
    assert plan_encode(out(bitrate="192k"), AAC).options == {"b:a": "192k"}
    assert plan_encode(out(format="opus", bitrate="64k"), AAC).options == {
        "b:a": "64k",
        "vbr": "off",
    }
    assert plan_encode(out(format="ogg", quality="medium"), AAC).options == {"q:a": 5}
    # Every AAC encode uses the coder chosen on measurements (docs/performance.md).
    assert plan_encode(out(format="m4a", quality="low"), MP3).options == {
        "b:a": "96k",
        "aac_coder": "fast",
    }
    assert plan_encode(out(format="aac", bitrate="160k"), MP3).options == {
        "b:a": "160k",
        "aac_coder": "fast",
    }


@pytest.mark.parametrize(
    ("asked", "got"), [(None, 48000), (44100, 48000), (22050, 48000), (24000, 24000)]
)
def test_opus_sample_rates(asked: int | None, got: int) -> None:
    plan = plan_encode(out(format="opus", sampleRate=asked), AAC)
    assert plan.sample_rate == got


def test_mp3_limits() -> None:
    plan = plan_encode(out(format="mp3"), AudioInfo(codec="ac3", sample_rate=96000, channels=6))
    assert (plan.sample_rate, plan.channels) == (48000, 2)
    assert len(plan.notes) == 2


def test_lossless_bit_depth() -> None:
    assert plan_encode(out(format="flac"), AAC).sample_fmt == "s16"
    assert plan_encode(out(format="flac", sampleRate=48000), FLAC24).sample_fmt == "s32"
    assert plan_encode(out(format="wav"), FLAC24).codec == "pcm_s24le"
    assert plan_encode(out(format="wav"), AAC).codec == "pcm_s16le"
    assert plan_encode(out(format="alac"), AAC).sample_fmt == "s16p"


def test_command_maps_audio_only_and_hardens_input() -> None:
    inp = InputSpec(
        "http://127.0.0.1:1/t",
        {"protocol_whitelist": "http,tcp", "format_whitelist": DEMUXERS},
        audio_track=2,
        start=1.5,
        duration=3,
    )
    plan = plan_encode(out(format="mp3", tags={"title": "T"}), AAC)
    args = build_command(inp, plan, "/tmp/o.mp3", tags={"title": "T"})
    assert args[0] == "ffmpeg"
    joined = " ".join(args)
    assert "-map 0:a:2" in joined
    for flag in ("-vn", "-sn", "-dn", "-nostdin"):
        assert flag in args
    i = args.index("-i")
    assert args.index("-protocol_whitelist") < i and args.index("-format_whitelist") < i
    assert args.index("-ss") < i and args[args.index("-ss") + 1] == "1.500"
    assert "metadata:g:0" in joined and "title=T" in args
    assert "file" not in args[args.index("-protocol_whitelist") + 1]
    assert "hls" not in DEMUXERS.split(",") and "concat" not in DEMUXERS.split(",")
    assert args[-1] == "/tmp/o.mp3"


def test_measure_command_uses_ebur128() -> None:
    args = build_measure_command(InputSpec("file:/x", {}), audio_filter=None)
    assert "ebur128=peak=true:framelog=verbose" in args and args[-1] == "-"


def test_loudnorm_targets_and_filter() -> None:
    targets = loudness_targets(out(loudness={"integratedLufs": -16}))
    assert targets == Loudness(integrated_lufs=-16, true_peak_db=-1, lra=7)
    text = loudnorm_filter(
        targets, Measurement(integrated=-30.5, threshold=-40.9, lra=3.2, true_peak=-12.0)
    )
    assert text.startswith("loudnorm=I=-16.00:TP=-1.00:LRA=7.00:measured_I=-30.50")
    assert "linear=true" in text and "measured_thresh=-40.90" in text


SUMMARY = """[Parsed_ebur128_0 @ 0x1] Summary:

  Integrated loudness:
    I:         -21.8 LUFS
    Threshold: -31.9 LUFS

  Loudness range:
    LRA:         0.0 LU
    Threshold:   0.0 LUFS
    LRA low:     0.0 LUFS
    LRA high:    0.0 LUFS

  True peak:
    Peak:      -17.7 dBFS
"""


def test_parse_ebur128() -> None:
    assert parse_ebur128(SUMMARY) == Measurement(-21.8, -31.9, 0.0, -17.7)
    assert parse_ebur128("nothing") is None
    assert parse_ebur128(SUMMARY.replace("-21.8", "-inf")) is None


@pytest.mark.parametrize(
    ("fmt", "filename", "name", "want"),
    [
        ("mp3", None, "job", "job.mp3"),
        ("alac", "x", "job", "x.m4a"),
        ("flac", "a.flac", "j", "a.flac"),
        ("opus", "a.FLAC", "j", "a.FLAC.opus"),
    ],
)
def test_output_filename(fmt: str, filename: str | None, name: str, want: str) -> None:
    assert output_filename(Output(format=Format(fmt), filename=filename), name) == want


def test_mp4_index_first() -> None:
    ftyp = (16).to_bytes(4, "big") + b"ftypisom" + b"\0" * 4
    moov = (8).to_bytes(4, "big") + b"moov"
    mdat = (8).to_bytes(4, "big") + b"mdat"
    assert mp4_index_first(ftyp + moov + mdat)
    assert not mp4_index_first(ftyp + mdat + moov)
    assert not mp4_index_first(b"garbage")


def test_redact_url() -> None:
    assert (
        redact_url("https://user:pw@host:8443/a/b.mp4?X-Amz-Signature=s#f")
        == "https://host:8443/a/b.mp4"
    )


def test_result_json_bounded_and_valid() -> None:
    err = JobError(
        code=ErrorCode.DECODE_FAILED,
        message=scrub("x" * 5000 + " https://h/p?sig=secret"),
        retryable=False,
    )
    text = result_json(err)
    assert len(text.encode()) <= 4096
    JobError.model_validate(json.loads(text)["error"])
    assert "secret" not in scrub("failed: https://h/p?sig=secret and more")
    res = job_result(uri="s3://b/" + "k" * 4080, size_bytes=1, duration_seconds=1, sha256="0" * 64)
    text = result_json(res)
    assert len(text.encode()) <= 4096
    JobResult.model_validate(json.loads(text))


def test_argument_lists_are_exactly_those_ffmpeg_python_built() -> None:
    # The lists the worker ran while it built them with ffmpeg-python (input options
    # sorted, -map, -f first, then the output options sorted): unchanged without it.
    inp = InputSpec(
        "http://127.0.0.1:1/t",
        {"protocol_whitelist": "http,tcp", "rw_timeout": 40000000, "max_redirects": 0},
        audio_track=2,
        start=1.5,
        duration=3,
    )
    output = out(format="flac", sampleRate=48000, channels=1, tags={"title": "T", "artist": "A"})
    args = build_command(
        inp,
        plan_encode(output, AAC),
        "/tmp/o.flac",
        audio_filter="loudnorm=I=-23",
        tags=output.tags,
    )
    assert args == [
        *("ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y"),
        *("-progress", "pipe:1", "-max_redirects", "0", "-protocol_whitelist", "http,tcp"),
        *("-rw_timeout", "40000000", "-ss", "1.500", "-t", "3.000"),
        *("-i", "http://127.0.0.1:1/t", "-map", "0:a:2", "-f", "flac", "-ac", "1"),
        *("-af", "loudnorm=I=-23", "-ar", "48000", "-c:a", "flac", "-dn"),
        *("-metadata:g:0", "artist=A", "-metadata:g:1", "title=T", "-sample_fmt", "s16"),
        *("-sn", "-vn", "/tmp/o.flac"),
    ]
    measure = build_measure_command(
        InputSpec("file:/x", {"protocol_whitelist": "file"}), audio_filter="volume=2"
    )
    assert measure == [
        *("ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info", "-y"),
        *("-progress", "pipe:1", "-protocol_whitelist", "file", "-i", "file:/x"),
        *("-map", "0:a:0", "-f", "null"),
        *("-af", "volume=2,ebur128=peak=true:framelog=verbose", "-dn", "-sn", "-vn", "-"),
    ]
