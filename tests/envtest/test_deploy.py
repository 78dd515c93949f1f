"""The install manifests in deploy/ on a real control plane.

- every manifest passes server-side validation, and the operator's Pod meets the
  restricted Pod Security Standard;
- the operator runs a Batch to the end with nothing but its ServiceAccount's RBAC
  (a token from the TokenRequest API, the leader Lease included), and no call is
  refused;
- the RBAC refuses what the operator must not do; the view/edit aggregation gives
  a namespace's viewers and editors the right access to Batches;
- the ResourceQuota example refuses a Batch beyond the quota.
"""

import copy
import json
import time
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from audioextract.webhooks.signing import generate_secret
from tests.envtest.operator_process import OperatorProcess
from tests.envtest.test_operator import DEST, GROUP, VERSION, batch_manifest, get, make_video
from tests.support.controlplane import ControlPlane
from tests.support.kubelet import FakeKubelet
from tests.support.wait import wait_for
from tests.support.webhook_receiver import receiver

REPO = Path(__file__).parent.parent.parent
DEPLOY = REPO / "deploy"
SYSTEM_NS = "audio-extract-system"
SA_NAME = "audio-extract-operator"
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


def namespaced_install(namespace: str) -> list[Obj]:
    """The ServiceAccount and RBAC of deploy/, moved into ``namespace`` as docs/install.md
    describes for a namespaced install: the ClusterRole bound by a RoleBinding."""
    docs = load(DEPLOY / "serviceaccount.yaml") + load(DEPLOY / "rbac.yaml")
    out: list[Obj] = []
    for doc in copy.deepcopy(docs):
        kind = doc["kind"]
        if kind == "ClusterRoleBinding":
            doc["kind"] = "RoleBinding"
        if kind in ("ServiceAccount", "ClusterRoleBinding", "Role", "RoleBinding"):
            doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", ()):
            subject["namespace"] = namespace
        out.append(doc)
    return out


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


def test_manifests_pass_server_validation_and_restricted_pod_security(
    control_plane: ControlPlane, system_namespace: str
) -> None:
    cp = control_plane
    files = sorted(DEPLOY.glob("*.yaml"))
    assert {f.name for f in files} >= {
        "namespace.yaml",
        "serviceaccount.yaml",
        "rbac.yaml",
        "deployment.yaml",
    }
    for path in files:
        out = cp.kubectl("apply", "--dry-run=server", "-f", str(path))
        # The namespace warns on restricted violations: a Deployment would say so here.
        assert "Warning" not in out.stderr, (path.name, out.stderr)
    out = cp.kubectl("apply", "--dry-run=server", "-k", str(DEPLOY))
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


