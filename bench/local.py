"""Local runner throughput: many short jobs, against the same ffmpeg commands under xargs -P.

    make bench-local                         # 250 jobs per run, --parallel 1..cores
    .venv/bin/python bench/local.py --quick  # 40 jobs, about a minute

Each job turns a 0.5 s clip (320x240 H.264 with AAC audio cut from the speech, music
and noise content of bench/content.py, in turn) into mp3 on a volume. For each N it
runs, alternately (the order flipped every round):

* the floor: the ffmpeg encode command the worker builds for each job
  (``build_command``), one line per job, run by ``xargs -P N``;
* ours: ``audio-extract run batch.yaml --parallel N`` end to end (plan, the warm worker
  pool, per job: task validation, source ffprobe, encode, output ffprobe, sha256,
  delivery to the volume, the status file as YAML).

Reported per N: wall time (best of --repeat), ratio ours / floor, time per job, and
the CPU seconds of each side's process tree (less sensitive than wall time to other
work on a shared machine).
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audioextract.api.spec import Output
from audioextract.worker.command import DEMUXERS, AudioInfo, InputSpec, build_command, plan_encode
from bench import content, report

CLIP_SECONDS = 0.5
CLIPS_PER_KIND = 4


def clips() -> list[Path]:
    """Short video clips (cached): CLIPS_PER_KIND cut from each content."""
    directory = content.CACHE / "clips"
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in content.KINDS:
        wav = content.audio(kind, 30)
        for i in range(CLIPS_PER_KIND):
            path = directory / f"{kind}-{i}.mp4"
            if not path.exists():
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
                        f"testsrc=size=320x240:rate=25:duration={CLIP_SECONDS}",
                        "-ss",
                        str(2 + 6 * i),
                        "-t",
                        str(CLIP_SECONDS),
                        "-i",
                        str(wav),
                        "-map",
                        "0:v",
                        "-map",
                        "1:a",
                        "-c:v",
                        "libx264",
                        "-preset",
                        "ultrafast",
                        "-c:a",
                        "aac",
                        "-b:a",
                        "128k",
                        "-shortest",
                        str(tmp),
                    ],
                    check=True,
                )
                tmp.rename(path)
            paths.append(path)
    return paths


def probe(path: Path, env: dict[str, str] | None = None) -> AudioInfo:
    """What the worker's source probe finds, for planning the floor's commands."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,sample_rate,channels,bit_rate",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    s = json.loads(out)["streams"][0]
    return AudioInfo(
        codec=s["codec_name"],
        sample_rate=int(s["sample_rate"]),
        channels=int(s["channels"]),
        bit_rate=int(s.get("bit_rate") or 0) or None,
    )


def floor_commands(
    sources: list[Path], jobs: int, out: Path, env: dict[str, str] | None = None
) -> list[str]:
    """One shell-quoted ffmpeg command per job: the worker's own encode command."""
    output = Output.model_validate({"format": "mp3"})
    infos = {p: probe(p, env) for p in sources}
    lines = []
    for j in range(jobs):
        src = sources[j % len(sources)]
        inp = InputSpec(f"file:{src}", {"protocol_whitelist": "file", "format_whitelist": DEMUXERS})
        args = build_command(inp, plan_encode(output, infos[src]), str(out / f"j{j:04d}.mp3"))
        # xargs appends each line to its own command, "ffmpeg".
        lines.append(shlex.join(args[1:]))
    return lines


def batch(sources: list[Path], jobs: int) -> dict[str, Any]:
    """The Batch: job j reads clip j mod len(clips) from the media volume."""
    return {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "Batch",
        "metadata": {"name": "bench"},
        "spec": {
            "defaults": {
                "output": {"format": "mp3", "destination": {"volume": {"claimName": "out"}}}
            },
            "jobs": [
                {
                    "name": f"j{j:04d}",
                    "source": {
                        "volume": {"claimName": "media", "path": sources[j % len(sources)].name}
                    },
                }
                for j in range(jobs)
            ],
        },
    }


