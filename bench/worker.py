"""Worker benchmark: the worker against the bare ffmpeg command it builds, on realistic audio.

    make bench-worker                          # 10-minute mixed source, best of 3
    .venv/bin/python bench/worker.py --quick   # about a minute
    make bench-worker BENCH_ARGS="--in-image audio-extract-worker:0.1.0"   # as shipped

Part 1, overhead: on one source (1280x720 H.264 test pattern with the ``mixed`` content
of bench/content.py — speech, music and noise in equal parts — as AAC 128 kb/s), per
format, alternately (the order flipped every round) and best of ``--repeat`` each:
  * bare ffmpeg: exactly the encode command the worker builds (same inputs/options);
  * the worker: ``python -m audioextract worker`` end to end, as the Job's container
    runs it (start-up, source probe, encode, output probe, sha256, atomic copy to a
    volume directory).
Reported: wall times, worker / bare ffmpeg, the fixed cost (worker - bare), the
realtime factor, the CPU seconds of each; plus stream copy against the mp3 transcode.

Part 2, content: the worker's realtime factor per format on speech, music and noise
sources of their own (``--content-seconds`` each).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audioextract.api.spec import Output
from audioextract.worker import loudness
from audioextract.worker.command import (
    DEMUXERS,
    FORMATS,
    AudioInfo,
    InputSpec,
    build_command,
    build_measure_command,
    loudness_targets,
    parse_ebur128,
    plan_encode,
)
from bench import content, report

ALL_FORMATS = ["mp3", "aac", "m4a", "opus", "ogg", "flac", "wav", "alac"]
QUICK_FORMATS = ["mp3", "aac", "opus", "flac", "wav"]
COPY = "m4a (stream copy)"
NORMALIZE = "mp3 + normalize"


def probe_audio(path: Path, env: dict[str, str] | None = None) -> tuple[AudioInfo, float]:
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
        env=env,
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


def bare_ffmpeg(
    src: Path, info: AudioInfo, output: dict[str, object], out: Path, env: dict[str, str]
) -> tuple[float, float]:
    """Wall and CPU seconds of the worker's own ffmpeg command(s), run directly."""
    out_model = Output.model_validate(output)
    plan = plan_encode(out_model, info)
    inp = InputSpec(f"file:{src}", {"protocol_whitelist": "file", "format_whitelist": DEMUXERS})
    cpu, start = report.cpu(), time.perf_counter()
    audio_filter = None
    if out_model.normalize:
        # The worker's passes: ebur128 measurement, then the linear gain (plus limiter).
        measured = subprocess.run(
            build_measure_command(inp, audio_filter=plan.filters()),
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        m = parse_ebur128(measured.stderr)
        assert m is not None
        gain = loudness.plan_gain(loudness_targets(out_model), m, lossy=plan.lossy)
        audio_filter = loudness.gain_filter(gain, plan.sample_rate or info.sample_rate)
    subprocess.run(
        build_command(inp, plan, str(out), audio_filter=audio_filter, tags=out_model.tags),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    return time.perf_counter() - start, report.cpu() - cpu


def worker(
    src: Path, output: dict[str, object], work: Path, name: str, env: dict[str, str]
) -> tuple[float, float]:
    """Wall and CPU seconds of ``python -m audioextract worker`` for one task."""
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
    env = {**env, "AUDIOEXTRACT_TEMP_DIR": str(work / "tmp")}
    return report.measure(
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
        env=env,
    )


def cases(formats: list[str], normalize: bool) -> list[tuple[str, dict[str, object]]]:
    """(label, output) per case: every format, a stream copy, optionally normalize."""
    result: list[tuple[str, dict[str, object]]] = []
    for fmt in formats:
        output: dict[str, object] = {"format": fmt}
        if fmt in ("aac", "m4a"):
            # The source is AAC: without a bitrate this would be a stream copy.
            output["bitrate"] = "192k"
        result.append((fmt, output))
    result.append((COPY, {"format": "m4a"}))
    if normalize:
        result.append((NORMALIZE, {"format": "mp3", "normalize": True}))
    return result


def compare(
    src: Path,
    info: AudioInfo,
    duration: float,
    label: str,
    output: dict[str, object],
    work: Path,
    repeat: int,
    meter: report.LoadMeter,
    env: dict[str, str],
) -> dict[str, Any]:
    """Bare ffmpeg and the worker alternately, best of ``repeat`` each."""
    ext = FORMATS[Output.model_validate(output).format].extension  # type: ignore[index]
    bare_runs, worker_runs = report.alternate(
        repeat,
        meter,
        lambda _: bare_ffmpeg(src, info, output, work / f"bare{ext}", env),
        lambda i: worker(src, output, work, f"w{i}", env),
    )
    bare, wk = min(bare_runs), min(worker_runs)
    result = json.loads((work / "result.json").read_text())
    return {
        "case": label,
        "bare_s": bare[0],
        "worker_s": wk[0],
        "overhead": wk[0] / bare[0],
        "fixed_cost_s": wk[0] - bare[0],
        "realtime_x": duration / wk[0],
        "bare_cpu_s": bare[1],
        "worker_cpu_s": wk[1],
        "stream_copied": result.get("streamCopied"),
        "size_mb": result.get("sizeBytes", 0) / 1e6,
        "bare_runs": bare_runs,
        "worker_runs": worker_runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600, help="overhead source length")
    parser.add_argument("--content-seconds", type=float, default=120, help="per-content sources")
    parser.add_argument("--formats", default=",".join(ALL_FORMATS), help="comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the best counts")
    parser.add_argument("--normalize", action="store_true", help="add the mp3 + normalize case")
    parser.add_argument("--quick", action="store_true", help="about a minute: 30 s sources")
    parser.add_argument(
        "--part",
        choices=["all", "overhead", "content"],
        default="all",
        help="run one part only (the other's figures come from bench/results/worker.json)",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/performance.md")
    report.add_ffmpeg_arguments(parser)
    args = parser.parse_args()
    formats = args.formats.split(",")
    if args.quick:
        args.seconds, args.content_seconds, args.repeat = 30, 10, 2
        formats = QUICK_FORMATS

    # The sources, generated (and cached) with the host's ffmpeg: the image's cannot
    # make them (no test sources, no video encoder).
    src = content.video("mixed", args.seconds)
    kinds = content.KINDS if args.part in ("all", "content") else ()
    for kind in kinds:
        content.video(kind, args.content_seconds)
    if args.in_image:
        return report.reexec_in_image(args.in_image, "bench.worker", args.checkout_code)
    env = report.ffmpeg_env(args.ffmpeg_dir)
    name = report.variant("worker", args.ffmpeg_dir)
    meter = report.LoadMeter()
    info, duration = probe_audio(src, env)
    print(f"machine: {report.machine(env)}")
    print(f"source: {src.name}, {duration:.0f} s, audio {info.codec} {info.sample_rate} Hz\n")
    rows = []
    per_content = []
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        work = Path(tmp)
        for label, output in cases(formats, args.normalize) if args.part != "content" else ():
            r = compare(src, info, duration, label, output, work, args.repeat, meter, env)
            rows.append(r)
            print(
                f"{label:20s} bare {r['bare_s']:7.2f} s  worker {r['worker_s']:7.2f} s  "
                f"ratio {r['overhead']:.3f}  fixed {r['fixed_cost_s']:+.2f} s  "
                f"realtime {r['realtime_x']:.0f}x",
                flush=True,
            )
        for kind in kinds:
            ksrc = content.video(kind, args.content_seconds)
            kinfo, kdur = probe_audio(ksrc, env)
            for label, output in cases(formats, False):
                if label == COPY:
                    continue
                runs = 1 if args.quick else args.repeat
                r = compare(ksrc, kinfo, kdur, label, output, work, runs, meter, env)
                per_content.append(
                    {
                        "content": kind,
                        "case": label,
                        "realtime_x": r["realtime_x"],
                        "bare_realtime_x": kdur / r["bare_s"],
                    }
                )
                print(
                    f"{kind:7s} {label:10s} realtime: worker {r['realtime_x']:.0f}x, "
                    f"bare {kdur / r['bare_s']:.0f}x",
                    flush=True,
                )
    meter.sample()
    run = {
        "when": report.now(),
        "args": f"--part {args.part} --seconds {args.seconds:g} "
        f"--content-seconds {args.content_seconds:g} --repeat {args.repeat}"
        + report.ffmpeg_args(args.ffmpeg_dir),
        "load": meter.text(),
    }
    parts: dict[str, dict[str, str] | None] = {"overhead": run, "content": run}
    source = (
        f"{src.name}: {duration:.0f} s of mixed content (speech, music, noise), "
        f"AAC {info.sample_rate} Hz stereo under 1280x720 H.264"
    )
    content_seconds = args.content_seconds
    if args.part != "all":
        # Keep the other part's figures (and when, how, under which load) from before,
        # if there are any.
        previous_file = report.RESULTS / f"{name}.json"
        previous = json.loads(previous_file.read_text()) if previous_file.exists() else {}
        other = "content" if args.part == "overhead" else "overhead"
        parts[other] = previous.get("parts", {}).get(other)
        rows = rows or previous.get("rows", [])
        per_content = per_content or previous.get("per_content", [])
        # The part kept from before describes its own sources.
        if args.part == "overhead":
            content_seconds = previous.get("content_seconds", content_seconds)
        else:
            source = previous.get("source", source)
    data = {
        "parts": parts,
        "machine": report.machine(env),
        "source": source,
        "rows": rows,
        "per_content": per_content,
        "content_seconds": content_seconds,
    }
    report.publish(
        name, data, render, section=name, docs=not args.no_docs, heading=report.heading(name)
    )
    return 0


def render(data: dict[str, Any]) -> str:
    """The docs section."""
    parts = data["parts"]
    lines = [f"Machine: {data['machine']}."]
    if data["rows"]:
        lines += [
            "",
            f"Overhead: measured {parts['overhead']['when']} with "
            f"`bench/worker.py {parts['overhead']['args']}`; {parts['overhead']['load']}.",
            f"Source: {data['source']}.",
            "",
            "| Case | Bare ffmpeg (s) | Worker (s) | Worker / ffmpeg | Fixed cost (s) "
            "| Realtime (worker) | CPU s bare / worker | Output MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
    by_case = {}
    for r in data["rows"]:
        by_case[r["case"]] = r
        lines.append(
            f"| {r['case']} | {r['bare_s']:.2f} | {r['worker_s']:.2f} | {r['overhead']:.3f} | "
            f"{r['fixed_cost_s']:+.2f} | {r['realtime_x']:.0f}x | "
            f"{r['bare_cpu_s']:.2f} / {r['worker_cpu_s']:.2f} | {r['size_mb']:.1f} |"
        )
    if COPY in by_case and "mp3" in by_case:
        copy, mp3 = by_case[COPY], by_case["mp3"]
        lines += [
            "",
            f"Stream copy vs mp3 transcode of the same source (worker): {copy['worker_s']:.2f} s "
            f"vs {mp3['worker_s']:.2f} s wall, {mp3['worker_s'] / copy['worker_s']:.1f}x faster; "
            f"{copy['worker_cpu_s']:.2f} s vs {mp3['worker_cpu_s']:.2f} s of CPU, "
            f"{mp3['worker_cpu_s'] / copy['worker_cpu_s']:.1f}x less.",
        ]
    if data["per_content"]:
        cases_ = list(dict.fromkeys(r["case"] for r in data["per_content"]))
        kinds = list(dict.fromkeys(r["content"] for r in data["per_content"]))
        table = {
            (r["content"], r["case"]): f"{r['realtime_x']:.0f}x"
            + (f" ({r['bare_realtime_x']:.0f}x)" if "bare_realtime_x" in r else "")
            for r in data["per_content"]
        }
        lines += [
            "",
            f"Per content: measured {parts['content']['when']} with "
            f"`bench/worker.py {parts['content']['args']}`; {parts['content']['load']}.",
            "Realtime factor, the worker's (bare ffmpeg's in brackets), on sources of their "
            f"own of {data.get('content_seconds', '?')} s, same shape (best of the runs):",
            "",
            "| Content | " + " | ".join(cases_) + " |",
            "|---|" + "---:|" * len(cases_),
        ]
        for kind in kinds:
            cells = " | ".join(table[(kind, c)] for c in cases_)
            lines.append(f"| {kind} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
