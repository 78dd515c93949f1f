"""What every benchmark reports: the machine, its load, raw results and its docs section.

Each benchmark owns one section of docs/performance.md, between
``<!-- bench-NAME:start -->`` and ``<!-- bench-NAME:end -->``, and rewrites only that.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
RESULTS = ROOT / "bench" / "results"


def cpu_model(unknown: str = "unknown CPU") -> str:
    """The CPU's model name from /proc/cpuinfo, or ``unknown``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return unknown


def machine(env: dict[str, str] | None = None) -> str:
    """CPU, core count, memory, OS, Python and ffmpeg versions (the ffmpeg ``env`` finds)."""
    cpu = cpu_model()
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    ffmpeg_version = subprocess.run(
        ["ffmpeg", "-version"], capture_output=True, text=True, check=False, env=env
    ).stdout.split("\n")[0]
    where = f" in the image {os.environ[IMAGE_ENV]}" if os.environ.get(IMAGE_ENV) else ""
    return (
        f"{cpu}, {os.cpu_count()} CPUs{mem}; {platform.platform()}; "
        f"Python {platform.python_version()}; {ffmpeg_version}{where}"
    )


# -- which ffmpeg: the host's, one in a directory, or the worker image's ---------------

# Set by run_in_image() for the benchmark it starts inside the image: its name.
IMAGE_ENV = "AUDIOEXTRACT_BENCH_IMAGE"
IMAGE_PYTHON = "/opt/audioextract/bin/python"


def add_ffmpeg_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ffmpeg-dir`` and ``--in-image``: which ffmpeg (and worker) a benchmark measures."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--ffmpeg-dir",
        type=Path,
        metavar="DIR",
        help="use DIR/ffmpeg and DIR/ffprobe on both sides (put first on PATH, where the "
        "worker finds them, as in the image)",
    )
    group.add_argument(
        "--in-image",
        metavar="IMAGE",
        help="run the whole benchmark inside the worker image built by `make images` "
        "(buildah, chroot isolation): its ffmpeg, its Python and its installed worker",
    )
    parser.add_argument(
        "--checkout-code",
        action="store_true",
        help="with --in-image: run this checkout's operator/ instead of the package "
        "installed in the image (to measure a change before rebuilding the image)",
    )


def ffmpeg_env(directory: Path | None) -> dict[str, str]:
    """The environment the measured commands run in: DIR first on PATH when given.

    The worker runs ``ffmpeg`` and ``ffprobe`` by name (PATH), as it does in the image,
    whose minimal build sits in /usr/local/bin. Exits with a message when DIR lacks
    either program.
    """
    env = dict(os.environ)
    if directory is None:
        return env
    directory = directory.resolve()
    for program in ("ffmpeg", "ffprobe"):
        path = directory / program
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SystemExit(f"--ffmpeg-dir {directory}: no executable {program} in it")
    env["PATH"] = f"{directory}{os.pathsep}{env.get('PATH', os.defpath)}"
    return env


def variant(name: str, ffmpeg_dir: Path | None) -> str:
    """The results and docs-section name: NAME, NAME-image or NAME-ffmpeg-dir."""
    if os.environ.get(IMAGE_ENV):
        return f"{name}-image"
    return f"{name}-ffmpeg-dir" if ffmpeg_dir is not None else name


def ffmpeg_args(directory: Path | None) -> str:
    """How the run chose its ffmpeg, as command-line options for the docs ('' for PATH's)."""
    if os.environ.get(IMAGE_ENV):
        return f" --in-image {os.environ[IMAGE_ENV]}"
    return f" --ffmpeg-dir {directory}" if directory is not None else ""


def heading(name: str) -> str | None:
    """The heading of a variant's own docs section (None for the host's: it has markers)."""
    if name.endswith("-image"):
        return f"`{name.removesuffix('-image')}` in the worker image"
    if name.endswith("-ffmpeg-dir"):
        return f"`{name.removesuffix('-ffmpeg-dir')}` with another ffmpeg (--ffmpeg-dir)"
    return None


