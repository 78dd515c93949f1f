"""The pure part of the worker: which codec, container and options, as ffmpeg arguments.

Nothing here touches the network or the disk, so every decision (presets, stream
copy, bit depth, opus sample rates, loudnorm parameters) is unit-tested directly.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from audioextract.api.constants import Format, Quality
from audioextract.api.defaults import DEFAULT_LOUDNESS, DEFAULT_QUALITY
from audioextract.api.spec import Loudness, Output

# Demuxers a source may use. Left out on purpose: hls, dash, concat, image2,
# playlists and anything else that opens further URLs or local files.
DEMUXERS = (
    "mov,matroska,avi,flv,mpegts,mpeg,asf,ogg,wav,w64,mp3,aac,flac,ac3,eac3,dts,truehd,"
    "mlp,caf,aiff,wv,ape,tta,amr,au,mxf,nut,rm,dv,gxf,tak"
)

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MP3_MAX_RATE = 48000
LOSSLESS_SOURCE_CODECS = re.compile(r"^(pcm_.*|flac|alac|wavpack|truehd|mlp|tta|ape|tak)$")
# An explicit bitrate within this fraction of the source's does not force a re-encode.
BITRATE_COPY_TOLERANCE = 0.05


@dataclass(frozen=True)
class FormatSpec:
    """How one output format is produced."""

    encoder: str
    muxer: str
    extension: str
    lossless: bool
    copy_from: frozenset[str]


FORMATS: dict[Format, FormatSpec] = {
    Format.MP3: FormatSpec("libmp3lame", "mp3", ".mp3", False, frozenset({"mp3"})),
    # A .aac file is raw ADTS, which every player expects from that extension;
    # m4a is the same codec in an MP4 (iPod) container.
    Format.AAC: FormatSpec("aac", "adts", ".aac", False, frozenset({"aac"})),
    Format.M4A: FormatSpec("aac", "ipod", ".m4a", False, frozenset({"aac"})),
    Format.FLAC: FormatSpec("flac", "flac", ".flac", True, frozenset({"flac"})),
    Format.WAV: FormatSpec("pcm_s16le", "wav", ".wav", True, frozenset({"pcm_s16le", "pcm_s24le"})),
    Format.OPUS: FormatSpec("libopus", "opus", ".opus", False, frozenset({"opus"})),
    Format.OGG: FormatSpec("libvorbis", "ogg", ".ogg", False, frozenset({"vorbis"})),
    Format.ALAC: FormatSpec("alac", "ipod", ".m4a", True, frozenset({"alac"})),
}

# ffmpeg's native AAC encoder's coder (quantisation search). Measured on speech, music
# and noise at every preset bitrate (bench/aac_coder.py, docs/performance.md): "fast"
# is 1.5-7x faster than the default "twoloop" at the same or better null-test SNR
# (speech +6-8 dB, noise equal, music within 1 dB), so every AAC encode uses it.
AAC_CODER = "fast"

# VBR presets per codec. ffmpeg's native AAC encoder's VBR mode is experimental and
# poorly tuned, so its presets are average-bitrate targets instead.
QUALITY_PRESETS: dict[Format, dict[Quality, dict[str, Any]]] = {
    Format.MP3: {Quality.LOW: {"q:a": 6}, Quality.MEDIUM: {"q:a": 4}, Quality.HIGH: {"q:a": 2}},
    Format.OGG: {Quality.LOW: {"q:a": 3}, Quality.MEDIUM: {"q:a": 5}, Quality.HIGH: {"q:a": 7}},
    Format.OPUS: {
        Quality.LOW: {"b:a": "64k", "vbr": "on"},
        Quality.MEDIUM: {"b:a": "96k", "vbr": "on"},
        Quality.HIGH: {"b:a": "128k", "vbr": "on"},
    },
    Format.AAC: {
        Quality.LOW: {"b:a": "96k"},
        Quality.MEDIUM: {"b:a": "128k"},
        Quality.HIGH: {"b:a": "192k"},
    },
    Format.M4A: {
        Quality.LOW: {"b:a": "96k"},
        Quality.MEDIUM: {"b:a": "128k"},
        Quality.HIGH: {"b:a": "192k"},
    },
}


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe says about the selected audio stream of the source."""

    codec: str
    sample_rate: int
    channels: int
    bit_rate: int | None = None
    bits: int | None = None
    duration: float | None = None


