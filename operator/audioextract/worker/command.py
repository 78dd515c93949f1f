"""The pure part of the worker: which codec, container and options, as ffmpeg arguments.

Nothing here touches the network or the disk, so every decision (presets, stream
copy, bit depth, opus sample rates, loudnorm parameters) is unit-tested directly.
"""

import re
from dataclasses import dataclass, field
from typing import Any

import ffmpeg

from audioextract.api.constants import Format, Quality
from audioextract.api.defaults import DEFAULT_LOUDNESS, DEFAULT_QUALITY
from audioextract.api.spec import Loudness, Output
from audioextract.api.validation import FORMAT_EXTENSIONS
from audioextract.worker.loudness import Measurement

# Demuxers a source may use (ffmpeg's -format_whitelist), reviewed against the audio
# and video containers people have (docs/worker.md, "Containers"). None of these opens
# another URL or file: the mov demuxer's external data references stay disabled
# (enable_drefs=0 is its default).
ALLOWED_DEMUXERS: tuple[str, ...] = (
    # Video containers: MP4/MOV/M4A/3GP, Matroska/WebM, AVI, Flash, MPEG-TS (also
    # M2TS/AVCHD), MPEG-PS (VOB, .mpg), Windows Media (ASF), RealMedia, DV, broadcast
    # (MXF, GXF), NUT, Windows Media Center recordings (WTV).
    "mov",
    "matroska",
    "avi",
    "flv",
    "mpegts",
    "mpeg",
    "asf",
    "rm",
    "dv",
    "mxf",
    "gxf",
    "nut",
    "wtv",
    # Audio containers and raw audio streams that carry a header or sync words.
    "ogg",
    "wav",
    "w64",
    "caf",
    "aiff",
    "au",
    "voc",
    "ircam",
    "nistsphere",
    "mp3",
    "aac",
    "loas",
    "flac",
    "ac3",
    "eac3",
    "dts",
    "dtshd",
    "truehd",
    "mlp",
    "wv",
    "ape",
    "tta",
    "tak",
    "mpc",
    "mpc8",
    "shn",
    "dsf",
    "oma",
    "amr",
    "amrnb",
    "amrwb",
)
# Left out, each for its reason (docs/worker.md lists them for users):
# - hls, dash, webm_dash_manifest, imf, concat, ffmetadata, image2, vobsub, sdp, rtp,
#   rtsp: they open further URLs or local files named inside the source.
# - lavfi and every device (alsa, pulse, oss, jack, openal, v4l2, x11grab, fbdev,
#   kmsgrab, libcdio, ...): not files; lavfi's movie filter reads arbitrary paths.
# - raw headerless PCM and telephony codecs (s16le, alaw, mulaw, g722, g726, gsm, sln,
#   sbc, aptx, codec2, ...): nothing to probe, parameters would have to be guessed.
# - tracker modules and game formats (libopenmpt, libgme, mods, bink, ea, xa, vag,
#   brstm, ...): not sources of audio-from-video, large attack surface.
# - swf: zlib-compressed wrapper (decompression bomb) for a format nobody delivers now.
# - video-only elementary streams and image formats: no audio to extract.
# - aa, aax: Audible files need the owner's activation key.
DEMUXERS = ",".join(ALLOWED_DEMUXERS)

# Raw elementary streams: no index or sample count, so the duration ffprobe declares
# is an estimate from the bitrate and cannot prove a truncation.
RAW_STREAM_DEMUXERS = frozenset(
    {
        "mp3",
        "aac",
        "ac3",
        "eac3",
        "dts",
        "dtshd",
        "truehd",
        "mlp",
        "amr",
        "amrnb",
        "amrwb",
        "loas",
        "mpc",
    }
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
    Format.MP3: FormatSpec(
        "libmp3lame", "mp3", FORMAT_EXTENSIONS[Format.MP3], False, frozenset({"mp3"})
    ),
    # A .aac file is raw ADTS, which every player expects from that extension;
    # m4a is the same codec in an MP4 (iPod) container.
    Format.AAC: FormatSpec("aac", "adts", FORMAT_EXTENSIONS[Format.AAC], False, frozenset({"aac"})),
    Format.M4A: FormatSpec("aac", "ipod", FORMAT_EXTENSIONS[Format.M4A], False, frozenset({"aac"})),
    Format.FLAC: FormatSpec(
        "flac", "flac", FORMAT_EXTENSIONS[Format.FLAC], True, frozenset({"flac"})
    ),
    Format.WAV: FormatSpec(
        "pcm_s16le",
        "wav",
        FORMAT_EXTENSIONS[Format.WAV],
        True,
        frozenset({"pcm_s16le", "pcm_s24le"}),
    ),
    Format.OPUS: FormatSpec(
        "libopus", "opus", FORMAT_EXTENSIONS[Format.OPUS], False, frozenset({"opus"})
    ),
    Format.OGG: FormatSpec(
        "libvorbis", "ogg", FORMAT_EXTENSIONS[Format.OGG], False, frozenset({"vorbis"})
    ),
    Format.ALAC: FormatSpec(
        "alac", "ipod", FORMAT_EXTENSIONS[Format.ALAC], True, frozenset({"alac"})
    ),
}

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

