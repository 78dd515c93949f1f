"""Fixtures of the e2e tier: a real cluster with the operator installed (docs/testing.md).

Opt-in: every test under tests/e2e is marked ``e2e`` and skipped unless
``AUDIOEXTRACT_E2E=1``; ``make e2e`` sets that up on a kind cluster (tests/e2e/kind.sh).
The cluster is the current kubeconfig context, or the kubeconfig in ``E2E_KUBECONFIG``;
it must have the CRDs and the operator installed (deploy/).
"""

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import builders, media
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_for

HERE = Path(__file__).parent
ENABLE_ENV = "AUDIOEXTRACT_E2E"
SKIP_DISABLED = (
    f"e2e tier (opt-in): needs a real cluster with the operator installed. "
    f"Run it with `make e2e` (kind + docker), or set {ENABLE_ENV}=1 against your own "
    f"cluster (see docs/testing.md)"
)
SYSTEM_NS = "audio-extract-system"
OPERATOR = "audio-extract-operator"
MEDIA = "media"
OUT_CLAIM = "out"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    enabled = os.environ.get(ENABLE_ENV) == "1"
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)
            if not enabled:
                item.add_marker(pytest.mark.skip(reason=SKIP_DISABLED))


@pytest.fixture(scope="session")
def kubectl() -> Kubectl:
    """kubectl (``E2E_KUBECTL``, default ``kubectl``) for the cluster under test."""
    return Kubectl(os.environ.get("E2E_KUBECTL", "kubectl"), os.environ.get("E2E_KUBECONFIG"))


@pytest.fixture(scope="session")
def cluster(kubectl: Kubectl) -> Kubectl:
    """Fails at once, with kubectl's reason, unless the CRDs and a ready operator are there."""
    kubectl("get", "crd", "batches.audioextract.dev", "extractionjobs.audioextract.dev")
    kubectl("-n", SYSTEM_NS, "rollout", "status", f"deploy/{OPERATOR}", "--timeout=120s")
    return kubectl


@pytest.fixture(scope="session")
def worker_image(cluster: Kubectl) -> str:
    """The worker image: ``E2E_WORKER_IMAGE``, else the one the installed operator runs."""
    image = os.environ.get("E2E_WORKER_IMAGE")
    if image:
        return image
    env_path = (
        "{.spec.template.spec.containers[0].env[?(@.name=='AUDIOEXTRACT_WORKER_IMAGE')].value}"
    )
    found = cluster("-n", SYSTEM_NS, "get", f"deploy/{OPERATOR}", "-o", f"jsonpath={env_path}")
    return found.stdout.strip() or "audio-extract-worker:0.1.0"


@pytest.fixture(scope="module")
def namespace(cluster: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace enforcing the restricted Pod Security Standard; deleted afterwards.

    One per test module: the media server and the PVC are shared by its tests.
    """
    module = request.module.__name__.rsplit(".", 1)[-1]
    base = re.sub(r"[^a-z0-9]+", "-", module.lower()).strip("-")[:40]
    name = f"e2e-{base}-{secrets.token_hex(3)}"
    restricted = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    cluster.apply(
        None,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": restricted}},
    )
    try:
        wait_for(
            lambda: (
                cluster("get", "-n", name, "serviceaccount/default", check=False).returncode == 0
            ),
            timeout=60,
            interval=1,
            what=f"ServiceAccount {name}/default",
        )
        yield name
    finally:
        cluster("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def media_url(
    cluster: Kubectl, namespace: str, worker_image: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """Base URL (no trailing slash) of a media server serving ``/clip.mp4`` in ``namespace``.

    Also creates the PVC ``out`` (the default StorageClass), mounted read-only at
    ``/out`` in the server's Pod so that tests can read what workers wrote
    (``kubectl exec media -- ...``). kind's local-path StorageClass binds a claim only
    once a Pod uses it; this Pod is the first.
    """
    clip = media.generate(tmp_path_factory.mktemp("e2e-media"), names=["av.mp4"])["av.mp4"]
    files = builders.media_files_config_map(MEDIA, {"clip.mp4": clip.read_bytes()})
    pod = builders.media_server_pod(MEDIA, worker_image, claim=OUT_CLAIM)
    cluster.apply(namespace, files, builders.pvc(OUT_CLAIM), pod, builders.service_for(pod))
    cluster("wait", "-n", namespace, "--for=condition=Ready", f"pod/{MEDIA}", "--timeout=180s")
    # The cluster DNS name of a ClusterIP Service: a private address, which the worker's
    # URL guard allows by default (loopback it would refuse).
    return f"http://{MEDIA}.{namespace}.svc.cluster.local"
