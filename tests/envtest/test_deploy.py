"""The install manifests in deploy/ (rendered from the Helm chart) on a real control plane.

- every manifest of both installs (deploy/: all namespaces; deploy/namespaced/: team-a
  and team-b only) passes server-side validation, and the operator's Pod meets the
  restricted Pod Security Standard;
- the operator runs a Batch to the end with nothing but the RBAC of a namespaced install
  (a token from the TokenRequest API; the Lease in its own namespace, the work in the
  watched one), its worker Pods under the token-less worker ServiceAccount, and no call
  is refused;
- ``kubectl auth can-i`` as the operator's ServiceAccount: the all-namespaces install
  grants its rules cluster-wide; the namespaced install grants them in the listed
  namespaces only, nothing cluster-wide; both refuse what the operator must not do;
- the view/edit aggregation gives a namespace's viewers and editors the right access;
- the ResourceQuota example refuses a Batch beyond the quota.
"""

import contextlib
import copy
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.watch
import pytest
import urllib3
import yaml

from audioextract.webhooks.signing import generate_secret
from tests.envtest.operator_process import OperatorProcess
from tests.envtest.test_operator import DEST, GROUP, VERSION, batch_manifest, get, make_video
from tests.support.chart import every_feature, objects
from tests.support.controlplane import ControlPlane
from tests.support.kubelet import FakeKubelet
from tests.support.wait import wait_for
from tests.support.webhook_receiver import receiver

REPO = Path(__file__).parent.parent.parent
DEPLOY = REPO / "deploy"
NAMESPACED = DEPLOY / "namespaced"
SYSTEM_NS = "audio-extract-system"
TEAMS = ("team-a", "team-b")  # the namespaces deploy/namespaced/ serves
SA_NAME = "audio-extract-operator"
WORKER_SA = "audio-extract-worker"
LEASE = f"leases.coordination.k8s.io/{SA_NAME}"
OPERATOR_SA = f"system:serviceaccount:{SYSTEM_NS}:{SA_NAME}"
# The Batch must finish well within kopf's ~60 s back-off on a refused namespace
# listing: a watch that starts late would show up here.
OPERATOR_BOUND_SECONDS = 40

Obj = dict[str, Any]


def load(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def apply(cp: ControlPlane, docs: list[Obj], *args: str) -> str:
    out = cp.kubectl(
        "apply",
        *args,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )
    return out.stdout + out.stderr


def chart_install(system_ns: str, watched: str) -> list[Obj]:
    """What the chart installs for a namespaced operator in ``system_ns`` serving ``watched``:
    its ServiceAccount and RBAC and the worker ServiceAccount (the Pods run elsewhere)."""
    values = {"watchNamespaces": [watched], "crds": {"enabled": False}}
    keep = ("ServiceAccount", "Role", "RoleBinding")
    return [o for o in objects(values, namespace=system_ns) if o["kind"] in keep]


def operator_env(system_ns: str, watched: str) -> dict[str, str]:
    """The chart's Deployment environment for that install with every setting given
    (plain values only)."""
    values = {"watchNamespaces": [watched], "crds": {"enabled": False}}
    values["config"] = every_feature()["config"]
    (deployment,) = [o for o in objects(values, namespace=system_ns) if o["kind"] == "Deployment"]
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e["value"] for e in env if "value" in e}


def can_i(cp: ControlPlane, user: str, *args: str) -> bool:
    out = cp.kubectl("auth", "can-i", *args, f"--as={user}", check=False)
    answer = out.stdout.strip()
    assert answer in ("yes", "no"), out
    return answer == "yes"


BATCH_COUNT = "count/batches.audioextract.dev"
(QUOTA,) = load(DEPLOY / "examples" / "quota.yaml")


@pytest.fixture(scope="module")
def system_namespace(control_plane: ControlPlane) -> str:
    """deploy/namespace.yaml, applied (the other manifests need it to exist)."""
    control_plane.kubectl("apply", "-f", str(DEPLOY / "namespace.yaml"))
    return SYSTEM_NS


@pytest.fixture(scope="module")
def team_namespaces(control_plane: ControlPlane) -> Iterator[tuple[str, ...]]:
    """The namespaces deploy/namespaced/ serves, enforcing restricted Pod Security."""
    for team in TEAMS:
        control_plane.kubectl("create", "namespace", team)
        control_plane.kubectl(
            "label", "namespace", team, "pod-security.kubernetes.io/enforce=restricted"
        )
    yield TEAMS
    control_plane.kubectl("delete", "namespace", *TEAMS, "--wait=false")


