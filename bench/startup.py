"""Start-up cost of one ffmpeg-family process: CPU and wall time of doing almost nothing.

    .venv/bin/python -m bench.startup                          # the ffmpeg on PATH
    .venv/bin/python -m bench.startup --ffmpeg-dir DIR         # DIR/ffmpeg, DIR/ffprobe
    .venv/bin/python -m bench.startup --in-image audio-extract-worker:0.1.0

The worker runs three ffmpeg-family processes per job (source probe, encode, output
probe) where bare ffmpeg runs one, so what a process costs before it does any work is
part of the worker's fixed cost. Measured, ``--repeat`` times each, alternating:

* ``ffmpeg -version``;
* ``ffprobe`` of a 0.5 s clip: the worker's probe command (``process.ffprobe_command``);
* ``ffmpeg`` encoding that clip to mp3: the command the worker builds (the local
  runner's job, as bench/local.py's xargs floor runs it).

Reported: mean CPU seconds (user + system) and mean wall seconds per process, and the
number of shared libraries the binary loads. Prints only (no docs section): the
figures go into the worker and local-runner sections of docs/performance.md by hand,
each next to the run it explains.
"""

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audioextract.worker import process
from bench import local, report


def shared_libraries(binary: str, env: dict[str, str]) -> int:
    """How many shared libraries the dynamic loader maps for ``binary`` (ldd's count)."""
    path = subprocess.run(
        ["sh", "-c", f'command -v "{binary}"'], capture_output=True, text=True, env=env
    ).stdout.strip()
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
    return sum(1 for line in out.splitlines() if "=>" in line)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=50, help="runs of each command")
    report.add_ffmpeg_arguments(parser)
    args = parser.parse_args()
    clip = local.clips()[0]
    if args.in_image:
        return report.reexec_in_image(args.in_image, "bench.startup", args.checkout_code)
    env = report.ffmpeg_env(args.ffmpeg_dir)
    commands = {
        "ffmpeg -version": ["ffmpeg", "-version"],
        # The worker's own probe command line; no input options (the whitelists), as the
        # figures in docs/performance.md were measured without them.
        "ffprobe of a 0.5 s clip": process.ffprobe_command(f"file:{clip}", {}),
    }
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        (line,) = local.floor_commands([clip], 1, Path(tmp), env)
        commands["ffmpeg: the clip to mp3"] = ["ffmpeg", *shlex.split(line)]
        totals = {name: [0.0, 0.0] for name in commands}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                before, start = report.cpu(), time.perf_counter()
                subprocess.run(
                    cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                totals[name][0] += report.cpu() - before
                totals[name][1] += time.perf_counter() - start
    print(f"machine: {report.machine(env)}")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    print(
        f"shared libraries: ffmpeg {shared_libraries('ffmpeg', env)}, "
        f"ffprobe {shared_libraries('ffprobe', env)}"
    )
    for name, (cpu, wall) in totals.items():
        print(
            f"{name:28s} CPU {1000 * cpu / args.repeat:6.1f} ms  "
            f"wall {1000 * wall / args.repeat:6.1f} ms  (mean of {args.repeat})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
