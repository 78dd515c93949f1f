"""Test media generated with ffmpeg's lavfi sources: short, deterministic, real containers."""

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECONDS = 4

_VIDEO = ["-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={SECONDS}"]


def _tone(freq: int = 440, rate: int = 48000, seconds: float = SECONDS) -> list[str]:
    # A tone plus quiet noise: loudness meters and encoders behave as with real audio.
    expr = f"0.2*sin(2*PI*{freq}*t)+0.02*(random(0)-0.5)"
    return [
        "-f",
        "lavfi",
        "-i",
        f"aevalsrc=exprs='{expr}|{expr}':sample_rate={rate}:duration={seconds}",
    ]


X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]

# 5.1 as AC-3 carries it (5.1(side)): dialogue-like tone in the centre, music-like
# tones on the fronts, noise (ambience) on the surrounds, a quiet LFE.
_SURROUND = [
    "-f",
    "lavfi",
    "-i",
    "aevalsrc=exprs="
    "'0.2*sin(2*PI*660*t)|0.2*sin(2*PI*550*t)|0.3*sin(2*PI*440*t)*(1+sin(3*t))/2|"
    "0.1*sin(2*PI*60*t)|0.05*(random(0)-0.5)|0.05*(random(1)-0.5)'"
    f":channel_layout=5.1(side):sample_rate=48000:duration={SECONDS}",
]

# name -> ffmpeg arguments after the inputs (output path appended).
RECIPES: dict[str, list[str]] = {
    "av.mp4": [*_VIDEO, *_tone(), *X264, "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart"],
    "nofaststart.mp4": [*_VIDEO, *_tone(), *X264, "-c:a", "aac", "-b:a", "128k"],
    "av.mov": [*_VIDEO, *_tone(rate=44100), *X264, "-c:a", "aac", "-b:a", "96k"],
    "av.mkv": [*_VIDEO, *_tone(), *X264, "-c:a", "libmp3lame", "-b:a", "128k"],
    "av.webm": [
        *_VIDEO,
        *_tone(),
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-b:v",
        "100k",
        "-c:a",
        "libopus",
        "-b:a",
        "96k",
    ],
    "audio.m4a": [*_tone(), "-c:a", "aac", "-b:a", "128k"],
    "vorbis.ogg": [*_tone(), "-c:a", "libvorbis", "-q:a", "4"],
    "flac.mkv": [*_VIDEO, *_tone(), *X264, "-c:a", "flac"],
    "hires.mkv": [*_VIDEO, *_tone(rate=96000), *X264, "-c:a", "flac", "-sample_fmt", "s32"],
    "pcm.mov": [*_VIDEO, *_tone(), *X264, "-c:a", "pcm_s16le"],
    "alac.mov": [*_VIDEO, *_tone(), *X264, "-c:a", "alac"],
    "surround.mkv": [*_VIDEO, *_SURROUND, *X264, "-c:a", "ac3", "-b:a", "384k"],
    "video-only.mp4": [*_VIDEO, *X264],
    "two-tracks.mkv": [
        *_VIDEO,
        *_tone(440),
        *_tone(880),
        *X264,
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-map",
        "2:a",
        "-c:a",
        "aac",
        "-ac:a:0",
        "1",
        "-ac:a:1",
        "2",
    ],
}


def generate(directory: Path, names: Sequence[str] | None = None) -> dict[str, Path]:
    """Create every recipe (plus corrupt files) in ``directory``; returns name -> path.

    ``names`` limits it to those recipes (and no corrupt files), for suites that need few.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, args in RECIPES.items():
        if names is not None and name not in names:
            continue
        path = directory / name
        if not path.exists():
            subprocess.run(
                ["ffmpeg", "-nostdin", "-v", "error", "-y", *args, "-shortest", str(path)],
                check=True,
            )
        paths[name] = path
    if names is not None:
        return paths
    garbage = directory / "garbage.mp4"
    garbage.write_bytes(bytes((i * 7919 + 13) % 251 for i in range(64 * 1024)))
    paths["garbage.mp4"] = garbage
    truncated = directory / "truncated.mp4"
    data = paths["nofaststart.mp4"].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    paths["truncated.mp4"] = truncated
    return paths


@dataclass(frozen=True)
class Probe:
    """The first audio stream of a file, as ffprobe reports it."""

    codec: str
    sample_rate: int
    channels: int
    duration: float
    bit_rate: int | None
    format_name: str
    tags: dict[str, str]
    raw: dict[str, Any]


def probe(path: Path | str) -> Probe:
    """ffprobe a file's first audio stream."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    data = json.loads(out)
    audio = [s for s in data["streams"] if s["codec_type"] == "audio"]
    stream, fmt = audio[0], data["format"]
    rate = stream.get("bit_rate") or fmt.get("bit_rate")
    tags = {k.lower(): v for k, v in {**fmt.get("tags", {}), **stream.get("tags", {})}.items()}
    return Probe(
        codec=stream["codec_name"],
        sample_rate=int(stream["sample_rate"]),
        channels=int(stream["channels"]),
        duration=float(stream.get("duration") or fmt["duration"]),
        bit_rate=int(rate) if rate else None,
        format_name=fmt["format_name"],
        tags=tags,
        raw=data,
    )


