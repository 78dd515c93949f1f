"""The Job controller's Pods run the worker image's own files, as a node would.

The fake kubelet usually runs a worker Pod's command with the test's virtualenv and the
host's ffmpeg. Here it runs the Pod from the built worker image's root filesystem
(tests/support/container.py): the image's Python, package and minimal ffmpeg, the Pod's
volumes at their real paths, the Pod's user, a read-only root. Skipped, with the reason,
without the image (see docs/images.md) or without a kube-controller-manager.
"""

import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest

from tests.envtest.conftest import running_kubelet
from tests.envtest.operator_helpers import (
    DEST,
    GROUP,
    VERSION,
    batch_manifest,
    get,
    make_video,
    phase_is,
)
from tests.envtest.operator_process import OperatorProcess
from tests.support import builders, media
from tests.support.container import (
    OPERATOR_IMAGE,
    WORKER_IMAGE,
    Container,
    container_or_skip,
)
from tests.support.controlplane import ControlPlane
from tests.support.kubelet import FakeKubelet
from tests.support.wait import wait_for

WORKER_UID = 65532  # the Job's runAsUser (reconcile/manifest.py)


@pytest.fixture(scope="module")
def worker_image() -> Iterator[Container]:
    yield from container_or_skip(WORKER_IMAGE)


@pytest.fixture
def image_kubelet(
    control_plane: ControlPlane, namespace: str, worker_image: Container
) -> Iterator[FakeKubelet]:
    yield from running_kubelet(control_plane, namespace, images={WORKER_IMAGE: worker_image})


@pytest.fixture
def op(
    controller_manager: ControlPlane, crds: list[str], namespace: str
) -> Iterator[OperatorProcess]:
    with OperatorProcess(
        controller_manager, namespace, {"AUDIOEXTRACT_WORKER_IMAGE": WORKER_IMAGE}
    ) as proc:
        yield proc
        proc.assert_healthy()


def test_extraction_job_pod_runs_from_the_worker_image(
    namespace: str,
    worker_image: Container,
    image_kubelet: FakeKubelet,
    op: OperatorProcess,
    api_client: Any,
) -> None:
    make_video(image_kubelet.volume_dir("media") / "talk.mp4", seconds=2)
    out = image_kubelet.volume_dir("out")
    custom = kubernetes.client.CustomObjectsApi(api_client)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExtractionJob",
        "metadata": {"name": "talk"},
        "spec": {
            "source": {"volume": {"claimName": "media", "path": "talk.mp4"}},
            "output": {"format": "mp3", "destination": {"volume": {"claimName": "out"}}},
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "extractionjobs", body)

    def succeeded() -> dict[str, Any] | None:
        ej = get(custom, namespace, "extractionjobs", "talk")
        return ej if (ej.get("status") or {}).get("phase") == "Succeeded" else None

    ej = wait_for(succeeded, timeout=120, interval=0.5, what="ExtractionJob Succeeded")
    assert ej["status"]["result"]["uri"] == "volume://out/talk.mp3"
    # The Pod ran inside the image: chroot into its root filesystem, as the Job's user.
    (run,) = image_kubelet.runs.values()
    assert str(worker_image.rootfs) in run.argv
    assert run.exit_code == 0, run.output
    produced = out / "talk.mp3"
    assert produced.stat().st_uid == WORKER_UID
    probe = media.probe(produced)
    assert probe.codec == "mp3"
    assert probe.duration == pytest.approx(2.0, abs=0.2)


def test_e2e_media_server_pod_serves_its_clip_from_the_worker_image(
    namespace: str,
    image_kubelet: FakeKubelet,
    api_client: Any,
    tmp_path: Path,
) -> None:
    """tests/e2e's media server (builders.media_server_pod) really works on the image."""
    clip = media.generate(tmp_path, names=["av.mp4"])["av.mp4"].read_bytes()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespaced_config_map(
        namespace, builders.media_files_config_map("media", {"clip.mp4": clip})
    )
    core.create_namespaced_pod(
        namespace, builders.media_server_pod("media", WORKER_IMAGE, port=port)
    )
    run = image_kubelet.wait_for_run("media", timeout=60)

    def served() -> bytes | None:
        assert run.exit_code is None, run.output
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/clip.mp4", timeout=5) as r:
                body: bytes = r.read()
                return body
        except OSError:
            return None

    assert wait_for(served, timeout=30, interval=0.3, what="clip served") == clip


@pytest.fixture(scope="module")
def operator_image() -> Iterator[Container]:
    yield from container_or_skip(OPERATOR_IMAGE)


def test_batch_runs_on_both_images(
    controller_manager: ControlPlane,
    crds: list[str],
    namespace: str,
    operator_image: Container,
    image_kubelet: FakeKubelet,
    api_client: Any,
) -> None:
    """The operator image's operator (Python 3.13, its own kopf and client) and the
    worker image's worker run a Batch together: every part a cluster would run."""
    make_video(image_kubelet.volume_dir("media") / "a.mp4", seconds=2)
    out = image_kubelet.volume_dir("out")
    settings = {"AUDIOEXTRACT_WORKER_IMAGE": WORKER_IMAGE, "AUDIOEXTRACT_DEFAULT_DESTINATION": DEST}
    jobs = [
        {"name": fmt, "source": {"volume": {"claimName": "media", "path": "a.mp4"}},
         "output": {"format": fmt}}
        for fmt in ("mp3", "flac")
    ]  # fmt: skip
    custom = kubernetes.client.CustomObjectsApi(api_client)
    with OperatorProcess(controller_manager, namespace, settings, image=operator_image) as op:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "batches", batch_manifest("ep", jobs)
        )
        batch = wait_for(
            phase_is(custom, namespace, "ep", "Succeeded"), timeout=120, what="Batch Succeeded"
        )
        op.assert_healthy()
    assert batch["status"]["succeeded"] == 2
    assert str(operator_image.rootfs) in op.proc.args  # type: ignore[union-attr]
    assert {media.probe(out / "audio" / f"ep-{f}.{f}").codec for f in ("mp3", "flac")} == {
        "mp3",
        "flac",
    }
