"""Runs the real ``audio-extract operator`` as a subprocess against the kmock emulator.

A subprocess rather than kopf in the test's process: it is the command as deployed
(its own event loop, signal handling, kopf's login from a kubeconfig), the emulator
keeps its own loop in the test process, and "still alive, not crash-looping" is a
plain question to the process.
"""

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from tests.support.kube_emulator import NAMESPACE, EmulatorThread

# Passes are driven by watch events and the operator's own retry after a failed pass:
# the resync timer is set far beyond the tests, so it can never be what heals them.
DEFAULT_ENV = {
    "AUDIOEXTRACT_RESYNC_SECONDS": "300",
    "AUDIOEXTRACT_API_TIMEOUT_SECONDS": "1",
    "AUDIOEXTRACT_WORKER_IMAGE": "audio-extract-worker:test",
    "AUDIOEXTRACT_DEFAULT_DESTINATION": '{"s3": {"bucket": "audio", "prefix": "out"}}',
    "AUDIOEXTRACT_METRICS_PORT": "0",
    "AUDIOEXTRACT_METRICS_ADDRESS": "127.0.0.1",
}


class OperatorRun:
    """``audio-extract operator -n default --standalone`` with a kubeconfig for the emulator."""

    def __init__(self, emulator: EmulatorThread, env: dict[str, str] | None = None) -> None:
        self.emulator = emulator
        self.workdir = Path(tempfile.mkdtemp(prefix="kmock-operator-"))
        self.log_path = self.workdir / "operator.log"
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "OperatorRun":
        kubeconfig = self.workdir / "kubeconfig"
        kubeconfig.write_text(self.emulator.kubeconfig())
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            **DEFAULT_ENV,
            **self.extra_env,
        }
        for var in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
            env.pop(var, None)  # never the in-cluster configuration
        argv = [sys.executable, "-m", "audioextract", "operator", "-n", NAMESPACE, "--standalone"]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then the exit code (SIGKILL after 15 s: then the code is negative)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> "OperatorRun":
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if et is not None:
            sys.stderr.write(f"--- operator log ---\n{self.log()[-20000:]}\n")