@dataclass(frozen=True)
class EncodePlan:
    """The decisions for one output, before any path or URL is known."""

    format: Format
    spec: FormatSpec
    stream_copy: bool
    codec: str
    sample_rate: int | None = None
    channels: int | None = None
    sample_fmt: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputSpec:
    """Where ffmpeg reads the source and with which input options."""

    url: str
    options: dict[str, Any]
    audio_track: int = 0
    start: float | None = None
    duration: float | None = None


@dataclass(frozen=True)
class Measurement:
    """EBU R128 figures from the ebur128 filter."""

    integrated: float
    threshold: float
    lra: float
    true_peak: float


def bitrate_bps(text: str) -> int:
    """``"192k"`` as bits per second."""
    return int(text.removesuffix("k")) * 1000


def output_filename(output: Output, task_name: str) -> str:
    """output.filename or the task's name, with the format's extension added when missing."""
    spec = FORMATS[Format(output.format or Format.MP3)]
    name = output.filename or task_name
    return name if name.lower().endswith(spec.extension) else name + spec.extension


def _wants_processing(output: Output, src: AudioInfo) -> list[str]:
    reasons = []
    if output.normalize:
        reasons.append("normalize")
    if output.start_seconds or output.duration_seconds:
        reasons.append("trim")
    if output.sample_rate is not None and output.sample_rate != src.sample_rate:
        reasons.append("sampleRate")
    if output.channels is not None and output.channels != src.channels:
        reasons.append("channels")
    if output.bitrate is not None:
        wanted = bitrate_bps(output.bitrate)
        if src.bit_rate is None or abs(src.bit_rate - wanted) > BITRATE_COPY_TOLERANCE * wanted:
            reasons.append("bitrate")
    return reasons


def plan_encode(output: Output, src: AudioInfo) -> EncodePlan:
    """Decide codec, options and whether the source's audio can be copied as it is."""
    fmt = Format(output.format or Format.MP3)
    spec = FORMATS[fmt]
    if not _wants_processing(output, src) and src.codec in spec.copy_from:
        return EncodePlan(format=fmt, spec=spec, stream_copy=True, codec="copy")

    notes: list[str] = []
    # Widened to int: the spec's rate is a Literal, the plan may pick another rate.
    rate: int | None = output.sample_rate
    effective_rate = rate or src.sample_rate
    if fmt == Format.OPUS and effective_rate not in OPUS_RATES:
        notes.append(
            f"opus supports 8/12/16/24/48 kHz only: {effective_rate} Hz encoded at 48000 Hz"
        )
        rate = 48000
    elif fmt == Format.MP3 and effective_rate > MP3_MAX_RATE:
        notes.append(f"mp3 supports at most 48 kHz: {effective_rate} Hz encoded at 48000 Hz")
        rate = MP3_MAX_RATE
    elif output.normalize and rate is None:
        # loudnorm works at 192 kHz internally; say which rate to come back to.
        rate = src.sample_rate

    channels = output.channels
    if fmt == Format.MP3 and channels is None and src.channels > 2:
        notes.append(
            f"mp3 supports at most 2 channels: {src.channels} channels downmixed to stereo"
        )
        channels = 2

    codec = spec.encoder
    sample_fmt = None
    options: dict[str, Any] = {}
    if spec.lossless:
        deep = bool(LOSSLESS_SOURCE_CODECS.match(src.codec)) and (src.bits or 16) > 16
        if fmt == Format.WAV:
            codec = "pcm_s24le" if deep else "pcm_s16le"
        elif fmt == Format.FLAC:
            sample_fmt = "s32" if deep else "s16"
        elif fmt == Format.ALAC:
            sample_fmt = "s32p" if deep else "s16p"
    elif output.bitrate is not None:
        options["b:a"] = output.bitrate
        if fmt == Format.OPUS:
            options["vbr"] = "off"
    else:
        quality = Quality(output.quality or DEFAULT_QUALITY)
        options.update(QUALITY_PRESETS[fmt][quality])
    if codec == "aac":
        options["aac_coder"] = AAC_CODER
    return EncodePlan(
        format=fmt,
        spec=spec,
        stream_copy=False,
        codec=codec,
        sample_rate=rate,
        channels=channels,
        sample_fmt=sample_fmt,
        options=options,
        notes=tuple(notes),
    )


