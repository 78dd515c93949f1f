"""The Helm chart's output installed server-side on a real control plane.

Rendered by a real Helm engine (tests/support/chart.py), every object of an install with
default values and of one with every optional part on is applied server-side into a
namespace that enforces (and warns on) the restricted Pod Security Standard, after
prometheus-operator's ServiceMonitor and PrometheusRule CRDs (tests/data/). The
Deployment's Pods are created by the real ReplicaSet controller, so Pod Security
admission has the last word. RBAC is checked with ``kubectl auth can-i`` as the release's
ServiceAccount in both modes.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import pytest

from tests.envtest.test_deploy import can_i, must, must_not
from tests.support.chart import Obj, every_feature, objects
from tests.support.controlplane import ControlPlane
from tests.support.wait import wait_for

PROMETHEUS_CRDS = Path(__file__).parent.parent / "data" / "prometheus-operator"


@pytest.fixture(scope="module")
def prometheus_crds(control_plane: ControlPlane) -> None:
    """prometheus-operator's ServiceMonitor and PrometheusRule CRDs, Established."""
    control_plane.kubectl("apply", "--server-side", "-f", str(PROMETHEUS_CRDS))
    names = ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")

    def established() -> bool:
        # (kubectl wait fails outright on a CRD whose status is not written yet.)
        jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
        return all(
            control_plane.kubectl("get", "crd", n, "-o", f"jsonpath={jsonpath}").stdout == "True"
            for n in names
        )

    wait_for(established, timeout=30, what="prometheus-operator CRDs Established")


@pytest.fixture
def watched(control_plane: ControlPlane, namespace: str) -> Iterator[str]:
    """A second restricted namespace for the operator to serve."""
    name = f"{namespace[:52]}-watched"
    control_plane.kubectl("create", "namespace", name)
    control_plane.kubectl(
        "label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted"
    )
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")


def install(cp: ControlPlane, namespace: str, release: str, objs: list[Obj]) -> None:
    """Apply every rendered object server-side, as Helm would, and check no warning came back."""
    cp.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted")
    out = cp.kubectl(
        "apply",
        "--server-side",
        "--field-manager=helm",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}),
    )
    assert "Warning" not in out.stderr, out.stderr
    applied = out.stdout.splitlines()
    assert len(applied) == len(objs), out.stdout


def uninstall(cp: ControlPlane, release: str) -> None:
    """The release's cluster-scoped objects (its namespaced ones go with the namespace)."""
    cp.kubectl(
        "delete",
        "clusterrole,clusterrolebinding",
        "-l",
        f"app.kubernetes.io/instance={release}",
        "--ignore-not-found",
    )


def operator_pods_admitted(cp: ControlPlane, namespace: str, release: str, replicas: int) -> None:
    """The ReplicaSet controller created every operator Pod: Pod Security admitted them."""
    core = kubernetes.client.CoreV1Api(cp.api_client)
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"

    def created() -> bool:
        return len(core.list_namespaced_pod(namespace, label_selector=selector).items) == replicas

    wait_for(created, timeout=30, what=f"{replicas} operator Pods created by the ReplicaSet")
    # (A first attempt may find the just-created ServiceAccount not yet in the admission
    # plugin's cache; the controller retries. A Pod Security refusal would be final.)
    refused = [
        e.message
        for e in core.list_namespaced_event(namespace).items
        if e.reason == "FailedCreate" and "PodSecurity" in (e.message or "")
    ]
    assert refused == []


def test_default_install_on_a_restricted_namespace(
    controller_manager: ControlPlane, crds: list[str], namespace: str
) -> None:
    cp = controller_manager
    release = f"ae-{namespace[-6:]}"
    objs = objects({}, namespace=namespace, release=release)
    try:
        install(cp, namespace, release, objs)
        operator_pods_admitted(cp, namespace, release, replicas=2)
        sa = f"system:serviceaccount:{namespace}:{release}-audio-extract-operator"
        # All namespaces: the operator's rules everywhere, and nothing it must not do.
        assert [c for c in must("default") + must(namespace) if not can_i(cp, sa, *c)] == []
        assert can_i(cp, sa, "list", "batches.audioextract.dev", "-A")
        assert [c for c in must_not("default") if can_i(cp, sa, *c)] == []
    finally:
        uninstall(cp, release)


def test_every_feature_installs_and_a_namespaced_operator_gets_only_its_namespaces(
    controller_manager: ControlPlane,
    crds: list[str],
    prometheus_crds: None,
    namespace: str,
    watched: str,
) -> None:
    cp = controller_manager
    release = f"ae-{namespace[-6:]}"
    objs = objects(every_feature([watched]), namespace=namespace, release=release)
    kinds = {o["kind"] for o in objs}
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy"} <= kinds
    try:
        install(cp, namespace, release, objs)
        operator_pods_admitted(cp, namespace, release, replicas=2)
        # prometheus-operator's schemas accepted both (server-side validation), and
        # they are stored as rendered.
        rule = json.loads(
            cp.kubectl("get", "prometheusrule", "-n", namespace, "-o", "json").stdout
        )["items"][0]
        (rendered,) = [o for o in objs if o["kind"] == "PrometheusRule"]
        assert rule["spec"] == rendered["spec"]
        sa = f"system:serviceaccount:{namespace}:{release}-audio-extract-operator"
        assert [c for c in must(watched) if not can_i(cp, sa, *c)] == []
        assert [c for c in must(namespace) + must("default") if can_i(cp, sa, *c)] == []
        assert not can_i(cp, sa, "list", "batches.audioextract.dev", "-A")
        lease = f"leases.coordination.k8s.io/{release}-audio-extract-operator"
        assert can_i(cp, sa, "update", lease, "-n", namespace)
        worker = kubernetes.client.CoreV1Api(cp.api_client).read_namespaced_service_account(
            "audio-extract-worker", watched
        )
        assert worker.automount_service_account_token is False
    finally:
        uninstall(cp, release)