def test_operator_runs_a_batch_with_only_its_service_account_rbac(
    controller_manager: ControlPlane,
    crds: list[str],
    namespace: str,
    kubelet: FakeKubelet,
    api_client: kubernetes.client.ApiClient,
    tmp_path: Path,
) -> None:
    cp = controller_manager
    apply(cp, namespaced_install(namespace))
    token = cp.kubectl("create", "token", SA_NAME, "-n", namespace, "--duration=1h").stdout.strip()
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
    core = kubernetes.client.CoreV1Api(api_client)
    custom: Any = kubernetes.client.CustomObjectsApi(api_client)
    secret = generate_secret()
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "hook"}, "stringData": {"secret": secret}}
    )
    env = {
        "KUBECONFIG": str(kubeconfig),
        "AUDIOEXTRACT_DEFAULT_DESTINATION": DEST,
        "AUDIOEXTRACT_ALLOW_NETWORKS": "127.0.0.0/8",
    }
    with (
        receiver(secret) as hooks,
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
        lease = kubernetes.client.CoordinationV1Api(api_client).read_namespaced_lease(
            "audio-extract-operator", namespace
        )
        assert lease.spec.holder_identity, lease
        reasons = {e.reason for e in core.list_namespaced_event(namespace).items}
        # Batch-level Events only: a child's outcome is in the Batch's status, not an
        # Event per child (docs/operator.md, "Write budget").
        assert {"ChildrenCreated", "PhaseChanged"} <= reasons, reasons
        assert not reasons & {"JobStarted", "JobSucceeded", "JobFailed"}, reasons
        assert op.alive(), op.log()[-5000:]
    log = op.log()
    assert "acquired lease" in log, log[-5000:]
    for refused in ("403", "Forbidden", "forbidden", "Not enough permissions"):
        assert refused not in log, log[-8000:]
    assert "Traceback" not in log, log[-8000:]
    assert not hooks.unverified
    assert elapsed < OPERATOR_BOUND_SECONDS


def test_operator_rbac_refuses_what_the_operator_must_not_do(
    control_plane: ControlPlane, crds: list[str], system_namespace: str, namespace: str
) -> None:
    cp = control_plane
    # The all-namespaces install as shipped.
    cp.kubectl("apply", "-f", str(DEPLOY / "serviceaccount.yaml"), "-f", str(DEPLOY / "rbac.yaml"))
    sa = OPERATOR_SA
    allowed = [
        ("list", "batches.audioextract.dev", "-A"),
        ("watch", "extractionjobs.audioextract.dev", "-A"),
        ("create", "extractionjobs.audioextract.dev", "-n", namespace),
        ("patch", "batches.audioextract.dev", "--subresource=status", "-n", namespace),
        ("delete", "batches.audioextract.dev", "-n", namespace),
        ("create", "jobs.batch", "-n", namespace),
        ("list", "pods", "-n", namespace),
        ("get", "secrets", "-n", namespace),
        ("create", "events", "-n", namespace),
        ("update", "leases.coordination.k8s.io", "-n", system_namespace),
    ]
    refused = [
        ("create", "pods", "-n", namespace),
        ("delete", "pods", "-n", namespace),
        ("list", "secrets", "-n", namespace),
        ("create", "batches.audioextract.dev", "-n", namespace),
        ("patch", "batches.audioextract.dev", "-n", namespace),  # the spec is the user's
        ("update", "jobs.batch", "-n", namespace),
        ("update", "leases.coordination.k8s.io", "-n", namespace),
        ("create", "leases.coordination.k8s.io", "-n", "kube-system"),
        ("delete", "namespaces", "-A"),
        ("update", "customresourcedefinitions.apiextensions.k8s.io", "-A"),
        ("create", "rolebindings.rbac.authorization.k8s.io", "-n", namespace),
        ("get", "configmaps", "-n", namespace),
    ]
    assert [a for a in allowed if not can_i(cp, sa, *a)] == []
    assert [r for r in refused if can_i(cp, sa, *r)] == []

    # A namespaced install: the ClusterRole bound in one namespace reaches nothing else.
    apply(cp, namespaced_install(namespace))
    local = f"system:serviceaccount:{namespace}:{SA_NAME}"
    assert can_i(cp, local, "get", "secrets", "-n", namespace)
    assert can_i(cp, local, "update", "leases.coordination.k8s.io", "-n", namespace)
    assert not can_i(cp, local, "get", "secrets", "-n", system_namespace)
    assert not can_i(cp, local, "get", "secrets", "-n", "kube-system")
    assert not can_i(cp, local, "list", "batches.audioextract.dev", "-A")
    assert not can_i(cp, local, "create", "jobs.batch", "-n", system_namespace)


def test_users_get_batches_through_the_built_in_view_and_edit_roles(
    control_plane: ControlPlane, crds: list[str], namespace: str
) -> None:
    cp = control_plane
    (view,) = [
        d for d in load(DEPLOY / "rbac.yaml") if d["metadata"]["name"] == "audio-extract-view"
    ]
    (edit,) = [
        d for d in load(DEPLOY / "rbac.yaml") if d["metadata"]["name"] == "audio-extract-edit"
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