# Channel layouts (docs/worker.md, "Channel layouts"). The layouts each format carries
# as they are; None: any layout (WAV's channel mask).
CHANNEL_COUNTS: dict[str, int] = {
    "mono": 1,
    "stereo": 2,
    "2.1": 3,
    "3.0": 3,
    "4.0": 4,
    "quad": 4,
    "5.0": 5,
    "5.0(side)": 5,
    "5.1": 6,
    "5.1(side)": 6,
    "6.1": 7,
    "6.1(back)": 7,
    "7.1": 8,
    "7.1(wide)": 8,
}
_VORBIS_ORDER = frozenset({"mono", "stereo", "3.0", "quad", "5.0", "5.1", "6.1", "7.1"})
CARRIED_LAYOUTS: dict[Format, frozenset[str] | None] = {
    Format.MP3: frozenset({"mono", "stereo"}),
    # The native AAC encoder writes these with a channel configuration or a PCE that
    # decoders read back as the same layout.
    Format.AAC: frozenset({"mono", "stereo", "2.1", "3.0", "4.0", "quad", "5.0", "5.1", "7.1"}),
    Format.M4A: frozenset({"mono", "stereo", "2.1", "3.0", "4.0", "quad", "5.0", "5.1", "7.1"}),
    # FLAC's fixed channel assignments, with both 5.x flavours (WAVEFORMATEXTENSIBLE mask).
    Format.FLAC: frozenset(
        {"mono", "stereo", "3.0", "quad", "5.0", "5.0(side)", "5.1", "5.1(side)", "6.1", "7.1"}
    ),
    # Vorbis channel order, which opus uses with mapping family 1.
    Format.OGG: _VORBIS_ORDER,
    Format.OPUS: _VORBIS_ORDER,
    Format.ALAC: frozenset(
        {"mono", "stereo", "3.0", "4.0", "5.0", "5.1", "6.1(back)", "7.1(wide)"}
    ),
    Format.WAV: None,
}
# A layout a format cannot carry becomes the next one here (ffmpeg's resampler moves
# side speakers to back ones 1:1 and folds centre channels into pairs), until it is
# carried; what is still not carried is downmixed to stereo (mono stays mono).
LAYOUT_SUBSTITUTES: dict[str, str] = {
    "5.1(side)": "5.1",
    "5.0(side)": "5.0",
    "4.0": "quad",
    "quad": "5.0",
    "6.1": "6.1(back)",
    "6.1(back)": "6.1",
    "7.1": "7.1(wide)",
    "7.1(wide)": "7.1",
    "2.1": "stereo",
}
# Same speakers under another name: relabelled without remixing. ffmpeg names ALAC's
# 8-channel layout 7.1(wide); its two extra channels carry 7.1's side pair.
LAYOUT_RELABELS: dict[tuple[str, str], str] = {
    ("7.1", "7.1(wide)"): "FL-FL|FR-FR|FC-FC|LFE-LFE|BL-BL|BR-BR|SL-FLC|SR-FRC",
    ("7.1(wide)", "7.1"): "FL-FL|FR-FR|FC-FC|LFE-LFE|BL-BL|BR-BR|FLC-SL|FRC-SR",
}
DEFAULT_LAYOUTS: dict[int, str] = {
    1: "mono",
    2: "stereo",
    3: "3.0",
    4: "quad",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}


@dataclass(frozen=True)
class LayoutPlan:
    """The output's channel layout and the filter that makes it (None: none needed)."""

    layout: str
    filter: str | None
    note: str | None


def _carried(fmt: Format, layout: str) -> bool:
    carried = CARRIED_LAYOUTS[fmt]
    return carried is None or layout in carried


