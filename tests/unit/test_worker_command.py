"""The worker's pure parts: encode plans, layouts, tags, ffmpeg arguments, loudness, result JSON."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audioextract.api.constants import ErrorCode, Format
from audioextract.api.spec import Loudness, Output
from audioextract.api.status import JobError, JobResult
from audioextract.api.validation import output_filename
from audioextract.worker import loudness
from audioextract.worker.command import (
    CARRIED_LAYOUTS,
    CHANNEL_COUNTS,
    DEMUXERS,
    AudioInfo,
    InputSpec,
    build_command,
    build_measure_command,
    loudness_targets,
    muxer_tags,
    parse_ebur128,
    plan_encode,
    plan_layout,
)
from audioextract.worker.job import mp4_index_first
from audioextract.worker.log import redact_url
from audioextract.worker.loudness import GainPlan, Measurement
from audioextract.worker.main import result_json, scrub
from audioextract.worker.result import average_bitrate
from tests.support.builders import job_result

AAC = AudioInfo(codec="aac", sample_rate=44100, channels=2, bit_rate=128000)
FLAC24 = AudioInfo(codec="flac", sample_rate=96000, channels=2, bits=24)


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


def test_opus_surround_from_a_source_without_a_declared_layout() -> None:
    # AC-3 probed with 6 channels but no layout name still maps to 5.1 (family 1).
    ac3 = AudioInfo(codec="ac3", sample_rate=48000, channels=6)
    plan = plan_encode(out(format="opus"), ac3)
    assert plan.layout == "5.1" and plan.options["mapping_family"] == 1
    inp = InputSpec("file:/in.mkv", {})
    args = build_command(inp, plan, "/out.opus", audio_filter="volume=2dB")
    assert args[args.index("-af") + 1] == "channelmap=channel_layout=5.1,volume=2dB"


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


def test_loudness_targets() -> None:
    targets = loudness_targets(out(loudness={"integratedLufs": -16}))
    assert targets == Loudness(integrated_lufs=-16, true_peak_db=-1, lra=7)


TARGETS = Loudness(integrated_lufs=-16, true_peak_db=-1, lra=7)


def test_gain_is_linear_while_peaks_fit() -> None:
    quiet = Measurement(integrated=-30.5, threshold=-40.9, lra=9.0, true_peak=-20.0)
    plan = loudness.plan_gain(TARGETS, quiet, lossy=False)
    assert plan == GainPlan(14.5) and plan.method == "linear"
    assert loudness.gain_filter(plan, 48000) == "volume=14.50dB"


def test_limiter_only_where_the_gain_pushes_peaks_over() -> None:
    peaky = Measurement(integrated=-20.0, threshold=-30.0, lra=9.0, true_peak=-2.0)
    plan = loudness.plan_gain(TARGETS, peaky, lossy=True)
    assert plan.gain_db == 4.0 and plan.ceiling_db == -1.5 and plan.method == "linear+limiter"
    chain = loudness.gain_filter(plan, 44100)
    assert chain.startswith("volume=4.00dB,aresample=192000,alimiter=limit=0.84140")
    assert chain.endswith(",aresample=44100") and "level=false" in chain


def test_correction_moves_gain_and_lowers_the_ceiling() -> None:
    measured = Measurement(integrated=-20.0, threshold=-30.0, lra=9.0, true_peak=-2.0)
    first = GainPlan(4.0, -1.5)
    output = Measurement(integrated=-16.6, threshold=-26.0, lra=9.0, true_peak=-0.6)
    assert not loudness.on_target(TARGETS, output)
    nxt = loudness.correct(first, TARGETS, measured, output)
    assert nxt.gain_db == pytest.approx(4.6)
    assert nxt.ceiling_db == pytest.approx(-1.5 - 0.4 - loudness.PEAK_STEP_DB)
    good = Measurement(integrated=-16.2, threshold=-26.0, lra=9.0, true_peak=-1.2)
    assert loudness.on_target(TARGETS, good)


def test_unmeasurable_audio_says_why() -> None:
    ok = Measurement(-20.0, -30.0, 3.0, -5.0)
    assert loudness.unmeasurable(ok, 3.0) is None
    assert "0.30 s long" in str(loudness.unmeasurable(ok, 0.3))
    silent = Measurement(-70.0, 0.0, 0.0, float("-inf"))
    assert "digital silence" in str(loudness.unmeasurable(silent, 2.0))
    assert "absolute gate" in str(loudness.unmeasurable(Measurement(-70, 0, 0, -60), 2.0))
    res = loudness.result(TARGETS, silent, None, None, "the audio is digital silence")
    assert (res.method, res.target_met, res.input_true_peak_db) == ("none", False, None)


def test_result_reports_a_miss() -> None:
    measured = Measurement(-20.0, -30.0, 3.0, -2.0)
    miss = Measurement(-17.0, -27.0, 3.0, -1.0)
    res = loudness.result(TARGETS, measured, miss, GainPlan(4.0, -1.5))
    assert res.target_met is False and "after 3 passes" in str(res.reason)
    hit = loudness.result(TARGETS, measured, Measurement(-16.1, -26, 3, -1.1), GainPlan(4.0))
    assert hit.target_met is True and hit.integrated_lufs == -16.1


@pytest.mark.parametrize(
    ("fmt", "src", "channels", "want", "kind"),
    [
        ("opus", "5.1(side)", None, "5.1", "aformat"),
        ("ogg", "4.0", None, "quad", "aformat"),
        ("flac", "2.1", None, "stereo", "aformat"),
        ("alac", "7.1", None, "7.1(wide)", "channelmap"),
        ("alac", "quad", None, "5.0", "aformat"),
        ("mp3", "7.1", None, "stereo", "aformat"),
        ("wav", "5.1(side)", None, "5.1(side)", None),
        ("aac", "5.1(side)", None, "5.1", "aformat"),
        ("m4a", "stereo", 1, "mono", "aformat"),
        ("opus", None, 6, "5.1", "channelmap"),
    ],
)
def test_layouts(
    fmt: str, src: str | None, channels: int | None, want: str, kind: str | None
) -> None:
    count = {"5.1(side)": 6, "4.0": 4, "2.1": 3, "7.1": 8, "quad": 4, "stereo": 2}.get(src or "", 6)
    plan = plan_layout(Format(fmt), src, count, channels)
    assert plan.layout == want
    carried = CARRIED_LAYOUTS[Format(fmt)]
    assert carried is None or plan.layout in carried
    assert (plan.filter or "").split("=")[0] == (kind or "")


def test_opus_surround_uses_mapping_family_1() -> None:
    src = AudioInfo(codec="ac3", sample_rate=48000, channels=6, layout="5.1(side)")
    plan = plan_encode(out(format="opus"), src)
    assert plan.options["mapping_family"] == 1 and plan.layout == "5.1"
    assert plan.filters() == "aformat=channel_layouts=5.1"
    assert "mapping_family" not in plan_encode(out(format="opus"), AAC).options


def test_tags_split_by_format() -> None:
    tags = {"title": "T", "language": "eng", "mykey": "v"}
    m4a = muxer_tags(Format.M4A, tags)
    assert m4a.global_tags == {"title": "T"} and m4a.stream_tags == {"language": "eng"}
    assert m4a.freeform == {"mykey": "v"}
    assert muxer_tags(Format.ALAC, {"language": "English"}).freeform == {"language": "English"}
    ogg = muxer_tags(Format.OGG, tags)
    assert ogg.global_tags == tags and ogg.stream_tags == {"language": "eng"} and not ogg.freeform
    args = build_command(
        InputSpec("file:/x", {}), plan_encode(out(format="aac"), FLAC24), "/o.aac", tags=tags
    )
    joined = " ".join(args)
    assert "-write_id3v2 1" in joined and "-map_metadata -1" in joined
    assert "-metadata:s:a:0 language=eng" in joined


def test_wav_refuses_keys_riff_info_cannot_hold() -> None:
    with pytest.raises(ValueError, match=r"wav \(RIFF INFO\) holds only"):
        out(format="wav", tags={"mykey": "v"})
    out(format="wav", tags={"title": "T", "language": "eng"})


def test_average_bitrate() -> None:
    assert average_bitrate(12_000, 1.0) == 96_000
    assert average_bitrate(10, 0.0) is None


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
    silent = parse_ebur128(SUMMARY.replace("-17.7", "-inf"))
    assert silent is not None and silent.true_peak == float("-inf")


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


def test_truncation_checks() -> None:
    from audioextract.worker.errors import WorkerError
    from audioextract.worker.truncation import check_complete, check_trim

    info = AudioInfo(codec="aac", sample_rate=48000, channels=2, duration=10.0)
    check_complete("src", info, 9.7, 10.0, None)  # within 0.5 s
    with pytest.raises(
        WorkerError, match=r"only 4\.80 s of audio could be decoded of the 10\.00 s"
    ):
        check_complete("src", info, 4.8, 10.0, None)
    estimated = AudioInfo(codec="mp3", sample_rate=48000, channels=2, duration_estimated=True)
    check_complete("src", estimated, 4.8, 10.0, None)  # an estimate proves nothing
    with pytest.raises(WorkerError, match="startSeconds is 12 s") as err:
        check_trim(12.0, 10.0)
    assert err.value.code == ErrorCode.INVALID_SPEC
    with pytest.raises(WorkerError, match="ends before it"):
        check_complete("src", estimated, 0.0, None, 3.0)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(list(Format)),
    st.sampled_from([*CHANNEL_COUNTS, "hexagonal", "downmix", None]),
    st.integers(1, 8),
    st.one_of(st.none(), st.integers(1, 8)),
)
def test_every_layout_lands_on_one_the_format_carries(
    fmt: Format, layout: str | None, count: int, channels: int | None
) -> None:
    if layout in CHANNEL_COUNTS:
        count = CHANNEL_COUNTS[layout]
    if fmt == Format.MP3 and channels is not None:
        channels = min(channels, 2)
    plan = plan_layout(fmt, layout, count, channels)
    carried = CARRIED_LAYOUTS[fmt]
    assert carried is None or plan.layout in carried
    wanted = channels or count
    # Never more channels than asked for, except the one documented silent centre.
    assert CHANNEL_COUNTS[plan.layout] <= wanted or (fmt, plan.layout) == (Format.ALAC, "5.0")
    if plan.layout != layout:
        assert plan.filter is not None
