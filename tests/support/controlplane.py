"""A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager.

The binaries come from the directory named by ``KUBEBUILDER_ASSETS`` (the envtest
convention of controller-runtime's ``setup-envtest``). Everything listens on free
loopback ports and lives in a fresh temporary directory; flags are the ones verified in
``shared/k8s/README.md``. Each process runs in its own process group and is also asked
to die with the test process (``PR_SET_PDEATHSIG``), so nothing outlives a crashed or
interrupted test run.

``kube-controller-manager`` is optional: ``setup-envtest`` assets do not ship it. Without
it there is no Job controller, garbage collector, namespace or service-account
controller; :attr:`ControlPlane.has_controller_manager` says which case applies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from pathlib import Path

import kubernetes.client
import yaml

from tests.support.kubectl import Kubectl

ASSETS_ENV = "KUBEBUILDER_ASSETS"
TOKEN = "admin-token"  # a throwaway token for a loopback-only test API server
CONTROLLERS = (
    "*,-node-lifecycle-controller,-taint-eviction-controller,-node-ipam-controller,"
    "-service-lb-controller,-cloud-node-lifecycle-controller,-node-route-controller"
)
ADMISSION_PLUGINS = (
    "NamespaceLifecycle,ServiceAccount,PodSecurity,DefaultStorageClass,ResourceQuota,LimitRanger"
)
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

_PR_SET_PDEATHSIG = 1
try:
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: process groups and the finalizer still apply
    _prctl = None


def die_with_parent() -> None:
    """``preexec_fn``: SIGKILL the child when the thread that started it dies.

    Runs in the child between fork and exec; its only call is a pre-resolved prctl.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ControlPlaneError(RuntimeError):
    """The control plane did not start; the message carries the tail of the logs."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_processes(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """Stop the process groups one by one, last started first: SIGTERM, then SIGKILL.

    One at a time on purpose: kube-apiserver shuts down in well under a second while etcd
    is up, but takes its whole grace period when etcd has gone first.
    """
    while procs:
        _name, proc = procs.pop()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
                break
            except subprocess.TimeoutExpired:
                continue


def _cleanup(procs: list[tuple[str, subprocess.Popen[bytes]]], workdir: Path, keep: bool) -> None:
    _stop_processes(procs)
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)


def _generate_service_account_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager when the assets have it).

    Use :meth:`start` (or the context manager) and :meth:`stop`; a finalizer stops the
    processes too if the object is dropped or the interpreter exits.
    """

    def __init__(self, assets: Path, workdir: Path | None = None) -> None:
        self.assets = Path(assets).resolve()
        for binary in ("etcd", "kube-apiserver"):
            if not (self.assets / binary).is_file():
                raise ControlPlaneError(f"{binary} not found in {ASSETS_ENV}={self.assets}")
        self.has_controller_manager = (self.assets / "kube-controller-manager").is_file()
        kubectl = self.assets / "kubectl"
        found = str(kubectl) if kubectl.is_file() else shutil.which("kubectl")
        self.kubectl_path = Path(found) if found else None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="envtest-"))
        # Set ENVTEST_KEEP=1 to keep the logs and etcd data after the run.
        self.keep = os.environ.get("ENVTEST_KEEP", "") not in ("", "0")
        self.kubeconfig = self.workdir / "kubeconfig"
        self.token = TOKEN
        self.server = ""
        self.ca_file = self.workdir / "certs" / "apiserver.crt"
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._finalizer = weakref.finalize(self, _cleanup, self._procs, self.workdir, self.keep)
        self._api_client: kubernetes.client.ApiClient | None = None

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the processes and return once the API server's /readyz answers 200."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process (process groups, SIGTERM then SIGKILL) and remove the workdir."""
        if self._api_client is not None:
            self._api_client.close()
            self._api_client = None
        self._finalizer()

    def _start(self) -> None:
        d = self.workdir
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self._spawn(
            "etcd",
            [
                str(self.assets / "etcd"),
                "--data-dir", str(d / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
            ],
        )  # fmt: skip
        sa_key = d / "sa.key"
        _generate_service_account_key(sa_key)
        tokens = d / "tokens.csv"
        tokens.write_text(f"{TOKEN},admin,admin,system:masters\n")
        tokens.chmod(0o600)
        self._spawn(
            "kube-apiserver",
            [
                str(self.assets / "kube-apiserver"),
                "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
                "--bind-address", "127.0.0.1",
                "--advertise-address", "127.0.0.1",
                "--secure-port", str(api_port),
                "--cert-dir", str(d / "certs"),
                "--service-account-issuer", "https://kubernetes.default.svc",
                "--service-account-key-file", str(sa_key),
                "--service-account-signing-key-file", str(sa_key),
                "--token-auth-file", str(tokens),
                "--authorization-mode", "RBAC",
                "--service-cluster-ip-range", "10.96.0.0/16",
                "--enable-admission-plugins", ADMISSION_PLUGINS,
            ],
        )  # fmt: skip
        self.server = f"https://127.0.0.1:{api_port}"
        self._wait_ready()
        self._write_kubeconfig()
        if self.has_controller_manager:
            self._spawn(
                "kube-controller-manager",
                [
                    str(self.assets / "kube-controller-manager"),
                    "--kubeconfig", str(self.kubeconfig),
                    "--leader-elect=false",
                    "--bind-address", "127.0.0.1",
                    "--secure-port", "0",
                    "--service-account-private-key-file", str(sa_key),
                    "--root-ca-file", str(self.ca_file),
                    "--use-service-account-credentials=false",
                    "--controllers", CONTROLLERS,
                ],
            )  # fmt: skip

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        with log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # own process group: killpg reaches everything
                preexec_fn=die_with_parent,  # only calls a pre-resolved prctl
            )
        self._procs.append((name, proc))

    def check_alive(self) -> None:
        """Raise ControlPlaneError (with the log tail) if a process has exited."""
        for name, proc in self._procs:
            if proc.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with {proc.returncode}:\n{_tail(self.workdir / f'{name}.log')}"
                )

    def _wait_ready(self) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the serving certificate does not exist yet
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(request, context=ctx, timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        raise ControlPlaneError(
            f"kube-apiserver not ready after {STARTUP_TIMEOUT:.0f}s ({last}):\n"
            f"{_tail(self.workdir / 'kube-apiserver.log')}"
        )

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [
                {
                    "name": "envtest",
                    "context": {"cluster": "envtest", "user": "admin", "namespace": "default"},
                }
            ],
            "current-context": "envtest",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    # -- clients ---------------------------------------------------------------------

    def configuration(self) -> kubernetes.client.Configuration:
        """A client Configuration for the admin user (TLS verified against the server's CA)."""
        config = kubernetes.client.Configuration()
        config.host = self.server
        config.ssl_ca_cert = str(self.ca_file)
        config.api_key = {"authorization": TOKEN}
        config.api_key_prefix = {"authorization": "Bearer"}
        return config

    def new_api_client(self) -> kubernetes.client.ApiClient:
        """A new ApiClient with its own connection pool (for threads that hold watches)."""
        return kubernetes.client.ApiClient(self.configuration())

    @property
    def api_client(self) -> kubernetes.client.ApiClient:
        """The shared ApiClient of the test session."""
        if self._api_client is None:
            self._api_client = self.new_api_client()
        return self._api_client

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,  # mirrors subprocess.run
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl with this control plane's kubeconfig; raise with its output on failure."""
        if self.kubectl_path is None:
            raise ControlPlaneError(f"kubectl not found in {ASSETS_ENV} or on PATH")
        kubectl = Kubectl(str(self.kubectl_path), str(self.kubeconfig))
        return kubectl(*args, check=check, input=input, timeout=timeout)

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The last lines of a component's log (etcd, kube-apiserver, kube-controller-manager)."""
        return _tail(self.workdir / f"{name}.log", lines)