def plan_layout(
    fmt: Format, src_layout: str | None, src_channels: int, channels: int | None
) -> LayoutPlan:
    """Which layout the output gets, and how (kept, relabelled, remixed or downmixed)."""
    known = src_layout if src_layout in CHANNEL_COUNTS else None
    if channels is not None and channels != src_channels:
        wanted = DEFAULT_LAYOUTS[channels]
    else:
        wanted = known or DEFAULT_LAYOUTS.get(src_channels, "stereo")
    target = wanted
    seen = {target}
    while not _carried(fmt, target):
        nxt = LAYOUT_SUBSTITUTES.get(target)
        if nxt is None or nxt in seen:
            nxt = "mono" if CHANNEL_COUNTS[target] == 1 else "stereo"
            seen.add(nxt)
            target = nxt
            break
        seen.add(nxt)
        target = nxt
    note = None
    if target != wanted:
        how = "downmixed" if CHANNEL_COUNTS[target] < CHANNEL_COUNTS[wanted] else "converted"
        note = f"{fmt} cannot carry the {wanted} layout: {how} to {target}"
    if src_layout == target:
        return LayoutPlan(target, None, note)
    relabel = LAYOUT_RELABELS.get((src_layout or "", target))
    if relabel is not None:
        return LayoutPlan(target, f"channelmap=map={relabel}:channel_layout={target}", note)
    if src_layout is None and CHANNEL_COUNTS[target] == src_channels:
        # No layout to convert from: name the channels by their count.
        return LayoutPlan(target, f"channelmap=channel_layout={target}", note)
    return LayoutPlan(target, f"aformat=channel_layouts={target}", note)


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe says about the selected audio stream of the source."""

    codec: str
    sample_rate: int
    channels: int
    bit_rate: int | None = None
    bits: int | None = None
    duration: float | None = None
    layout: str | None = None
    # The container only estimates the duration (raw streams: from the bitrate).
    duration_estimated: bool = False


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
    layout: str | None = None
    layout_filter: str | None = None

    @property
    def lossy(self) -> bool:
        """Whether the codec discards information (its output needs peak headroom)."""
        return not self.spec.lossless

    def filters(self, *extra: str | None) -> str | None:
        """The audio filter chain: the layout conversion first, then ``extra``."""
        chain = [f for f in (self.layout_filter, *extra) if f]
        return ",".join(chain) or None


@dataclass(frozen=True)
class InputSpec:
    """Where ffmpeg reads the source and with which input options."""

    url: str
    options: dict[str, Any]
    audio_track: int = 0
    start: float | None = None
    duration: float | None = None


def bitrate_bps(text: str) -> int:
    """``"192k"`` as bits per second."""
    return int(text.removesuffix("k")) * 1000


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
        # The true-peak limiter runs at 192 kHz; say which rate to come back to.
        rate = src.sample_rate

    layout = plan_layout(fmt, src.layout, src.channels, output.channels)
    if layout.note is not None:
        notes.append(layout.note)
    channels = CHANNEL_COUNTS[layout.layout]

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
    if fmt == Format.OPUS and channels > 2:
        # Family 1 (Vorbis channel order) is what players decode as surround; the
        # default (-1) refuses most layouts.
        options["mapping_family"] = 1
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
        layout=layout.layout,
        layout_filter=layout.filter,
    )


def loudness_targets(output: Output) -> Loudness:
    """output.loudness over DEFAULT_LOUDNESS, field by field."""
    own = output.loudness.model_dump(exclude_none=True) if output.loudness else {}
    return Loudness.model_validate({**DEFAULT_LOUDNESS.model_dump(), **own})


_SUMMARY = re.compile(
    r"Integrated loudness:\s*I:\s*(?P<i>-?[\d.]+|-inf)\s*LUFS"
    r"\s*Threshold:\s*(?P<thr>-?[\d.]+|-inf)\s*LUFS"
    r".*?Loudness range:\s*LRA:\s*(?P<lra>-?[\d.]+)\s*LU"
    r"(?:.*?True peak:\s*Peak:\s*(?P<tp>-?[\d.]+|-inf)\s*dBFS)?",
    re.S,
)


def parse_ebur128(stderr: str) -> Measurement | None:
    """The ebur128 filter's summary from ffmpeg's log (-inf kept); None when absent."""
    matches = list(_SUMMARY.finditer(stderr))
    if not matches:
        return None
    m = matches[-1]
    peak = m["tp"]
    return Measurement(
        integrated=float(m["i"]),
        threshold=float(m["thr"]),
        lra=float(m["lra"]),
        true_peak=float("-inf") if peak is None else float(peak),
    )


# Keys ffmpeg's MP4 (ipod) muxer writes as iTunes atoms; any other key becomes a
# freeform atom (----:com.apple.iTunes:KEY) written after muxing.
MP4_NATIVE_TAGS = frozenset(
    {
        "title",
        "artist",
        "album_artist",
        "album",
        "composer",
        "comment",
        "genre",
        "copyright",
        "grouping",
        "lyrics",
        "description",
        "synopsis",
        "date",
        "track",
        "disc",
        "show",
        "network",
        "episode_id",
        "keywords",
    }
)
ISO_639_2 = re.compile(r"^[a-z]{3}$")


@dataclass(frozen=True)
class TagPlan:
    """Where each requested tag goes: the muxer's global or stream metadata, or a freeform atom."""

    global_tags: dict[str, str]
    stream_tags: dict[str, str]
    freeform: dict[str, str]


