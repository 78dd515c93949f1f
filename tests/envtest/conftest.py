"""Fixtures of the envtest tier: a real control plane, namespaces and a fake kubelet.

See docs/testing.md. Every test under tests/envtest is marked ``envtest`` and skipped
when ``KUBEBUILDER_ASSETS`` is unset.
"""

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from tests.support.controlplane import ASSETS_ENV, ControlPlane
from tests.support.kubelet import FakeKubelet
from tests.support.wait import wait_for

HERE = Path(__file__).parent
REPO = HERE.parent.parent
SKIP_NO_ASSETS = (
    f"envtest tier: {ASSETS_ENV} is not set. Enable it with "
    f"`export {ASSETS_ENV}=/path/to/dir-with-etcd-and-kube-apiserver` (see docs/testing.md)"
)
SKIP_NO_CONTROLLER_MANAGER = (
    f"needs kube-controller-manager (Job controller, garbage collector), which is not in "
    f"{ASSETS_ENV}; setup-envtest assets have none (see docs/testing.md)"
)
RESTRICTED = "restricted"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = None if os.environ.get(ASSETS_ENV) else pytest.mark.skip(reason=SKIP_NO_ASSETS)
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.envtest)
            if skip is not None:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver (+ kube-controller-manager if present), once per session."""
    assets = os.environ.get(ASSETS_ENV)
    if not assets:
        pytest.skip(SKIP_NO_ASSETS)
    with ControlPlane(Path(assets)) as cp:
        yield cp


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> kubernetes.client.ApiClient:
    """The session's admin ApiClient."""
    return control_plane.api_client


@pytest.fixture(scope="session")
def controller_manager(control_plane: ControlPlane) -> ControlPlane:
    """The control plane, skipping the test when kube-controller-manager is not available."""
    if not control_plane.has_controller_manager:
        pytest.skip(SKIP_NO_CONTROLLER_MANAGER)
    return control_plane


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> list[str]:
    """The project's CRDs, applied server-side and Established; returns their names."""
    control_plane.kubectl(
        "apply", "--server-side", "--field-manager=envtest", "-f", str(REPO / "crds")
    )
    names = control_plane.kubectl(
        "get", "-f", str(REPO / "crds"), "-o", "jsonpath={.items[*].metadata.name}"
    ).stdout.split()
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=30s", *(f"crd/{n}" for n in names)
    )
    return names


def _namespace_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"{base[:50].rstrip('-')}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace enforcing the restricted Pod Security Standard; deleted afterwards.

    Ready for Pods when yielded: its ``default`` ServiceAccount exists (created by the
    service-account controller, or by the fixture when there is no controller manager).
    """
    core = kubernetes.client.CoreV1Api(control_plane.api_client)
    name = _namespace_name(request)
    core.create_namespace(
        {
            "metadata": {
                "name": name,
                "labels": {"pod-security.kubernetes.io/enforce": RESTRICTED},
            }
        }
    )
    try:
        if control_plane.has_controller_manager:

            def default_service_account() -> bool:
                control_plane.check_alive()
                sas = core.list_namespaced_service_account(
                    name, field_selector="metadata.name=default"
                )
                return bool(sas.items)

            wait_for(default_service_account, timeout=30, what=f"ServiceAccount {name}/default")
        else:
            core.create_namespaced_service_account(name, {"metadata": {"name": "default"}})
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise


def running_kubelet(
    control_plane: ControlPlane, namespace: str, **options: Any
) -> Iterator[FakeKubelet]:
    """Body of a fixture: a started FakeKubelet (``options`` as FakeKubelet takes them).

    Teardown fails the test if the kubelet's sync loop hit an unexpected error.
    """
    fake = FakeKubelet(control_plane.new_api_client(), namespace, **options).start()
    try:
        yield fake
    finally:
        fake.stop()
        fake.api_client.close()
    assert not fake.errors, f"fake kubelet errors: {fake.errors}"


@pytest.fixture
def kubelet(control_plane: ControlPlane, namespace: str) -> Iterator[FakeKubelet]:
    """A started FakeKubelet for ``namespace`` on its own Node; stopped afterwards."""
    yield from running_kubelet(control_plane, namespace)