def run_in_image(image: str, module: str, argv: list[str], checkout_code: bool = False) -> int:
    """Run ``python -m MODULE ARGV`` inside ``image`` with this checkout mounted at its path.

    The benchmark then measures what ships: the image's ffmpeg (on its PATH), its
    Python and the audioextract package installed in it (not this checkout's
    operator/; build the image from the commit being measured). It runs as root in the
    container, so that it can write its results into the mounted checkout; the user
    changes nothing that is measured. Content must be generated beforehand on the host
    (the image's ffmpeg has no test sources or video encoders): the caller does that.

    ``checkout_code``: this checkout's operator/ comes first on the PYTHONPATH instead,
    with byte-code caching on (the image turns it off), so that fresh worker processes
    do not compile it again every run.
    """
    buildah = shutil.which("buildah")
    if buildah is None:
        raise SystemExit("--in-image needs buildah (see docs/images.md)")
    env = {**os.environ, "STORAGE_DRIVER": os.environ.get("STORAGE_DRIVER", "vfs")}
    made = subprocess.run(
        [buildah, "from", "--pull=never", image],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if made.returncode != 0:
        raise SystemExit(f"--in-image {image}: {made.stderr.strip()}")
    container = made.stdout.strip().splitlines()[-1]
    try:
        return subprocess.run(
            [
                buildah,
                "run",
                "--isolation",
                "chroot",
                "--user",
                "0:0",
                "--workingdir",
                str(ROOT),
                "--env",
                f"{IMAGE_ENV}={image}" + (" (this checkout's operator/)" if checkout_code else ""),
                *(
                    [
                        "--env",
                        f"PYTHONPATH={ROOT / 'operator'}",
                        "--env",
                        "PYTHONDONTWRITEBYTECODE=",
                    ]
                    if checkout_code
                    else []
                ),
                "-v",
                f"{ROOT}:{ROOT}",
                container,
                "--",
                IMAGE_PYTHON,
                "-m",
                module,
                *argv,
            ],
            env=env,
            check=False,
        ).returncode
    finally:
        subprocess.run([buildah, "rm", container], env=env, stdout=subprocess.DEVNULL, check=False)


def argv_without_image(argv: list[str]) -> list[str]:
    """The command line minus ``--in-image IMAGE`` (for the run inside the image)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--in-image":
            skip = True
        elif not arg.startswith("--in-image="):
            out.append(arg)
    return out


def reexec_in_image(image: str, module: str, checkout_code: bool = False) -> int:
    """Run this benchmark's own command line again inside ``image``."""
    argv = [a for a in argv_without_image(sys.argv[1:]) if a != "--checkout-code"]
    return run_in_image(image, module, argv, checkout_code)


def load() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    return os.getloadavg()


class LoadMeter:
    """Samples the load average during a run: min, max and mean of the 1-minute figure."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def sample(self) -> None:
        """Take one sample (call between measurements)."""
        self.samples.append(load()[0])

    def summary(self) -> dict[str, float]:
        """min/mean/max of the samples."""
        s = self.samples or [load()[0]]
        return {"min": min(s), "mean": sum(s) / len(s), "max": max(s)}

    def text(self) -> str:
        """One line for the docs."""
        s = self.summary()
        return (
            f"load average (1 min) during the run: {s['min']:.1f}-{s['max']:.1f} "
            f"(mean {s['mean']:.1f}) on {os.cpu_count()} CPUs"
        )


def now() -> str:
    """The date and time, UTC, to the minute."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def timed(args: list[str], env: dict[str, str] | None = None) -> float:
    """Run a command to the end; its wall time in seconds (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def cpu() -> float:
    """CPU seconds (user + system) used so far by finished child processes."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(
    args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Wall seconds and CPU seconds (the whole process tree) of a command (it must succeed)."""
    before, start = cpu(), time.perf_counter()
    subprocess.run(
        args, check=True, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start, cpu() - before


def alternate[T](
    repeat: int, meter: LoadMeter, floor: Callable[[int], T], ours: Callable[[int], T]
) -> tuple[list[T], list[T]]:
    """``repeat`` runs of the floor and of ours, each given the run's index.

    The side that goes first alternates, so neither always meets the warmer page cache;
    the load is sampled before every run.
    """
    floors: list[T] = []
    our: list[T] = []
    for i in range(repeat):
        order: list[tuple[Callable[[int], T], list[T]]] = [(floor, floors), (ours, our)]
        for run, sink in order if i % 2 == 0 else order[::-1]:
            meter.sample()
            sink.append(run(i))
    return floors, our


def record(
    args: str, meter: LoadMeter, env: dict[str, str] | None = None, **results: Any
) -> dict[str, Any]:
    """A run's raw results: when, with which arguments, where, under which load, and ``results``.

    ``env`` is the measured commands' environment (which ffmpeg). Takes the load's last
    sample, so call it when the measuring is over.
    """
    meter.sample()
    return {"when": now(), "args": args, "machine": machine(env), "load": meter.text(), **results}


def header(script: str, data: dict[str, Any]) -> list[str]:
    """The first lines of a docs section: when, how, under which load and where."""
    return [
        f"Measured {data['when']} with `bench/{script} {data['args']}`; {data['load']}.",
        f"Machine: {data['machine']}.",
    ]


def save(name: str, data: dict[str, Any]) -> Path:
    """Raw results as bench/results/NAME.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def write_section(name: str, body: str, heading: str | None = None) -> None:
    """Replace the text between this benchmark's markers in docs/performance.md.

    Without the markers: a new section under ``heading`` at the end, or, with no heading,
    an error (a bench that owns a hand-written part of the page must not invent its place).
    """
    start, end = f"<!-- bench-{name}:start -->", f"<!-- bench-{name}:end -->"
    text = DOC.read_text()
    if start not in text or end not in text:
        if heading is None:
            raise SystemExit(f"{DOC}: the markers {start} / {end} are missing")
        text = text.rstrip("\n") + f"\n\n## {heading}\n\n{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    DOC.write_text(f"{head}{start}\n{body.strip()}\n{end}{tail}")


def publish(
    name: str,
    data: dict[str, Any],
    render: Callable[[dict[str, Any]], str],
    section: str | None = None,
    docs: bool = True,
    heading: str | None = None,
) -> None:
    """Save the raw results, print the docs section and, unless ``docs`` is off, write it.

    ``heading``: where a section without markers yet goes (see write_section).
    """
    save(name, data)
    text = render(data)
    print("\n" + text)
    if docs:
        write_section(section or name, text, heading)