def test_manifests_pass_server_validation_and_restricted_pod_security(
    control_plane: ControlPlane, system_namespace: str, team_namespaces: tuple[str, ...]
) -> None:
    cp = control_plane
    generated = {"serviceaccount.yaml", "rbac.yaml", "deployment.yaml", "service.yaml"}
    for directory in (DEPLOY, NAMESPACED):
        files = sorted(directory.glob("*.yaml"))
        assert {f.name for f in files} >= {"namespace.yaml", *generated}, directory
        for path in files:
            out = cp.kubectl("apply", "--dry-run=server", "-f", str(path))
            # The namespace warns on restricted violations: a Deployment would say so here.
            assert "Warning" not in out.stderr, (path, out.stderr)
        out = cp.kubectl("apply", "--dry-run=server", "-k", str(directory))
        assert "Warning" not in out.stderr, out.stderr
        assert "deployment.apps/audio-extract-operator" in out.stdout
    cp.kubectl("apply", "--dry-run=server", "-n", system_namespace, "-f", str(DEPLOY / "examples"))

    # enforce=restricted applies to Pods: one from the Deployment's template is admitted
    # (the ServiceAccount admission plugin needs the ServiceAccount to exist).
    cp.kubectl("apply", "-f", str(DEPLOY / "serviceaccount.yaml"))
    (deployment,) = load(DEPLOY / "deployment.yaml")
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-pod-security", "namespace": system_namespace},
        "spec": template["spec"],
    }
    cp.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod))
    sc = pod["spec"]["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["securityContext"]["runAsUser"] == 65532

    # The checks would notice a violation: the same Pod allowed to escalate is refused,
    # and the Deployment draws a warning.
    bad = copy.deepcopy(pod)
    bad["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    out = cp.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False)
    assert out.returncode != 0 and "violates PodSecurity" in out.stderr, out
    bad_deployment = copy.deepcopy(deployment)
    bad_deployment["spec"]["template"]["spec"] = bad["spec"]
    out = cp.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(bad_deployment), check=False
    )
    assert "would violate PodSecurity" in out.stderr, out


class PodAccounts:
    """Records the ServiceAccount of every Pod created in a namespace while it runs."""

    def __init__(self, core: kubernetes.client.CoreV1Api, namespace: str) -> None:
        self.core, self.namespace = core, namespace
        self.seen: dict[str, str | None] = {}
        self.watch = kubernetes.watch.Watch()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        stream = self.watch.stream(
            self.core.list_namespaced_pod, self.namespace, timeout_seconds=120
        )
        # The connection ends when the watch is stopped (or the API server ends it).
        with contextlib.suppress(urllib3.exceptions.ProtocolError):
            for event in stream:
                pod = event["object"]
                self.seen[pod.metadata.name] = pod.spec.service_account_name

    def __enter__(self) -> "PodAccounts":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.watch.stop()


def test_operator_runs_a_batch_with_only_its_service_account_rbac(
    controller_manager: ControlPlane,
    crds: list[str],
    namespace: str,
    kubelet: FakeKubelet,
    api_client: kubernetes.client.ApiClient,
    tmp_path: Path,
) -> None:
    cp = controller_manager
    core = kubernetes.client.CoreV1Api(api_client)
    # The operator's own namespace (its ServiceAccount and Lease) and the watched one
    # (the Batch, its children, Jobs, Pods and Secrets) differ, as in a real install.
    system_ns = f"{namespace[:50]}-sys"
    core.create_namespace({"metadata": {"name": system_ns}})
    try:
        run_operator_with_chart_rbac(cp, core, system_ns, namespace, kubelet, tmp_path)
    finally:
        core.delete_namespace(system_ns, propagation_policy="Background")


def run_operator_with_chart_rbac(
    cp: ControlPlane,
    core: kubernetes.client.CoreV1Api,
    system_ns: str,
    namespace: str,
    kubelet: FakeKubelet,
    tmp_path: Path,
) -> None:
    apply(cp, chart_install(system_ns, namespace))
    token = cp.kubectl("create", "token", SA_NAME, "-n", system_ns, "--duration=1h").stdout.strip()
    kubeconfig = tmp_path / "operator-kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "envtest",
                        "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)},
                    }
                ],
                "users": [{"name": SA_NAME, "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "envtest", "user": SA_NAME}}],
                "current-context": "sa",
            }
        )
    )
    media = kubelet.volume_dir("media")
    make_video(media / "a.mp4", 1.0)
    make_video(media / "b.mp4", 1.0)
    kubelet.volume_dir("out")
    custom: Any = kubernetes.client.CustomObjectsApi(cp.api_client)
    secret = generate_secret()
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "hook"}, "stringData": {"secret": secret}}
    )
    chart_env = operator_env(system_ns, namespace)
    assert chart_env["AUDIOEXTRACT_WORKER_SERVICE_ACCOUNT"] == WORKER_SA
    # Every setting the chart's Deployment sets (so the operator must accept them all),
    # and what the Pod would get from the downward API; then what this test needs.
    env = {
        **chart_env,
        "KUBECONFIG": str(kubeconfig),
        "POD_NAMESPACE": system_ns,
        "AUDIOEXTRACT_METRICS_PORT": "0",  # any free port: tests run side by side
        "AUDIOEXTRACT_RESYNC_SECONDS": "1",  # the TTL below is checked within seconds
        "AUDIOEXTRACT_DEFAULT_DESTINATION": DEST,
        "AUDIOEXTRACT_ALLOW_NETWORKS": "127.0.0.0/8",
    }
    with (
        receiver(secret) as hooks,
        PodAccounts(core, namespace) as pods,
        OperatorProcess(cp, namespace, env, standalone=False) as op,
    ):
        started = time.monotonic()
        jobs = [
            {"name": n, "source": {"volume": {"claimName": "media", "path": f"{n}.mp4"}}}
            for n in ("a", "b")
        ]
        # Every rule is used: watches and lists, child and Job creation, both statuses,
        # Pods (termination messages), Events, Job cleanup, the webhook's Secret, the
        # Batch's deletion by its TTL and the Lease.
        manifest = batch_manifest(
            "least-privilege",
            jobs,
            webhook={"url": hooks.url, "secretRef": {"name": "hook"}},
            ttlSecondsAfterFinished=2,
        )
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "batches", manifest)

        def succeeded() -> bool:
            b = get(custom, namespace, "batches", "least-privilege")
            return (b.get("status") or {}).get("phase") == "Succeeded"

        wait_for(
            succeeded,
            timeout=OPERATOR_BOUND_SECONDS,
            interval=0.2,
            what="Batch Succeeded under the operator's own RBAC",
        )
        elapsed = time.monotonic() - started
        wait_for(
            lambda: "batch.completed" in {h.type for h in hooks.hits},
            timeout=10,
            what="batch.completed delivered (signed with the Secret's key)",
        )
        wait_for(
            lambda: (
                not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "batches")[
                    "items"
                ]
            ),
            timeout=15,
            what="Batch deleted by ttlSecondsAfterFinished",
        )
        lease = kubernetes.client.CoordinationV1Api(cp.api_client).read_namespaced_lease(
            SA_NAME, system_ns
        )
        assert lease.spec.holder_identity, lease
        reasons = {e.reason for e in core.list_namespaced_event(namespace).items}
        # Batch-level Events only: a child's outcome is in the Batch's status, not an
        # Event per child (docs/operator.md, "Write budget").
        assert {"ChildrenCreated", "PhaseChanged"} <= reasons, reasons
        assert not reasons & {"JobStarted", "JobSucceeded", "JobFailed"}, reasons
        # The tasks went into Secrets the operator may create, not into the Jobs' env.
        assert "TaskSecretForbidden" not in reasons, reasons
        assert op.alive(), op.log()[-5000:]
    # Both worker Pods ran under the worker ServiceAccount, which has no token to mount.
    assert len(pods.seen) >= 2 and set(pods.seen.values()) == {WORKER_SA}, pods.seen
    worker_sa = core.read_namespaced_service_account(WORKER_SA, namespace)
    assert worker_sa.automount_service_account_token is False
    log = op.log()
    assert "acquired lease" in log, log[-5000:]
    for refused in ("403", "Forbidden", "forbidden", "Not enough permissions"):
        assert refused not in log, log[-8000:]
    assert "Traceback" not in log, log[-8000:]
    assert not hooks.unverified
    assert elapsed < OPERATOR_BOUND_SECONDS


