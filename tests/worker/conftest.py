"""Driving the worker as a subprocess, the way the Job runs it."""

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from audioextract.api.status import JobError, JobResult
from tests.support.s3 import S3_ENV

LOOPBACK = "127.0.0.0/8"


@dataclass
class Run:
    returncode: int
    result: dict[str, Any]
    raw: str
    stderr: str
    out_dir: Path

    @property
    def error(self) -> dict[str, Any]:
        return self.result.get("error", {})

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]


RunWorker = Callable[..., Run]


@pytest.fixture
def run_worker(tmp_path: Path, media_files: dict[str, Path]) -> RunWorker:
    """Run ``python -m audioextract worker`` on a task; volumes ``media`` (sources) and ``out``."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def run(
        source: dict[str, Any],
        output: dict[str, Any] | None = None,
        *,
        env: dict[str, str] | None = None,
        timeout_seconds: int = 60,
        name: str = "job",
        allow_loopback: bool = True,
        wrap: Callable[[list[str]], list[str]] | None = None,
    ) -> Run:
        output = dict(output or {})
        output.setdefault("format", "mp3")
        output.setdefault("destination", {"volume": {"claimName": "out"}})
        task = {"name": name, "source": source, "output": output, "timeoutSeconds": timeout_seconds}
        task_file = tmp_path / "task.json"
        task_file.write_text(json.dumps(task))
        result_file = tmp_path / "result.json"
        result_file.unlink(missing_ok=True)
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AUDIOEXTRACT_", "AWS_"))
        }
        full_env.update(S3_ENV)
        full_env["AUDIOEXTRACT_TEMP_DIR"] = str(tmp_path / "scratch")
        if allow_loopback:
            full_env["AUDIOEXTRACT_ALLOW_NETWORKS"] = LOOPBACK
        full_env.update(env or {})
        media_dir = next(iter(media_files.values())).parent
        argv = [
            sys.executable,
            "-m",
            "audioextract",
            "worker",
            "--task",
            str(task_file),
            "--result",
            str(result_file),
            "--volume",
            f"media={media_dir}",
            "--volume",
            f"out={out_dir}",
        ]
        # ``wrap`` runs the worker in another context, e.g. inside a network namespace.
        proc = subprocess.run(
            wrap(argv) if wrap else argv,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        raw = result_file.read_text() if result_file.exists() else ""
        assert raw, f"no result written; stderr:\n{proc.stderr}"
        assert len(raw.encode()) <= 4096
        result = json.loads(raw)
        if "error" in result:
            JobError.model_validate(result["error"])
        else:
            JobResult.model_validate(result)
        return Run(proc.returncode, result, raw, proc.stderr, out_dir)

    return run


def media(name: str) -> dict[str, Any]:
    """A source on the ``media`` volume."""
    return {"volume": {"claimName": "media", "path": name}}


@dataclass
class InProcess:
    """The worker's ``execute`` called in this process (no interpreter start per job)."""

    media_dir: Path
    out_dir: Path
    tmp: Path

    def __call__(
        self, source: dict[str, Any], output: dict[str, Any], *, name: str = "job"
    ) -> JobResult:
        """Run one task; raises WorkerError as the worker would report it."""
        from audioextract.api.task import Task
        from audioextract.worker.job import execute
        from audioextract.worker.log import JsonLogger
        from audioextract.worker.settings import WorkerSettings
        from audioextract.worker.storage import VolumeMap

        output = {"destination": {"volume": {"claimName": "out"}}, **output}
        task = Task.model_validate(
            {"name": name, "source": source, "output": output, "timeoutSeconds": 120}
        )
        settings = WorkerSettings.from_env(
            {"AUDIOEXTRACT_ALLOW_NETWORKS": LOOPBACK, "AUDIOEXTRACT_TEMP_DIR": str(self.tmp)}
        )
        volumes = VolumeMap(self.tmp, {"media": self.media_dir, "out": self.out_dir})
        log = JsonLogger(name, stream=io.StringIO())
        return execute(task, settings, volumes, log, time.monotonic() + 120)

    def path(self, result: JobResult) -> Path:
        """The delivered file of a result on the ``out`` volume."""
        return self.out_dir / result.uri.rsplit("/", 1)[1]


@pytest.fixture
def in_process(tmp_path: Path, media_files: dict[str, Path]) -> InProcess:
    """Run tasks in this process; sources on ``media``, outputs on ``out``."""
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    return InProcess(next(iter(media_files.values())).parent, out_dir, tmp_path / "scratch")