def integrated_loudness(path: Path | str) -> float:
    """Integrated loudness (LUFS) measured with ffmpeg's ebur128 filter."""
    return r128(path).integrated


def audio_packets_md5(path: Path | str, track: int = 0) -> str:
    """MD5 of the audio packets of one track, copied without decoding.

    ADTS headers are stripped first (a no-op for AAC from MP4), so a .aac file and
    the MP4 it was copied from compare equal.
    """
    codec = probe(path).codec
    bsf = ["-bsf:a", "aac_adtstoasc"] if codec == "aac" else []
    out = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            f"0:a:{track}",
            "-c",
            "copy",
            *bsf,
            "-f",
            "md5",
            "-",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip()


# Every layout the worker promises to take to every format (docs/worker.md).
LAYOUTS = ("5.1", "5.1(side)", "7.1", "2.1", "4.0", "quad", "mono", "stereo")
LAYOUT_CHANNELS = {
    "mono": 1,
    "stereo": 2,
    "2.1": 3,
    "4.0": 4,
    "quad": 4,
    "5.1": 6,
    "5.1(side)": 6,
    "7.1": 8,
}


def run_ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly with ``args``; fails the test when ffmpeg does."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def surround(directory: Path, layout: str, seconds: float = 1.0) -> Path:
    """A WAV in ``layout`` with a different tone (plus noise) in every channel."""
    path = directory / f"layout-{layout.replace('(', '-').replace(')', '')}.wav"
    if not path.exists():
        exprs = "|".join(
            f"0.25*sin(2*PI*{150 + 110 * i}*t)+0.02*(random({i})-0.5)"
            for i in range(LAYOUT_CHANNELS[layout])
        )
        run_ffmpeg(
            "-f",
            "lavfi",
            "-i",
            f"aevalsrc=exprs='{exprs}':channel_layout={layout}:sample_rate=48000:d={seconds}",
            str(path),
        )
    return path


def dynamic(directory: Path, seconds: int = 9) -> Path:
    """Pink noise with loud and quiet sections (about 18 dB apart, LRA near 9 LU), FLAC in MKV."""
    path = directory / "dynamic.mkv"
    if not path.exists():
        run_ffmpeg(
            "-f",
            "lavfi",
            "-i",
            f"anoisesrc=color=pink:amplitude=0.7:seed=7:sample_rate=48000:d={seconds}",
            "-af",
            "volume='if(lt(mod(t,6),3),1.0,0.12)':eval=frame,aformat=channel_layouts=stereo",
            "-c:a",
            "flac",
            str(path),
        )
    return path


def lavfi_wav(directory: Path, name: str, source: str) -> Path:
    """A WAV from a lavfi audio source expression (for silence, clicks, short clips)."""
    path = directory / name
    if not path.exists():
        run_ffmpeg("-f", "lavfi", "-i", source, "-ac", "2", str(path))
    return path


def cut(src: Path, dest: Path, fraction: float) -> Path:
    """The first ``fraction`` of a file's bytes: a truncated copy."""
    data = src.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


@dataclass(frozen=True)
class R128:
    """Integrated loudness and true peak measured by ebur128 in the test."""

    integrated: float
    true_peak: float


def _decode(path: Path | str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Decode a file's first audio stream to nothing, with ``extra`` output options."""
    return subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-nostats",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            *extra,
            "-f",
            "null",
            "-",
        ],
        check=True,
        capture_output=True,
        text=True,
    )


def r128(path: Path | str) -> R128:
    """EBU R128 integrated loudness and true peak of a file's first audio stream."""
    err = _decode(path, "-af", "ebur128=peak=true").stderr
    summary = err[err.rindex("Integrated loudness:") :]
    integrated = float(summary.split("I:", 1)[1].split("LUFS", 1)[0])
    peak = summary.split("Peak:", 1)[1].split("dBFS", 1)[0].strip()
    return R128(integrated, float(peak))


def channel_levels(path: Path | str) -> list[float]:
    """RMS level (dBFS) of every channel of the first audio stream; -inf for a silent one."""
    err = _decode(path, "-af", "astats=measure_perchannel=RMS_level:measure_overall=none").stderr
    return [float(line.rsplit(" ", 1)[1]) for line in err.splitlines() if "RMS level" in line]


def decoded_seconds(path: Path | str) -> float:
    """The duration of a file's first audio stream by decoding all of it."""
    out = _decode(path, "-progress", "pipe:1").stdout
    times = [int(x.split("=", 1)[1]) for x in out.splitlines() if x.startswith("out_time_us=")]
    return times[-1] / 1e6
