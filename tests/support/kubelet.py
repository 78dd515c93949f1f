"""A fake kubelet: runs the Pods of one namespace as local processes on a fake Node.

The control plane has no scheduler and no kubelet, so a Pod stays ``Pending`` forever.
:class:`FakeKubelet` does the small part of both that Jobs need:

* registers a ``Ready`` Node (cluster-scoped, deleted again on :meth:`stop`);
* watches the Pods of its namespace and binds unscheduled ones to that Node through the
  ``pods/binding`` subresource (what the scheduler does; the API server then sets
  ``PodScheduled``);
* runs the Pod's single container as a local subprocess in its own process group:
  ``command`` + ``args`` (``$(VAR)`` references expanded as the kubelet does), ``env``
  (``value``, ``valueFrom.secretKeyRef`` / ``configMapKeyRef`` / ``fieldRef``) and
  ``envFrom``. A command whose first element is ``audio-extract`` runs as
  ``sys.executable -m audioextract`` (the console script of the test's virtualenv);
  anything else (``sh -c ...``) runs as it is, found on ``PATH``;
* maps volumes to local directories: ``emptyDir`` (and any other kind) to a fresh temp
  directory, ``persistentVolumeClaim`` to :meth:`FakeKubelet.volume_dir` of the claim
  name (tests may pre-populate it; no PVC object is needed or checked), ``secret`` and
  ``configMap`` to a directory holding one file per key. The container sees them through
  *path rewriting*: every occurrence of a ``volumeMounts[].mountPath`` (longest first, on
  a path boundary) in ``command``, ``args``, ``env`` values and ``workingDir`` is replaced
  with the local directory (plus ``subPath``). The ``terminationMessagePath`` (default
  ``/dev/termination-log``) is mapped to an empty local file the same way;
* writes Pod status as a kubelet does: ``Running`` with a running container status and
  the conditions ``PodReadyToStartContainers``, ``Initialized``, ``ContainersReady``,
  ``Ready``, ``PodScheduled``; on exit ``Succeeded`` / ``Failed`` with
  ``state.terminated`` ``{exitCode, reason: Completed|Error, message, startedAt,
  finishedAt}``. The message is the termination-message file (first 4096 bytes); with
  ``terminationMessagePolicy: FallbackToLogsOnError``, a non-zero exit and an empty file
  it is the tail of the output (last 80 lines, at most 2048 bytes, as the kubelet does);
* when a Pod is deleted (it gets a ``deletionTimestamp``), kills the process group with
  SIGKILL, reports ``Failed`` with exit code 137 (reason ``Error``), keeping the
  conditions others added (``DisruptionTarget``), then finishes the deletion with grace
  period 0. The Job controller needs that terminal phase: with a ``podFailurePolicy`` it
  does not count or replace a Pod until the Pod is ``Failed``.

With ``images`` (image name -> :class:`tests.support.container.Container`), a Pod whose
container names one of those images runs from that image's root filesystem instead, as a
container runtime would run it (tests/support/container.py): read-only root, the
volumes and the termination-message file bind-mounted at their real paths, ``command``
/ ``args`` over the image's ``ENTRYPOINT`` / ``CMD``, ``env`` over the image's, as the
securityContext's ``runAsUser``/``runAsGroup`` (else the image's ``USER``), which owns
the Pod's volumes (the fake's stand-in for ``fsGroup``). Such a Pod must ask for
``readOnlyRootFilesystem: true``. This needs root and buildah (the image tier's needs).

Otherwise it does not: pull or check images, isolate processes (they run as the test's user, with
the test's ``PATH``; ``securityContext`` is only admission-checked by the API server),
enforce resources, run init, sidecar or several containers (such a Pod, like one whose
command cannot start, ends ``Failed`` with exit code 128, reason ``StartError`` and the
cause in the message), restart containers (``restartPolicy: Always/OnFailure``), run
probes, enforce a Pod's own ``activeDeadlineSeconds``, provide ``kubectl logs``/``exec``,
mount service-account tokens, or keep a Node lease.

Every run is recorded in :attr:`FakeKubelet.runs` (by Pod name) so tests can check what
ran, its exit code, whether it was killed and its output.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from tests.support.container import Container
from tests.support.controlplane import die_with_parent

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4096  # kubelet: MaxContainerTerminationMessageLength
MAX_LOG_MESSAGE_BYTES = 2048  # kubelet: MaxContainerTerminationMessageLogLength
MAX_LOG_MESSAGE_LINES = 80  # kubelet: MaxContainerTerminationMessageLogLines
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
KILLED_EXIT_CODE = 137  # 128 + SIGKILL, as a container runtime reports it
START_ERROR_EXIT_CODE = 128
CONSOLE_SCRIPTS = {"audio-extract": [sys.executable, "-m", "audioextract"]}
Pod = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expand(value: str, env: dict[str, str]) -> str:
    """Expand ``$(VAR)`` like the kubelet: ``$$`` escapes, unknown references stay as written."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([-._a-zA-Z0-9]+)\)", repl, value)


