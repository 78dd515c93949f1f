"""Worker benchmark: the worker against the bare ffmpeg command it builds.

    make bench-worker                      # 10-minute 720p source
    .venv/bin/python bench/worker.py --minutes 2 --formats mp3,flac

For each format it runs, on the same cached source:
  * bare ffmpeg: exactly the encode command the worker builds (same inputs/options);
  * the worker: `python -m audioextract worker` end to end (start-up, probe, encode,
    ffprobe of the output, sha256, atomic copy to a volume directory).
Reported: wall times, overhead ratio (worker / bare ffmpeg) and realtime factor
(media seconds / wall second); plus stream copy against a forced transcode.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from audioextract.api.spec import Output
from audioextract.worker import loudness
from audioextract.worker.command import (
    DEMUXERS,
    AudioInfo,
    InputSpec,
    build_command,
    build_measure_command,
    loudness_targets,
    parse_ebur128,
    plan_encode,
)

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
FORMATS = ["mp3", "aac", "m4a", "opus", "ogg", "flac", "wav", "alac"]


def source_video(minutes: float) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"video-{minutes:g}min-720p.mp4"
    if not path.exists():
        seconds = int(minutes * 60)
        print(f"generating {path} ({seconds} s, 1280x720) ...", file=sys.stderr)
        tmp = path.with_suffix(".partial.mp4")
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc=size=1280x720:rate=25:duration={seconds}",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                "-filter_complex",
                "[1:a]volume=0.5,aformat=channel_layouts=stereo[a]",
                "-map",
                "0:v",
                "-map",
                "[a]",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-crf",
                "28",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
                "-movflags",
                "+faststart",
                str(tmp),
            ],
            check=True,
        )
        tmp.rename(path)
    return path


def probe_audio(path: Path) -> tuple[AudioInfo, float]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    data = json.loads(out)
    s = data["streams"][0]
    duration = float(data["format"]["duration"])
    info = AudioInfo(
        codec=s["codec_name"],
        sample_rate=int(s["sample_rate"]),
        channels=int(s["channels"]),
        bit_rate=int(s.get("bit_rate") or 0) or None,
        duration=duration,
    )
    return info, duration


def timed(args: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def bare_ffmpeg(src: Path, info: AudioInfo, output: dict[str, object], out: Path) -> float:
    out_model = Output.model_validate(output)
    plan = plan_encode(out_model, info)
    inp = InputSpec(f"file:{src}", {"protocol_whitelist": "file", "format_whitelist": DEMUXERS})
    start = time.perf_counter()
    audio_filter = None
    if out_model.normalize:
        # The worker's passes: ebur128 measurement, then the linear gain (plus limiter).
        measured = subprocess.run(
            build_measure_command(inp, audio_filter=plan.filters()),
            check=True,
            capture_output=True,
            text=True,
        )
        m = parse_ebur128(measured.stderr)
        assert m is not None
        gain = loudness.plan_gain(loudness_targets(out_model), m, lossy=plan.lossy)
        audio_filter = loudness.gain_filter(gain, plan.sample_rate or info.sample_rate)
    # Same command as the worker's, progress pipe included.
    timed(build_command(inp, plan, str(out), audio_filter=audio_filter, tags=out_model.tags))
    return time.perf_counter() - start


def worker(src: Path, output: dict[str, object], work: Path, name: str) -> float:
    out_dir = work / "out"
    out_dir.mkdir(exist_ok=True)
    task = {
        "name": name,
        "source": {"volume": {"claimName": "src", "path": src.name}},
        "output": {**output, "destination": {"volume": {"claimName": "out"}}},
        "timeoutSeconds": 3600,
    }
    task_file = work / "task.json"
    task_file.write_text(json.dumps(task))
    env = {**os.environ, "AUDIOEXTRACT_TEMP_DIR": str(work / "tmp")}
    return timed(
        [
            sys.executable,
            "-m",
            "audioextract",
            "worker",
            "--task",
            str(task_file),
            "--result",
            str(work / "result.json"),
            "--volume",
            f"src={src.parent}",
            "--volume",
            f"out={out_dir}",
        ],
        env,
    )


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    ffmpeg_version = subprocess.run(
        ["ffmpeg", "-version"], capture_output=True, text=True
    ).stdout.split("\n")[0]
    python = platform.python_version()
    system = platform.platform()
    return f"{cpu}, {os.cpu_count()} CPUs{mem}; {system}; Python {python}; {ffmpeg_version}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="source length (default 10)")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated formats")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per measurement; the fastest counts"
    )
    args = parser.parse_args()

    src = source_video(args.minutes)
    info, duration = probe_audio(src)
    print(f"machine: {machine()}")
    print(
        f"source: {src.name}, {duration:.0f} s, "
        f"audio {info.codec} {info.sample_rate} Hz {info.channels} ch\n"
    )
    cases: list[tuple[str, dict[str, object]]] = []
    for fmt in args.formats.split(","):
        output: dict[str, object] = {"format": fmt}
        if fmt in ("aac", "m4a"):
            # The source is AAC: without a bitrate this would be a stream copy.
            output["bitrate"] = "192k"
        cases.append((fmt, output))
    cases.append(("m4a (stream copy)", {"format": "m4a"}))
    cases.append(("mp3 + normalize", {"format": "mp3", "normalize": True}))

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        work = Path(tmp)
        for label, output in cases:
            fmt = str(output["format"])
            ext = {"alac": "m4a", "aac": "aac", "opus": "opus", "ogg": "ogg"}.get(fmt, fmt)
            bare_times, worker_times = [], []
            for i in range(args.repeat):
                # Alternate the order so that neither side always runs on a warm cache.
                if i % 2 == 0:
                    bare_times.append(bare_ffmpeg(src, info, output, work / f"bare.{ext}"))
                    worker_times.append(worker(src, output, work, f"w{i}"))
                else:
                    worker_times.append(worker(src, output, work, f"w{i}"))
                    bare_times.append(bare_ffmpeg(src, info, output, work / f"bare.{ext}"))
            bare, wk = min(bare_times), min(worker_times)
            result = json.loads((work / "result.json").read_text())
            rows.append(
                {
                    "case": label,
                    "bare_s": bare,
                    "worker_s": wk,
                    "overhead": wk / bare if bare == bare else None,
                    "realtime_x": duration / wk,
                    "stream_copied": result.get("streamCopied"),
                    "size_mb": result.get("sizeBytes", 0) / 1e6,
                }
            )
            r = rows[-1]
            print(
                f"{label:20s} bare {bare:7.2f} s  worker {wk:7.2f} s  "
                f"overhead {'' if r['overhead'] is None else format(r['overhead'], '.3f')}  "
                f"realtime {r['realtime_x']:.0f}x",
                flush=True,
            )

    print(
        "\n| Case | Bare ffmpeg (s) | Worker (s) | Worker / ffmpeg "
        "| Realtime factor (worker) | Stream copy | Output MB |"
    )
    print("|---|---:|---:|---:|---:|:---:|---:|")
    for r in rows:
        ratio = "—" if r["overhead"] is None else f"{r['overhead']:.3f}"
        bare = "—" if r["bare_s"] != r["bare_s"] else f"{r['bare_s']:.2f}"
        print(
            f"| {r['case']} | {bare} | {r['worker_s']:.2f} | {ratio} | {r['realtime_x']:.0f}x | "
            f"{'yes' if r['stream_copied'] else 'no'} | {r['size_mb']:.1f} |"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "worker.json").write_text(
        json.dumps({"machine": machine(), "duration_s": duration, "rows": rows}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