# What the operator must be able to do in a namespace it serves, and must not.
def must(ns: str) -> list[tuple[str, ...]]:
    return [
        ("list", "batches.audioextract.dev", "-n", ns),
        ("watch", "extractionjobs.audioextract.dev", "-n", ns),
        ("create", "extractionjobs.audioextract.dev", "-n", ns),
        ("patch", "batches.audioextract.dev", "--subresource=status", "-n", ns),
        ("patch", "extractionjobs.audioextract.dev", "--subresource=status", "-n", ns),
        ("delete", "batches.audioextract.dev", "-n", ns),
        ("create", "jobs.batch", "-n", ns),
        ("delete", "jobs.batch", "-n", ns),
        ("list", "pods", "-n", ns),
        ("watch", "pods", "-n", ns),
        ("get", "secrets", "-n", ns),
        ("create", "secrets", "-n", ns),  # the task Secret of each run
        ("create", "events", "-n", ns),
    ]


def must_not(ns: str) -> list[tuple[str, ...]]:
    return [
        ("create", "pods", "-n", ns),
        ("delete", "pods", "-n", ns),
        ("list", "secrets", "-n", ns),
        ("update", "secrets", "-n", ns),
        ("delete", "secrets", "-n", ns),
        ("create", "batches.audioextract.dev", "-n", ns),
        ("patch", "batches.audioextract.dev", "-n", ns),  # the spec is the user's
        ("update", "jobs.batch", "-n", ns),
        ("update", "leases.coordination.k8s.io", "-n", ns),
        ("create", "rolebindings.rbac.authorization.k8s.io", "-n", ns),
        ("get", "configmaps", "-n", ns),
    ]