@dataclass
class ContainerRun:
    """One container run by the fake kubelet (kept after the Pod is gone)."""

    pod_name: str
    uid: str
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    log_path: Path
    message_path: Path
    message_policy: str
    started_at: str
    process: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    finished_at: str | None = None
    killed: bool = False
    start_error: str | None = None
    running_reported: bool = False
    terminal_reported: bool = False
    delete_requested: bool = False
    gone: bool = False
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def output(self) -> str:
        """Everything the process wrote to stdout and stderr."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def poll(self) -> bool:
        """Return True when the process has exited (recording its exit code)."""
        if self.exit_code is not None:
            return True
        if self.process is None or self.process.poll() is None:
            return False
        rc = self.process.returncode
        self.exit_code = 128 - rc if rc < 0 else rc  # killed by signal N: 128 + N
        self.finished_at = _now()
        self.finished.set()
        return True

    def kill(self) -> None:
        """SIGKILL the process group and wait for it."""
        if self.process is None or self.poll():
            return
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.poll()

    def termination_message(self) -> str:
        """What the kubelet would put into ``state.terminated.message``."""
        try:
            with self.message_path.open("rb") as f:
                data = f.read(MAX_MESSAGE_BYTES)
        except OSError:
            data = b""
        if not data and self.message_policy == "FallbackToLogsOnError" and self.exit_code:
            lines = self.output.splitlines(keepends=True)[-MAX_LOG_MESSAGE_LINES:]
            data = "".join(lines).encode()[-MAX_LOG_MESSAGE_BYTES:]
        if self.start_error and not data:
            data = self.start_error.encode()
        return data.decode(errors="replace")


class FakeKubelet:
    """Bind and run the Pods of ``namespace`` on a fake Node; see the module docstring."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespace: str,
        *,
        node_name: str | None = None,
        root: Path | None = None,
        images: Mapping[str, Container] | None = None,
    ) -> None:
        self.api_client = api_client
        self.images = dict(images or {})
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.namespace = namespace
        self.node_name = node_name or f"fake-node-{namespace}"[:63]
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="fake-kubelet-"))
        self.runs: dict[str, ContainerRun] = {}
        self.errors: list[str] = []
        self._by_uid: dict[str, ContainerRun] = {}
        self._kick = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watch_response: Any = None

    # -- public API ------------------------------------------------------------------

    def volume_dir(self, claim_name: str) -> Path:
        """The local directory that backs PersistentVolumeClaim ``claim_name`` (created)."""
        path = self.root / "volumes" / claim_name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self) -> FakeKubelet:
        """Register the Node and start the watch and sync threads."""
        self._register_node()
        for target, name in ((self._watch_loop, "watch"), (self._sync_loop, "sync")):
            thread = threading.Thread(target=target, name=f"fake-kubelet-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop the threads, kill what still runs, delete the Node and the local files."""
        self._stopping.set()
        self._kick.set()
        response = self._watch_response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()  # unblocks the watch thread's read (urllib3 >= 2.3)
        for thread in self._threads:
            thread.join(timeout=10)
        for run in self._by_uid.values():
            run.kill()
        with contextlib.suppress(ApiException):
            self.core.delete_node(self.node_name, grace_period_seconds=0)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def wait_for_run(self, pod_name: str, timeout: float = 30) -> ContainerRun:
        """Wait until a container of Pod ``pod_name`` has been started and return its run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pod_name in self.runs:
                return self.runs[pod_name]
            time.sleep(0.05)
        raise TimeoutError(f"the fake kubelet never ran pod {pod_name}")

    # -- node ------------------------------------------------------------------------

    def _register_node(self) -> None:
        now = _now()
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            "status": {
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.node_name},
                ],
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "fake kubelet is posting ready status",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": "fake",
                    "kubeProxyVersion": "",
                    "containerRuntimeVersion": "fake://0",
                    "kernelVersion": "",
                    "osImage": "",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            },
        }
        # Node status is accepted on create (the node strategy keeps it).
        self.core.create_node(node)

    # -- threads ---------------------------------------------------------------------

    def _watch_loop(self) -> None:
        """Kick the sync loop on every Pod event in the namespace (list + watch)."""
        while not self._stopping.is_set():
            try:
                listed = self._raw(self.core.list_namespaced_pod, self.namespace, limit=1)
                rv = listed["metadata"]["resourceVersion"]
                self._kick.set()
                response = self.core.list_namespaced_pod(
                    self.namespace,
                    watch=True,
                    resource_version=rv,
                    timeout_seconds=60,
                    _preload_content=False,
                )
                self._watch_response = response
                try:
                    if self._stopping.is_set():
                        break
                    for line in response:
                        if line.strip():
                            self._kick.set()
                finally:
                    self._watch_response = None
                    response.release_conn()
            except Exception as e:  # keep watching: the sync loop is level-triggered
                if self._stopping.is_set():
                    break
                log.debug("fake kubelet watch restarts after %r", e)
                time.sleep(0.2)

    def _sync_loop(self) -> None:
        while not self._stopping.is_set():
            running = any(
                r.process is not None and r.exit_code is None for r in self._by_uid.values()
            )
            self._kick.wait(timeout=0.05 if running else 1.0)
            self._kick.clear()
            if self._stopping.is_set():
                break
            try:
                self._sync()
            except Exception as e:
                log.exception("fake kubelet sync failed")
                self.errors.append(repr(e))
                time.sleep(0.2)

    # -- the kubelet's work ------------------------------------------------------------

    def _raw(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        response = fn(*args, _preload_content=False, **kwargs)
        return json.loads(response.data)

    def _sync(self) -> None:
        pods = self._raw(self.core.list_namespaced_pod, self.namespace)["items"]
        seen = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            try:
                self._sync_pod(pod)
            except ApiException as e:
                if e.status in (404, 409):
                    self._kick.set()  # changed under us: look again
                    continue
                raise
        for uid, run in self._by_uid.items():
            if uid not in seen and not run.gone:
                run.kill()  # deleted without us (force delete): stop the process anyway
                run.gone = True

    def _sync_pod(self, pod: Pod) -> None:
        meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
        deleting = meta.get("deletionTimestamp") is not None
        node = spec.get("nodeName")
        if not node:
            if not deleting and not spec.get("schedulingGates"):
                self._bind(pod)
            return
        if node != self.node_name:
            return
        run = self._by_uid.get(meta["uid"])
        if run is None:
            if status.get("phase") in ("Succeeded", "Failed"):
                if deleting:
                    self._finish_deletion(pod)
                return
            run = self._start(pod)
        if deleting and not run.poll():
            run.kill()
        if run.poll():
            if not run.terminal_reported:
                self._report(pod, run)
                run.terminal_reported = True
            if deleting and not run.delete_requested:
                self._finish_deletion(pod)
                run.delete_requested = True
        elif not run.running_reported:
            self._report(pod, run)
            run.running_reported = True

    def _bind(self, pod: Pod) -> None:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        # The response is a Status the generated client cannot deserialize as a Binding.
        self.core.create_namespaced_pod_binding(
            pod["metadata"]["name"], self.namespace, binding, _preload_content=False
        )

    def _finish_deletion(self, pod: Pod) -> None:
        self.core.delete_namespaced_pod(
            pod["metadata"]["name"],
            self.namespace,
            body={"gracePeriodSeconds": 0, "preconditions": {"uid": pod["metadata"]["uid"]}},
            _preload_content=False,
        )

    # -- running a container -------------------------------------------------------------

    def _start(self, pod: Pod) -> ContainerRun:
        meta, spec = pod["metadata"], pod["spec"]
        rundir = Path(tempfile.mkdtemp(prefix=f"{meta['name'][:40]}-", dir=self._mkdir("pods")))
        containers = spec.get("containers", [])
        container = containers[0] if containers else {}
        message_path = rundir / "termination-log"
        message_path.touch()
        run = ContainerRun(
            pod_name=meta["name"],
            uid=meta["uid"],
            argv=[],
            env={},
            workdir=rundir,
            log_path=rundir / "output.log",
            message_path=message_path,
            message_policy=container.get("terminationMessagePolicy", "File"),
            started_at=_now(),
        )
        self._by_uid[meta["uid"]] = run
        self.runs[meta["name"]] = run
        try:
            if len(containers) != 1 or spec.get("initContainers"):
                raise _UnsupportedError(
                    "the fake kubelet runs exactly one container and no init containers"
                )
            run.argv, run.env, cwd = self._container_process(pod, container, rundir, message_path)
        except (_UnsupportedError, ApiException, KeyError, ValueError) as e:
            run.start_error = f"{type(e).__name__}: {e}"
            run.exit_code = START_ERROR_EXIT_CODE
            run.finished_at = _now()
            run.finished.set()
            return run
        with run.log_path.open("wb") as output:
            try:
                run.process = subprocess.Popen(
                    run.argv,
                    env=run.env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    # Dies with the sync thread that started it (e.g. on kill -9 of pytest).
                    preexec_fn=die_with_parent,
                )
            except OSError as e:
                run.start_error = f"failed to start {run.argv[:1]}: {e}"
                run.exit_code = START_ERROR_EXIT_CODE
                run.finished_at = _now()
                run.finished.set()
        return run

    def _mkdir(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _container_process(
        self, pod: Pod, container: dict[str, Any], rundir: Path, message_path: Path
    ) -> tuple[list[str], dict[str, str], Path]:
        image = self.images.get(container.get("image", ""))
        if image is not None:
            return self._image_process(pod, container, rundir, message_path, image)
        mounts = self._mounts(pod, container, rundir)
        mounts[container.get("terminationMessagePath", DEFAULT_TERMINATION_MESSAGE_PATH)] = (
            message_path
        )
        # Longest mount path first, matched only on a path boundary.
        ordered = sorted(mounts.items(), key=lambda kv: len(kv[0]), reverse=True)
        pattern = re.compile(
            r"(?<![\w./-])("
            + "|".join(re.escape(p.rstrip("/") or "/") for p, _ in ordered)
            + r")(?![\w.-])"
        )
        lookup = {p.rstrip("/") or "/": str(local) for p, local in ordered}

        def rewrite(value: str) -> str:
            return pattern.sub(lambda m: lookup[m.group(1)], value)

        env = self._container_env(pod, container)
        container_env = {k: rewrite(v) for k, v in env.items()}
        command = [_expand(c, env) for c in container.get("command") or []]
        args = [_expand(a, env) for a in container.get("args") or []]
        argv = [rewrite(a) for a in command + args]
        if not argv:
            raise _UnsupportedError(
                "the container has no command (image entrypoints are unknown here)"
            )
        if argv[0] in CONSOLE_SCRIPTS:
            argv = CONSOLE_SCRIPTS[argv[0]] + argv[1:]
        process_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(rundir),
            "HOSTNAME": pod["metadata"]["name"],
            "LANG": "C.UTF-8",
            **container_env,
        }
        working_dir = container.get("workingDir")
        cwd = Path(rewrite(working_dir)) if working_dir else rundir
        return argv, process_env, cwd

    def _image_process(
        self,
        pod: Pod,
        container: dict[str, Any],
        rundir: Path,
        message_path: Path,
        image: Container,
    ) -> tuple[list[str], dict[str, str], Path]:
        context = {
            **(pod["spec"].get("securityContext") or {}),
            **(container.get("securityContext") or {}),
        }
        if not context.get("readOnlyRootFilesystem"):
            raise _UnsupportedError("a Pod run from an image needs readOnlyRootFilesystem: true")
        image_uid, image_gid = image.user.split(":")
        uid = int(context.get("runAsUser", image_uid))
        gid = int(context.get("runAsGroup", image_gid if "runAsUser" not in context else uid))
        mounts = self._mounts(pod, container, rundir)
        mounts[container.get("terminationMessagePath", DEFAULT_TERMINATION_MESSAGE_PATH)] = (
            message_path
        )
        for local in mounts.values():
            os.chown(local, uid, gid)
        env = self._container_env(pod, container)
        command = [_expand(c, env) for c in container.get("command") or []]
        args = [_expand(a, env) for a in container.get("args") or []]
        # Kubernetes' rule: command replaces ENTRYPOINT (and drops CMD), args replace CMD.
        if not command:
            command = list(image.config.get("Entrypoint") or [])
            args = args or list(image.config.get("Cmd") or [])
        mountpoint = rundir / "rootfs"
        mountpoint.mkdir()
        argv = image.command(
            command + args,
            mountpoint=mountpoint,
            mounts={path: local for path, local in mounts.items()},
            read_only=[
                m["mountPath"] for m in container.get("volumeMounts") or [] if m.get("readOnly")
            ],
            env={"HOSTNAME": pod["metadata"]["name"], **env},
            user=f"{uid}:{gid}",
            workdir=container.get("workingDir"),
        )
        return argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, rundir

    def _mounts(self, pod: Pod, container: dict[str, Any], rundir: Path) -> dict[str, Path]:
        volumes: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                volumes[name] = self.volume_dir(volume["persistentVolumeClaim"]["claimName"])
                continue
            local = rundir / "volumes" / name
            local.mkdir(parents=True)
            if "secret" in volume:
                data = self._secret_data(volume["secret"]["secretName"], volume["secret"])
                self._write_files(local, data)
            elif "configMap" in volume:
                for key, value in self._config_map_files(volume["configMap"]).items():
                    (local / key).write_bytes(value)
            volumes[name] = local  # emptyDir and everything else: an empty directory
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            local = volumes[mount["name"]]
            if mount.get("subPath"):
                local = local / mount["subPath"]
                local.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"]] = local
        return mounts

    @staticmethod
    def _write_files(directory: Path, data: dict[str, str]) -> None:
        for key, value in data.items():
            (directory / key).write_text(value)

    def _secret_data(self, name: str, ref: dict[str, Any]) -> dict[str, str]:
        try:
            secret = self._raw(self.core.read_namespaced_secret, name, self.namespace)
        except ApiException as e:
            if e.status == 404 and ref.get("optional"):
                return {}
            raise
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def _config_map(self, name: str, ref: dict[str, Any]) -> dict[str, Any]:
        try:
            config_map: dict[str, Any] = self._raw(
                self.core.read_namespaced_config_map, name, self.namespace
            )
        except ApiException as e:
            if e.status == 404 and ref.get("optional"):
                return {}
            raise
        return config_map

    def _config_map_data(self, name: str, ref: dict[str, Any]) -> dict[str, str]:
        return dict(self._config_map(name, ref).get("data") or {})

    def _config_map_files(self, ref: dict[str, Any]) -> dict[str, bytes]:
        """A configMap volume's files: ``data`` as UTF-8 and ``binaryData`` decoded."""
        config_map = self._config_map(ref["name"], ref)
        files = {k: v.encode() for k, v in (config_map.get("data") or {}).items()}
        files.update(
            {k: base64.b64decode(v) for k, v in (config_map.get("binaryData") or {}).items()}
        )
        return files

    def _container_env(self, pod: Pod, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                data = self._secret_data(source["secretRef"]["name"], source["secretRef"])
            else:
                data = self._config_map_data(source["configMapRef"]["name"], source["configMapRef"])
            env.update({prefix + k: v for k, v in data.items()})
        for var in container.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = _expand(var.get("value", ""), env)
                continue
            value_from = var["valueFrom"]
            if "secretKeyRef" in value_from:
                ref = value_from["secretKeyRef"]
                data = self._secret_data(ref["name"], ref)
            elif "configMapKeyRef" in value_from:
                ref = value_from["configMapKeyRef"]
                data = self._config_map_data(ref["name"], ref)
            elif "fieldRef" in value_from:
                env[name] = self._field(pod, value_from["fieldRef"]["fieldPath"])
                continue
            else:
                raise _UnsupportedError(
                    f"env {name}: valueFrom {sorted(value_from)} is not supported"
                )
            if ref["key"] in data:
                env[name] = data[ref["key"]]
            elif not ref.get("optional"):
                raise KeyError(f"env {name}: key {ref['key']!r} not found in {ref['name']}")
        return env

    @staticmethod
    def _field(pod: Pod, path: str) -> str:
        meta = pod["metadata"]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        fields = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": pod["spec"].get("nodeName", ""),
            "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
            "status.hostIP": "127.0.0.1",
            "status.podIP": "127.0.0.1",
        }
        if path not in fields:
            raise _UnsupportedError(f"fieldRef {path} is not supported")
        return fields[path]

    # -- status ----------------------------------------------------------------------

    def _report(self, pod: Pod, run: ContainerRun) -> None:
        """PUT the Pod's status from a fresh read (409 on a concurrent change: retried)."""
        fresh = self._raw(self.core.read_namespaced_pod, pod["metadata"]["name"], self.namespace)
        if fresh["metadata"]["uid"] != run.uid:
            return
        spec = fresh["spec"]
        status = fresh.setdefault("status", {})
        containers = spec.get("containers") or [{}]
        container = containers[0]
        terminal = run.exit_code is not None
        if terminal:
            phase = "Succeeded" if run.exit_code == 0 else "Failed"
            state: dict[str, Any] = {
                "terminated": {
                    "exitCode": run.exit_code,
                    "reason": "Completed" if run.exit_code == 0 else "Error",
                    "message": run.termination_message(),
                    "startedAt": run.started_at,
                    "finishedAt": run.finished_at,
                    "containerID": self._container_id(run),
                }
            }
            if run.start_error:
                state["terminated"]["reason"] = "StartError"
            if not state["terminated"]["message"]:
                del state["terminated"]["message"]
            ready_reason = "PodCompleted" if phase == "Succeeded" else "PodFailed"
        else:
            phase = "Running"
            state = {"running": {"startedAt": run.started_at}}
            ready_reason = ""
        status["phase"] = phase
        status.setdefault("startTime", run.started_at)
        status["hostIP"] = "127.0.0.1"
        status["hostIPs"] = [{"ip": "127.0.0.1"}]
        status["podIP"] = "127.0.0.1"
        status["podIPs"] = [{"ip": "127.0.0.1"}]
        status["qosClass"] = status.get("qosClass") or "BestEffort"
        status["containerStatuses"] = [
            {
                "name": container.get("name", "unknown"),
                "image": container.get("image", ""),
                "imageID": container.get("image", ""),
                "containerID": self._container_id(run),
                "ready": not terminal,
                "started": not terminal,
                "restartCount": 0,
                "state": state,
            }
        ]
        ready = "False" if terminal else "True"
        wanted = {
            "PodReadyToStartContainers": ("False" if terminal else "True", ""),
            "Initialized": ("True", ""),
            "ContainersReady": (ready, ready_reason),
            "Ready": (ready, ready_reason),
            "PodScheduled": ("True", ""),
        }
        conditions = status.get("conditions") or []
        by_type = {c["type"]: c for c in conditions}
        now = _now()
        for ctype, (cstatus, reason) in wanted.items():
            condition = by_type.get(ctype)
            if condition is None:
                condition = {"type": ctype}
                conditions.append(condition)
            if condition.get("status") != cstatus:
                condition["lastTransitionTime"] = now
            condition["status"] = cstatus
            condition.pop("reason", None)
            if reason:
                condition["reason"] = reason
            condition["lastProbeTime"] = None
        status["conditions"] = conditions
        self.core.replace_namespaced_pod_status(
            fresh["metadata"]["name"], self.namespace, fresh, _preload_content=False
        )

    @staticmethod
    def _container_id(run: ContainerRun) -> str:
        pid = run.process.pid if run.process is not None else 0
        return f"fake://{run.uid}/{pid}"


class _UnsupportedError(Exception):
    """The Pod asks for something the fake kubelet does not do."""