def fresh(directory: Path) -> Path:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def run_floor(
    work: Path, lines: list[str], parallel: int, env: dict[str, str]
) -> tuple[float, float]:
    fresh(work / "floor-out")
    cmds = str(work / "cmds.txt")
    wall, cpu = report.measure(
        ["xargs", "-P", str(parallel), "-L", "1", "-a", cmds, "ffmpeg"], work, env
    )
    done = len(list((work / "floor-out").iterdir()))
    if done != len(lines):
        raise SystemExit(f"xargs produced {done} files, not {len(lines)}")
    return wall, cpu


def run_ours(
    work: Path, media: Path, parallel: int, jobs: int, env: dict[str, str]
) -> tuple[float, float]:
    out = fresh(work / "out")
    fresh(work / "tmp")
    result = report.measure(
        [
            sys.executable,
            "-m",
            "audioextract",
            "run",
            "batch.json",
            "--parallel",
            str(parallel),
            "--volume",
            f"media={media}",
            "--volume",
            f"out={out}",
            "--status",
            "status.yaml",
        ],
        work,
        env,
    )
    done = len(list(out.iterdir()))
    if done != jobs:
        raise SystemExit(f"the local run produced {done} files, not {jobs}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=250, help="jobs per run (default 250)")
    parser.add_argument(
        "--parallel", default=None, help="comma-separated N values (default 1..CPU count)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs per side and N; best counts")
    parser.add_argument("--quick", action="store_true", help="40 jobs, one run each")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/performance.md")
    report.add_ffmpeg_arguments(parser)
    args = parser.parse_args()
    # On the host: the image's ffmpeg cannot make them (no test sources, no video encoder).
    sources = clips()
    if args.in_image:
        return report.reexec_in_image(args.in_image, "bench.local", args.checkout_code)
    env = report.ffmpeg_env(args.ffmpeg_dir)
    name = report.variant("local", args.ffmpeg_dir)
    if args.quick:
        args.jobs, args.repeat = 40, 1
    cores = os.cpu_count() or 1
    levels = (
        [int(n) for n in args.parallel.split(",")] if args.parallel else list(range(1, cores + 1))
    )

    meter = report.LoadMeter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        work = Path(tmp)
        media = sources[0].parent
        (work / "batch.json").write_text(json.dumps(batch(sources, args.jobs)))
        lines = floor_commands(sources, args.jobs, work / "floor-out", env)
        (work / "cmds.txt").write_text("\n".join(lines) + "\n")
        for n in levels:
            floors, ours = report.alternate(
                args.repeat,
                meter,
                lambda _, n=n: run_floor(work, lines, n, env),
                lambda _, n=n: run_ours(work, media, n, args.jobs, env),
            )
            floor, our = min(floors), min(ours)
            row = {
                "parallel": n,
                "jobs": args.jobs,
                "floor_s": floor[0],
                "ours_s": our[0],
                "ratio": our[0] / floor[0],
                "floor_cpu_s": floor[1],
                "ours_cpu_s": our[1],
                "floor_runs": floors,
                "ours_runs": ours,
            }
            rows.append(row)
            print(
                f"--parallel {n}: xargs {floor[0]:6.2f} s  ours {our[0]:6.2f} s  "
                f"ratio {row['ratio']:.2f}  CPU {floor[1]:.1f} s vs {our[1]:.1f} s",
                flush=True,
            )
    data = report.record(
        f"--jobs {args.jobs} --repeat {args.repeat}{report.ffmpeg_args(args.ffmpeg_dir)}",
        meter,
        env,
        rows=rows,
    )
    report.publish(
        name, data, render, section=name, docs=not args.no_docs, heading=report.heading(name)
    )
    return 0


def render(data: dict[str, Any]) -> str:
    """The docs section."""
    lines = [
        *report.header("local.py", data),
        "Content: 0.5 s clips of speech, music and noise (12 clips in turn), each to mp3.",
        "",
        "| --parallel | Jobs | xargs -P ffmpeg (s) | audio-extract run (s) | Ratio | "
        "ms per job (ours) | CPU s xargs / ours |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['parallel']} | {r['jobs']} | {r['floor_s']:.2f} | {r['ours_s']:.2f} | "
            f"{r['ratio']:.2f} | {1000 * r['ours_s'] / r['jobs']:.0f} | "
            f"{r['floor_cpu_s']:.1f} / {r['ours_cpu_s']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
