"""What every benchmark reports: the machine, its load, raw results and its docs section.

Each benchmark owns one section of docs/performance.md, between
``<!-- bench-NAME:start -->`` and ``<!-- bench-NAME:end -->``, and rewrites only that.
"""

import json
import os
import platform
import resource
import subprocess
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


def machine() -> str:
    """CPU, core count, memory, OS, Python and ffmpeg versions."""
    cpu = cpu_model()
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    ffmpeg_version = subprocess.run(
        ["ffmpeg", "-version"], capture_output=True, text=True, check=False
    ).stdout.split("\n")[0]
    return (
        f"{cpu}, {os.cpu_count()} CPUs{mem}; {platform.platform()}; "
        f"Python {platform.python_version()}; {ffmpeg_version}"
    )


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


def record(args: str, meter: LoadMeter, **results: Any) -> dict[str, Any]:
    """A run's raw results: when, with which arguments, where, under which load, and ``results``.

    Takes the load's last sample, so call it when the measuring is over.
    """
    meter.sample()
    return {"when": now(), "args": args, "machine": machine(), "load": meter.text(), **results}


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
) -> None:
    """Save the raw results, print the docs section and, unless ``docs`` is off, write it."""
    save(name, data)
    text = render(data)
    print("\n" + text)
    if docs:
        write_section(section or name, text)
