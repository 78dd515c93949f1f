"""Runs ``audio-extract operator`` as a subprocess against the envtest control plane."""

import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

import kubernetes.client
import yaml

from tests.envtest.operator_helpers import failed_create_events
from tests.support.container import Container
from tests.support.controlplane import ControlPlane


class OperatorProcess:
    """The real operator command, one namespace, its log kept in a file for failures.

    Leaving the ``with`` block without an error also checks the namespace for the Job
    controller's ``FailedCreate`` Events: the namespace enforces the restricted Pod
    Security Standard, and the operator's Pod template must pass it.
    """

    def __init__(
        self,
        cp: ControlPlane,
        namespace: str,
        env: dict[str, str],
        standalone: bool = True,
        image: Container | None = None,
    ) -> None:
        self.cp, self.namespace, self.extra_env, self.standalone = cp, namespace, env, standalone
        # With an image (the operator image), the operator runs from its root filesystem
        # (tests/support/container.py) instead of this virtualenv.
        self.image = image
        self._image_dir: Path | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="operator-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "OperatorProcess":
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cp.kubeconfig),
            "AUDIOEXTRACT_WORKER_IMAGE": "audio-extract-worker:test",
            "AUDIOEXTRACT_RESYNC_SECONDS": "1",
            **self.extra_env,
        }
        argv = [sys.executable, "-m", "audioextract", "operator", "--namespace", self.namespace]
        if self.standalone:
            argv.append("--standalone")
        if self.image is not None:
            argv, env = self._in_image(self.image, argv[3:], env)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def _in_image(
        self, image: Container, args: list[str], env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """The host command running ``audio-extract <args>`` in ``image``, and its env."""
        # A kubeconfig with the CA inline, readable by the image's user, on a mount.
        kube = self._image_dir = Path(tempfile.mkdtemp(prefix="operator-kube-"))
        config = yaml.safe_load(self.cp.kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        ca = Path(cluster.pop("certificate-authority")).read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
        (kube / "config").write_text(yaml.safe_dump(config))
        uid, gid = (int(x) for x in image.user.split(":"))
        for path in (kube, kube / "config"):
            os.chown(path, uid, gid)
        (kube / "root").mkdir()
        own = {k: v for k, v in env.items() if k.startswith("AUDIOEXTRACT_")}
        argv = image.command(
            ["audio-extract", *args],
            mountpoint=kube / "root",
            mounts={"/tmp/kube": kube},
            env={**own, "KUBECONFIG": "/tmp/kube/config"},
        )
        return argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs (no Lease release, no flush)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def assert_healthy(self) -> None:
        """Still running, and nothing in the log that says a pass or a handler broke."""
        log = self.log()
        assert self.alive(), f"operator exited:\n{log[-5000:]}"
        for marker in ("Traceback", "ERROR audioextract", "inconsistencies"):
            assert marker not in log, log[-8000:]

    def assert_no_failed_create(self) -> None:
        """No Pod of the namespace was refused (e.g. by Pod Security admission)."""
        core = kubernetes.client.CoreV1Api(self.cp.api_client)
        refused = failed_create_events(core, self.namespace)
        assert not refused, f"Job controller could not create Pods: {refused}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._image_dir is not None:
            shutil.rmtree(self._image_dir, ignore_errors=True)

    def __enter__(self) -> "OperatorProcess":
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if et is None:
                self.assert_no_failed_create()
        finally:
            self.stop()
        if et is not None:
            sys.stderr.write(f"--- operator log ---\n{self.log()[-20000:]}\n")
