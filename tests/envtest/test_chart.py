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

import helm_python as helm
import kubernetes.client
import pytest

from tests.envtest.test_deploy import can_i, must, must_not
from tests.support.chart import CHART, Obj, every_feature, objects
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
            control_plane.kubectl("get", "crd", n, "-o", f"jsonpath={jsonpath}", check=False).stdout
            == "True"
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
    """Apply every rendered object server-side, as Helm would, and check no warning came back.

    The CRDs exist already (the ``crds`` fixture applied crds/, the same schemas): this
    release's field manager takes over the labels that differ per release, and
    :func:`uninstall` gives them back, so that the next release can own them.
    """
    cp.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted")
    out = cp.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager=chart-{release}",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}),
    )
    assert "Warning" not in out.stderr, out.stderr
    applied = out.stdout.splitlines()
    assert len(applied) == len(objs), out.stdout


def uninstall(cp: ControlPlane, release: str, objs: list[Obj]) -> None:
    """The release's cluster-scoped objects (its namespaced ones go with the namespace)."""
    cp.kubectl(
        "delete",
        "clusterrole,clusterrolebinding",
        "-l",
        f"app.kubernetes.io/instance={release}",
        "--ignore-not-found",
    )
    # The CRDs are kept: applying them empty drops what only this release's manager set.
    bare = [
        {
            "apiVersion": o["apiVersion"],
            "kind": o["kind"],
            "metadata": {"name": o["metadata"]["name"]},
        }
        for o in objs
        if o["kind"] == "CustomResourceDefinition"
    ]
    cp.kubectl(
        "apply",
        "--server-side",
        "--validate=false",  # a partial object: the server merges it with the rest
        f"--field-manager=chart-{release}",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": bare}),
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
        uninstall(cp, release, objs)


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
        uninstall(cp, release, objs)


def adopt_crds(cp: ControlPlane, names: list[str], release: str, namespace: str) -> None:
    """Mark CRDs applied with kubectl as the release's, as docs/install.md says to."""
    for name in names:
        cp.kubectl("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
        cp.kubectl(
            "annotate",
            "--overwrite",
            "crd",
            name,
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={namespace}",
        )


def test_helm_install_upgrade_uninstall_keeps_the_crds_and_the_batches(
    controller_manager: ControlPlane, crds: list[str], namespace: str, watched: str
) -> None:
    """The real Helm release lifecycle (Helm v4's SDK) against the control plane."""
    cp = controller_manager
    # (Not the default name: deploy/'s tests leave their cluster-scoped objects behind.)
    release = f"life-{namespace[-6:]}"
    name = f"{release}-audio-extract-operator"
    adopt_crds(cp, crds, release, namespace)
    apps = kubernetes.client.AppsV1Api(cp.api_client)
    custom = kubernetes.client.CustomObjectsApi(cp.api_client)
    with helm.Config(kubeconfig_path=str(cp.kubeconfig), namespace=namespace) as cfg:
        installed = cfg.install(str(CHART), release, {"watchNamespaces": [watched]})
        assert installed["status"] == "deployed", installed
        # The CRDs are part of the release (adopted), so only `keep` can save them below.
        assert installed["manifest"].count("kind: CustomResourceDefinition") == len(crds)
        for crd in crds:
            meta = json.loads(cp.kubectl("get", "crd", crd, "-o", "json").stdout)["metadata"]
            assert meta["annotations"]["helm.sh/resource-policy"] == "keep"
            assert meta["labels"]["helm.sh/chart"] == "audio-extract-operator-0.1.0"
        operator_pods_admitted(cp, namespace, release, replicas=2)
        assert cp.kubectl("get", "role", name, "-n", watched, "-o", "name").stdout.strip()
        batch = {
            "apiVersion": "audioextract.dev/v1alpha1",
            "kind": "Batch",
            "metadata": {"name": "survives-uninstall"},
            "spec": {"jobs": [{"name": "a", "source": {"url": "https://media.example.com/a.mp4"}}]},
        }
        custom.create_namespaced_custom_object(
            "audioextract.dev", "v1alpha1", watched, "batches", batch
        )

        upgraded = cfg.upgrade(str(CHART), release, {"replicaCount": 1}, reuse_values=True)
        assert upgraded["revision"] == 2 and upgraded["status"] == "deployed"
        deployment = apps.read_namespaced_deployment(name, namespace)
        assert deployment.spec.replicas == 1 and deployment.spec.strategy.type == "Recreate"
        # reuse_values kept the namespaced mode: still a Role there, no ClusterRoleBinding.
        assert cp.kubectl("get", "role", name, "-n", watched, "-o", "name").stdout.strip()
        assert not cp.kubectl(
            "get", "clusterrolebinding", name, "--ignore-not-found", "-o", "name"
        ).stdout.strip()

        cfg.uninstall(release)
    assert not cp.kubectl(
        "get", "deployment,role,rolebinding", "-n", namespace, "-o", "name"
    ).stdout.strip()
    assert not cp.kubectl("get", "role", "-n", watched, "-o", "name").stdout.strip()
    # helm.sh/resource-policy: keep — the CRDs, and so every Batch, are still there.
    for crd in crds:
        cp.kubectl("get", "crd", crd)
    assert custom.get_namespaced_custom_object(
        "audioextract.dev", "v1alpha1", watched, "batches", "survives-uninstall"
    )
