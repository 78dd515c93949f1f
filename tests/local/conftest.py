"""Driving ``audio-extract run`` as a user does: ``python -m audioextract run ...``."""

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import http_server, media
from tests.support.s3 import S3_ENV

LOOPBACK = "127.0.0.0/8"
MEDIA = "av.mp4"


@dataclass
class Run:
    """A finished ``audio-extract run``."""

    returncode: int
    stdout: str
    stderr: str
    cwd: Path

    def status(self, name: str = "status.yaml") -> dict[str, Any]:
        text = (self.cwd / name).read_text()
        data: dict[str, Any] = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
        return data

    def jobs(self, name: str = "status.yaml") -> dict[str, dict[str, Any]]:
        return {j["name"]: j for j in self.status(name)["status"]["jobs"]}


RunCli = Callable[..., Run]


@pytest.fixture(scope="session")
def local_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory holding the one medium these tests need (4 s of video and a tone)."""
    directory = tmp_path_factory.mktemp("local-media")
    media.generate(directory, names=[MEDIA])
    return directory


@pytest.fixture(scope="session")
def source_server(local_media: Path) -> Iterator[http_server.MediaServer]:
    """The media directory over HTTP on 127.0.0.1."""
    with http_server.serve(local_media) as server:
        yield server


def cli_env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: test S3 credentials, loopback allowed, fast webhook retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIOEXTRACT_", "AWS_"))}
    env.update(S3_ENV)
    env["AUDIOEXTRACT_ALLOW_NETWORKS"] = LOOPBACK
    env["AUDIOEXTRACT_WEBHOOK_RETRY_SCHEDULE"] = "50ms,100ms"
    env["TMPDIR"] = str(tmp / "tmp")
    (tmp / "tmp").mkdir(exist_ok=True)
    env.update(extra or {})
    return env


def command(*args: str) -> list[str]:
    """The command line of ``audio-extract run ARGS``."""
    return [sys.executable, "-m", "audioextract", "run", *args]


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """Run ``audio-extract run`` in ``tmp_path``; ``obj`` is written to ``file`` first."""

    def run(
        obj: dict[str, Any] | None,
        *args: str,
        file: str = "batch.yaml",
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        mkdirs: tuple[str, ...] = (),
    ) -> Run:
        for directory in mkdirs:
            (tmp_path / directory).mkdir(parents=True, exist_ok=True)
        if obj is not None:
            text = json.dumps(obj) if file.endswith(".json") else yaml.safe_dump(obj)
            (tmp_path / file).write_text(text)
        proc = subprocess.run(
            command(file if stdin is None else "-", *args),
            cwd=tmp_path,
            input=stdin,
            env=cli_env(tmp_path, env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr, tmp_path)

    return run


def batch(name: str, jobs: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A Batch object."""
    return {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "Batch",
        "metadata": {"name": name},
        "spec": {"jobs": jobs, **spec},
    }


def http_job(
    server: http_server.MediaServer, name: str, path: str = f"range/{MEDIA}", **fields: Any
) -> dict[str, Any]:
    """A job reading ``path`` from the test server, tagged with its name in the query."""
    return {"name": name, "source": {"url": server.url(f"{path}?job={name}")}, **fields}


def results(stdout: str) -> dict[str, dict[str, str]]:
    """The results table, cut at its header's column positions: job -> column -> cell."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("JOB "))
    header = lines[start]
    names = header.split()
    offsets = [header.index(f"{n}") for n in names]
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = {
            name: line[offsets[i] : offsets[i + 1] if i + 1 < len(names) else None].strip()
            for i, name in enumerate(names)
        }
        rows[cells["JOB"]] = cells
    return rows