def loudness_targets(output: Output) -> Loudness:
    """output.loudness over DEFAULT_LOUDNESS, field by field."""
    own = output.loudness.model_dump(exclude_none=True) if output.loudness else {}
    return Loudness.model_validate({**DEFAULT_LOUDNESS.model_dump(), **own})


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def loudnorm_filter(targets: Loudness, measured: Measurement) -> str:
    """The second-pass loudnorm filter: linear gain from the first pass's measurement.

    loudnorm itself falls back to its dynamic mode when linear gain would push the
    true peak over the target or the source's range exceeds the target range.
    """
    params = {
        "I": targets.integrated_lufs,
        "TP": targets.true_peak_db,
        "LRA": targets.lra,
        "measured_I": _clamp(measured.integrated, -99, 0),
        "measured_TP": _clamp(measured.true_peak, -99, 99),
        "measured_LRA": _clamp(measured.lra, 0, 99),
        "measured_thresh": _clamp(measured.threshold, -99, 0),
        "linear": "true",
        "print_format": "none",
    }
    return "loudnorm=" + ":".join(
        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


_SUMMARY = re.compile(
    r"Integrated loudness:\s*I:\s*(?P<i>-?[\d.]+|-inf)\s*LUFS"
    r"\s*Threshold:\s*(?P<thr>-?[\d.]+|-inf)\s*LUFS"
    r".*?Loudness range:\s*LRA:\s*(?P<lra>-?[\d.]+)\s*LU"
    r"(?:.*?True peak:\s*Peak:\s*(?P<tp>-?[\d.]+|-inf)\s*dBFS)?",
    re.S,
)


def parse_ebur128(stderr: str) -> Measurement | None:
    """The ebur128 filter's summary from ffmpeg's log; None when absent or silent."""
    matches = list(_SUMMARY.finditer(stderr))
    if not matches:
        return None
    m = matches[-1]
    if m["i"] == "-inf":
        return None
    peak = m["tp"]
    return Measurement(
        integrated=float(m["i"]),
        threshold=-70.0 if m["thr"] == "-inf" else float(m["thr"]),
        lra=float(m["lra"]),
        true_peak=-99.0 if peak in (None, "-inf") else float(peak),
    )


def _base_args(loglevel: str) -> list[str]:
    return ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", loglevel, "-y"]


def _options(options: dict[str, Any]) -> list[str]:
    """``-f`` first, then ``-key value`` per option in key order; None is a bare flag."""
    args = ["-f", str(options["f"])] if options.get("f") else []
    for key in sorted(k for k in options if k != "f"):
        args.append(f"-{key}")
        if options[key] is not None:
            args.append(f"{options[key]}")
    return args


def _io_args(source: InputSpec, output: dict[str, Any], target: str) -> list[str]:
    """Input options, the input, the mapped audio track, output options, the output."""
    options = dict(source.options)
    if source.start:
        options["ss"] = f"{source.start:.3f}"
    if source.duration:
        options["t"] = f"{source.duration:.3f}"
    # Audio only, from the chosen track; video is never decoded.
    return [
        *_options(options),
        "-i",
        source.url,
        "-map",
        f"0:a:{source.audio_track}",
        *_options(output),
        target,
    ]


def build_command(
    source: InputSpec,
    plan: EncodePlan,
    output_path: str,
    *,
    audio_filter: str | None = None,
    tags: dict[str, str] | None = None,
    progress: bool = True,
) -> list[str]:
    """The full ffmpeg argument list for the encode (or copy) step."""
    kwargs: dict[str, Any] = {
        "vn": None,
        "sn": None,
        "dn": None,
        "c:a": plan.codec,
        "f": plan.spec.muxer,
    }
    if plan.sample_rate is not None:
        kwargs["ar"] = plan.sample_rate
    if plan.channels is not None:
        kwargs["ac"] = plan.channels
    if plan.sample_fmt is not None:
        kwargs["sample_fmt"] = plan.sample_fmt
    if audio_filter is not None:
        kwargs["af"] = audio_filter
    kwargs.update(plan.options)
    for i, (key, value) in enumerate(sorted((tags or {}).items())):
        kwargs[f"metadata:g:{i}"] = f"{key}={value}"
    head = _base_args("error")
    if progress:
        head += ["-progress", "pipe:1"]
    return head + _io_args(source, kwargs, output_path)


def build_measure_command(
    source: InputSpec, *, audio_filter: str | None = None, progress: bool = True
) -> list[str]:
    """An ffmpeg run that decodes the chosen audio track and measures it with ebur128."""
    chain = "ebur128=peak=true:framelog=verbose"
    if audio_filter:
        chain = f"{audio_filter},{chain}"
    head = _base_args("info")
    if progress:
        head += ["-progress", "pipe:1"]
    return head + _io_args(
        source, {"vn": None, "sn": None, "dn": None, "af": chain, "f": "null"}, "-"
    )