# Never, in either mode.
NEVER = [
    ("create", "leases.coordination.k8s.io", "-n", "kube-system"),
    ("update", "leases.coordination.k8s.io/other-lease", "-n", SYSTEM_NS),
    ("delete", "namespaces", "-A"),
    ("list", "namespaces"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", "-A"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
]
LEASE_RULES = [
    ("create", "leases.coordination.k8s.io", "-n", SYSTEM_NS),
    ("get", LEASE, "-n", SYSTEM_NS),
    ("update", LEASE, "-n", SYSTEM_NS),
]


def denied(cp: ControlPlane, checks: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [c for c in checks if not can_i(cp, OPERATOR_SA, *c)]


def granted(cp: ControlPlane, checks: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [c for c in checks if can_i(cp, OPERATOR_SA, *c)]


def test_all_namespaces_install_grants_the_operator_rules_cluster_wide(
    control_plane: ControlPlane, crds: list[str], system_namespace: str, namespace: str
) -> None:
    cp = control_plane
    files = ("-f", str(DEPLOY / "serviceaccount.yaml"), "-f", str(DEPLOY / "rbac.yaml"))
    cp.kubectl("apply", *files)
    try:
        assert denied(cp, [*must(namespace), *must("default"), *LEASE_RULES]) == []
        assert denied(cp, [("list", "batches.audioextract.dev", "-A")]) == []
        assert granted(cp, [*must_not(namespace), *NEVER]) == []
    finally:
        cp.kubectl("delete", "-f", str(DEPLOY / "rbac.yaml"))


def test_namespaced_install_grants_roles_in_the_listed_namespaces_only(
    control_plane: ControlPlane,
    crds: list[str],
    system_namespace: str,
    team_namespaces: tuple[str, ...],
    namespace: str,
) -> None:
    cp = control_plane
    rbac = load(NAMESPACED / "rbac.yaml")
    assert {d["kind"] for d in rbac} == {"Role", "RoleBinding", "ClusterRole"}
    # The only ClusterRoles are the aggregated ones for people, bound to nobody here.
    assert {d["metadata"]["name"] for d in rbac if d["kind"] == "ClusterRole"} == {
        "audio-extract-operator-view",
        "audio-extract-operator-edit",
    }
    files = ("-f", str(NAMESPACED / "serviceaccount.yaml"), "-f", str(NAMESPACED / "rbac.yaml"))
    cp.kubectl("apply", *files)
    try:
        served = [c for team in team_namespaces for c in must(team)]
        assert denied(cp, [*served, *LEASE_RULES]) == []
        # Nothing in a namespace it does not serve, nothing cluster-wide.
        elsewhere = [*must(namespace), *must("kube-system"), *must(SYSTEM_NS)]
        cluster_wide = [
            ("list", "batches.audioextract.dev", "-A"),
            ("watch", "jobs.batch", "-A"),
            ("list", "pods", "-A"),
            ("get", "secrets", "-A"),
        ]
        not_allowed = [*must_not(team_namespaces[0]), *NEVER]
        assert granted(cp, [*elsewhere, *cluster_wide, *not_allowed]) == []
        for team in team_namespaces:
            worker = kubernetes.client.CoreV1Api(cp.api_client).read_namespaced_service_account(
                WORKER_SA, team
            )
            assert worker.automount_service_account_token is False
    finally:
        cp.kubectl("delete", "-f", str(NAMESPACED / "rbac.yaml"))


def test_users_get_batches_through_the_built_in_view_and_edit_roles(
    control_plane: ControlPlane, crds: list[str], namespace: str
) -> None:
    cp = control_plane
    (view,) = [
        d
        for d in load(DEPLOY / "rbac.yaml")
        if d["metadata"]["name"] == "audio-extract-operator-view"
    ]
    (edit,) = [
        d
        for d in load(DEPLOY / "rbac.yaml")
        if d["metadata"]["name"] == "audio-extract-operator-edit"
    ]
    apply(cp, [view, edit])
    cp.kubectl(
        "create", "rolebinding", "alice-edit", "--clusterrole=edit", "--user=alice", "-n", namespace
    )
    cp.kubectl(
        "create", "rolebinding", "bob-view", "--clusterrole=view", "--user=bob", "-n", namespace
    )
    batches = "batches.audioextract.dev"
    # The clusterrole-aggregation controller copies the rules into view and edit.
    wait_for(
        lambda: (
            can_i(cp, "alice", "create", batches, "-n", namespace)
            and can_i(cp, "bob", "list", batches, "-n", namespace)
        ),
        timeout=20,
        what="audio-extract-view/-edit aggregated into view/edit",
    )
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        assert can_i(cp, "alice", verb, batches, "-n", namespace), verb
        assert can_i(cp, "alice", verb, "extractionjobs.audioextract.dev", "-n", namespace), verb
    for verb in ("get", "list", "watch"):
        assert can_i(cp, "bob", verb, "extractionjobs.audioextract.dev", "-n", namespace), verb
    for verb in ("create", "update", "patch", "delete"):
        assert not can_i(cp, "bob", verb, batches, "-n", namespace), verb
    # Status belongs to the operator; nobody's access reaches other namespaces.
    assert not can_i(cp, "alice", "patch", batches, "--subresource=status", "-n", namespace)
    assert not can_i(cp, "alice", "create", batches, "-n", "default")
    assert not can_i(cp, "bob", "list", batches, "-n", "default")

    # For real: alice's Batch is created, bob's is refused.
    manifest = json.dumps(
        batch_manifest("by-alice", [{"name": "a", "source": {"url": "https://example.com/a.mp4"}}])
    )
    cp.kubectl("create", "-n", namespace, "--as=alice", "-f", "-", input=manifest)
    out = cp.kubectl(
        "create",
        "-n",
        namespace,
        "--as=bob",
        "-f",
        "-",
        input=manifest.replace("by-alice", "by-bob"),
        check=False,
    )
    assert out.returncode != 0 and "forbidden" in out.stderr, out
    assert (
        "by-alice" in cp.kubectl("get", "batches", "-n", namespace, "--as=bob", "-o", "name").stdout
    )


def test_quota_example_refuses_a_batch_beyond_the_quota(
    control_plane: ControlPlane, crds: list[str], namespace: str
) -> None:
    cp = control_plane
    core = kubernetes.client.CoreV1Api(cp.api_client)
    quota = copy.deepcopy(QUOTA)
    assert BATCH_COUNT in quota["spec"]["hard"]
    quota["spec"]["hard"][BATCH_COUNT] = "1"
    name = quota["metadata"]["name"]
    created = [0.0]

    def counting() -> bool:
        # Admission refuses every Batch with "status unknown for quota" until the quota
        # controller has counted them. It learns of a new CRD by discovery (every 30 s)
        # and counts a quota made before that only at its next full resync (5 min) or
        # when the quota's spec.hard changes; making the quota again has the same effect.
        used = core.read_namespaced_resource_quota(name, namespace).status.used or {}
        if BATCH_COUNT in used:
            return True
        if time.monotonic() - created[0] > 3:
            cp.kubectl("delete", "resourcequota", name, "-n", namespace, "--ignore-not-found")
            apply(cp, [quota], "-n", namespace)
            created[0] = time.monotonic()
        return False

    apply(cp, [quota], "-n", namespace)
    created[0] = time.monotonic()
    wait_for(counting, timeout=45, interval=0.3, what="ResourceQuota counting Batches")
    job = [{"name": "a", "source": {"url": "https://example.com/a.mp4"}}]
    first = json.dumps(batch_manifest("first", job))
    cp.kubectl("create", "-n", namespace, "-f", "-", input=first)
    out = cp.kubectl(
        "create", "-n", namespace, "-f", "-", input=first.replace("first", "second"), check=False
    )
    assert out.returncode != 0, out
    assert "exceeded quota" in out.stderr and BATCH_COUNT in out.stderr, out