def muxer_tags(fmt: Format, tags: dict[str, str]) -> TagPlan:
    """Split the requested tags by how ``fmt`` stores them (docs/worker.md, "Tags")."""
    mp4 = fmt in (Format.M4A, Format.ALAC)
    global_tags: dict[str, str] = {}
    stream_tags: dict[str, str] = {}
    freeform: dict[str, str] = {}
    for key, value in tags.items():
        if key == "language":
            # A stream property (mdhd in MP4, LANGUAGE in Vorbis comments).
            if not mp4 or ISO_639_2.match(value):
                stream_tags[key] = value
            if not mp4:
                global_tags[key] = value
            elif not ISO_639_2.match(value):
                freeform[key] = value
        elif mp4 and key not in MP4_NATIVE_TAGS:
            freeform[key] = value
        else:
            global_tags[key] = value
    return TagPlan(global_tags, stream_tags, freeform)


def _base_args(loglevel: str) -> list[str]:
    return ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", loglevel, "-y"]


def _input_stream(source: InputSpec) -> Any:
    options = dict(source.options)
    if source.start:
        options["ss"] = f"{source.start:.3f}"
    if source.duration:
        options["t"] = f"{source.duration:.3f}"
    # Audio only, from the chosen track; video is never decoded.
    return ffmpeg.input(source.url, **options)[f"a:{source.audio_track}"]


def build_command(
    source: InputSpec,
    plan: EncodePlan,
    output_path: str,
    *,
    audio_filter: str | None = None,
    tags: dict[str, str] | None = None,
    progress: bool = True,
) -> list[str]:
    """The full ffmpeg argument list for the encode (or copy) step.

    ``audio_filter`` runs after the plan's layout conversion. The source's own
    metadata and chapters are never carried over: only ``tags`` are written.
    """
    kwargs: dict[str, Any] = {
        "vn": None,
        "sn": None,
        "dn": None,
        "map_metadata": -1,
        "map_chapters": -1,
        "c:a": plan.codec,
        "f": plan.spec.muxer,
    }
    if plan.sample_rate is not None:
        kwargs["ar"] = plan.sample_rate
    if plan.sample_fmt is not None:
        kwargs["sample_fmt"] = plan.sample_fmt
    chain = None if plan.stream_copy else plan.filters(audio_filter)
    if chain is not None:
        kwargs["af"] = chain
    kwargs.update(plan.options)
    if plan.format == Format.AAC:
        # Raw ADTS has no metadata of its own; an ID3v2 header carries the tags.
        kwargs["write_id3v2"] = 1
    written = muxer_tags(plan.format, tags or {})
    for i, (key, value) in enumerate(sorted(written.global_tags.items())):
        kwargs[f"metadata:g:{i}"] = f"{key}={value}"
    for i, (key, value) in enumerate(sorted(written.stream_tags.items())):
        kwargs[f"metadata:s:a:{i}"] = f"{key}={value}"
    stream = ffmpeg.output(_input_stream(source), output_path, **kwargs)
    head = _base_args("error")
    if progress:
        head += ["-progress", "pipe:1"]
    return head + list(stream.get_args())


def build_measure_command(
    source: InputSpec,
    *,
    audio_filter: str | None = None,
    progress: bool = True,
    loudness: bool = True,
) -> list[str]:
    """An ffmpeg run that decodes the chosen audio track (and measures it with ebur128)."""
    chain = [audio_filter] if audio_filter else []
    if loudness:
        chain.append("ebur128=peak=true:framelog=verbose")
    kwargs: dict[str, Any] = {"vn": None, "sn": None, "dn": None, "f": "null"}
    if chain:
        kwargs["af"] = ",".join(chain)
    stream = ffmpeg.output(_input_stream(source), "-", **kwargs)
    head = _base_args("info")
    if progress:
        head += ["-progress", "pipe:1"]
    return head + list(stream.get_args())
