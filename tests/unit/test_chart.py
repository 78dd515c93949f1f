"""The Helm chart, rendered offline by a real Helm engine (helm-python-sdk: Helm v4).

Lint, what each mode renders (RBAC per mode, restricted Pods, probes, settings), the
optional parts, the CRDs' copy, the schema's refusals, and that deploy/ and the Argo CD
snippet are what the chart generates. tests/envtest/test_chart.py installs the same
renders on a real API server.
"""

import itertools
import json
import re
import shlex
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from audioextract.api import crd
from tests.support.chart import CHART, every_feature, objects, render
from tools import chart as chart_tool

Obj = dict[str, Any]
WORKER_SA = "audio-extract-worker"
ROOT = Path(__file__).resolve().parents[2]


def by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    (found,) = [o for o in by_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    return found


def env_of(objs: list[Obj]) -> dict[str, Any]:
    container = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_lint_is_clean_with_defaults_and_every_feature() -> None:
    for values in (None, every_feature(), every_feature(["team-a", "team-b"])):
        report = helm.lint(str(CHART), values, strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert problems == [] and report["errors"] == [], report


def test_defaults_serve_all_namespaces_with_one_cluster_role() -> None:
    objs = objects()
    kinds = sorted({o["kind"] for o in objs})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    cluster_roles = {o["metadata"]["name"]: o for o in by_kind(objs, "ClusterRole")}
    assert set(cluster_roles) == {
        "audio-extract-operator",
        "audio-extract-operator-view",
        "audio-extract-operator-edit",
    }
    binding = one(objs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "audio-extract-operator"
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": "audio-extract-operator",
            "namespace": "audio-extract-system",
        }
    ]
    # The only Role is the Lease's, in the release namespace, limited to the one Lease.
    role = one(objs, "Role")
    assert role["metadata"] == {**role["metadata"], "namespace": "audio-extract-system"}
    assert {"resourceNames": ["audio-extract-operator"], "verbs": ["get", "update"]}.items() <= (
        role["rules"][1].items()
    )
    deployment = one(objs, "Deployment")
    assert "args" not in deployment["spec"]["template"]["spec"]["containers"][0]
    # All-namespaces mode: no worker ServiceAccount is created, none is named.
    assert [o["metadata"]["name"] for o in by_kind(objs, "ServiceAccount")] == [
        "audio-extract-operator"
    ]
    assert "AUDIOEXTRACT_WORKER_SERVICE_ACCOUNT" not in env_of(objs)


def test_watch_namespaces_grants_roles_there_and_nothing_cluster_wide() -> None:
    objs = objects({"watchNamespaces": ["team-a", "team-b"]})
    assert not by_kind(objs, "ClusterRoleBinding")
    # Only the aggregated ClusterRoles for people remain cluster-scoped.
    assert {o["metadata"]["name"] for o in by_kind(objs, "ClusterRole")} == {
        "audio-extract-operator-view",
        "audio-extract-operator-edit",
    }
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in by_kind(objs, "Role")}
    assert roles == {
        ("team-a", "audio-extract-operator"),
        ("team-b", "audio-extract-operator"),
        ("audio-extract-system", "audio-extract-operator-leader-election"),
    }
    all_ns = one(objects(), "ClusterRole", "audio-extract-operator")["rules"]
    for role in by_kind(objs, "Role"):
        if role["metadata"]["namespace"] != "audio-extract-system":
            assert role["rules"] == all_ns  # the same rules, one place
    for binding in by_kind(objs, "RoleBinding"):
        assert binding["subjects"][0]["namespace"] == "audio-extract-system"
    container = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--namespace", "team-a", "--namespace", "team-b"]
    workers = [o for o in by_kind(objs, "ServiceAccount") if o["metadata"]["name"] == WORKER_SA]
    assert {o["metadata"]["namespace"] for o in workers} == {"team-a", "team-b"}
    assert all(o["automountServiceAccountToken"] is False for o in workers)
    assert env_of(objs)["AUDIOEXTRACT_WORKER_SERVICE_ACCOUNT"] == WORKER_SA


def test_extra_rules_join_the_operator_rules_in_either_mode() -> None:
    rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]}
    cluster = one(
        objects({"rbac": {"extraRules": [rule]}}), "ClusterRole", "audio-extract-operator"
    )
    assert cluster["rules"][-1] == rule
    namespaced = objects({"watchNamespaces": ["team-a"], "rbac": {"extraRules": [rule]}})
    assert one(namespaced, "Role", "audio-extract-operator")["rules"][-1] == rule


def test_operator_pod_is_restricted_probed_and_configured() -> None:
    objs = objects(every_feature())
    deployment = one(objs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"
    }
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert container["image"] == "audio-extract-operator@sha256:" + "a" * 64
    env = env_of(objs)
    assert env["AUDIOEXTRACT_METRICS_PORT"] == "8080"
    assert env["AUDIOEXTRACT_LEASE_NAME"] == "audio-extract-operator"
    assert env["AUDIOEXTRACT_WORKER_IMAGE"] == "audio-extract-worker:0.1.0"
    assert json.loads(env["AUDIOEXTRACT_DEFAULT_DESTINATION"]) == {
        "s3": {"bucket": "audio", "prefix": "out"}
    }
    assert env["AUDIOEXTRACT_S3_CREDENTIALS_SECRET"] == "audio-s3"
    assert env["AUDIOEXTRACT_MAX_CONCURRENT_JOBS"] == "5"
    assert json.loads(env["AUDIOEXTRACT_DEFAULT_REQUESTS"]) == {"cpu": "250m", "memory": "128Mi"}
    assert env["AUDIOEXTRACT_TEMP_SIZE_LIMIT"] == "1Gi"
    assert env["AUDIOEXTRACT_LEASE_DURATION_SECONDS"] == "20"
    # Unset settings leave the operator's own defaults (docs/settings.md), not a copy.
    defaults = env_of(objects())
    for name in ("MAX_CONCURRENT_JOBS", "MAX_JOBS_PER_BATCH", "DEFAULT_REQUESTS", "RESYNC_SECONDS"):
        assert f"AUDIOEXTRACT_{name}" not in defaults
    assert env["AUDIOEXTRACT_WEBHOOK_TIMEOUT"] == "10"
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # One replica: no two versions side by side during an upgrade.
    single = one(objects({"replicaCount": 1}), "Deployment")
    assert single["spec"]["strategy"] == {"type": "Recreate"}


def test_optional_parts_carry_the_files_they_are_made_of() -> None:
    objs = objects(every_feature())
    service = one(objs, "Service")
    monitor = one(objs, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    rules = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert one(objs, "PrometheusRule")["spec"]["groups"] == rules["groups"]
    dashboard = one(objs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = dashboard["data"].values()
    assert json.loads(text) == json.loads((CHART / "files" / "dashboard.json").read_text())
    policy = one(objs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    # Without egress rules, egress is left alone (the operator must reach the API server).
    plain = one(objects({"networkPolicy": {"enabled": True}}), "NetworkPolicy")
    assert plain["spec"]["policyTypes"] == ["Ingress"] and "egress" not in plain["spec"]


def test_crds_are_the_generated_ones_kept_on_uninstall() -> None:
    rendered = {o["metadata"]["name"]: o for o in by_kind(objects(), "CustomResourceDefinition")}
    generated = {c["metadata"]["name"]: c for c in crd.all_crds().values()}
    assert set(rendered) == set(generated)
    for name, obj in rendered.items():
        assert obj["spec"] == generated[name]["spec"]
        assert obj["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "audio-extract-operator"
    assert not by_kind(objects({"crds": {"enabled": False}}), "CustomResourceDefinition")
    unkept = by_kind(objects({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert unkept and all("annotations" not in o["metadata"] for o in unkept)
    # The chart's copy is checked like crds/ (`audio-extract crds --check`).
    assert crd.check(CHART / "files" / "crds") == []


def test_crd_check_covers_the_charts_copy(tmp_path: Path) -> None:
    copy = tmp_path / "files-crds"
    copy.mkdir()
    for path in (CHART / "files" / "crds").iterdir():
        (copy / path.name).write_text(path.read_text())
    assert crd.check(copy) == []
    stale = copy / "batches.audioextract.dev.yaml"
    stale.write_text(stale.read_text().replace("maxItems:", "maxItems: 1", 1))
    assert crd.check(copy) == [str(stale)]
    assert any(str(d).endswith("charts/audio-extract-operator/files/crds") for d in crd.CRD_DIRS)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"metrics": {"prot": 9090}}, "at '/metrics': additional properties 'prot' not allowed"),
        ({"image": {"tag": 1}}, "at '/image/tag': got number, want string"),
        ({"replicaCount": 0}, "at '/replicaCount': minimum: got 0, want 1"),
        (
            {"watchNamespaces": ["Team_A"]},
            "at '/watchNamespaces/0': 'Team_A' does not match pattern",
        ),
        ({"metrics": {"port": 80}}, "at '/metrics/port': minimum: got 80, want 1,024"),
        ({"image": {"digest": "latest"}}, "at '/image/digest': 'latest' does not match pattern"),
        (
            {"config": {"maxConcurrentJobs": 0}},
            "at '/config/maxConcurrentJobs': minimum: got 0, want 1",
        ),
        (
            {"config": {"defaultDestination": {"s3": {"bucket": "a"}, "url": "https://x"}}},
            "at '/config/defaultDestination': maxProperties: got 2, want 1",
        ),
        (
            {"config": {"defaultDestination": {"s3": {"bucket": "Audio_Bucket"}}}},
            "at '/config/defaultDestination/s3/bucket': 'Audio_Bucket' does not match pattern",
        ),
        (
            {"config": {"defaultDestination": {"s3": {"bucket": "audio", "acl": "public"}}}},
            "at '/config/defaultDestination/s3': additional properties 'acl' not allowed",
        ),
        (
            {"config": {"defaultDestination": {"volume": {"path": "out"}}}},
            "at '/config/defaultDestination/volume': missing property 'claimName'",
        ),
        ({"crds": {"enabled": "yes"}}, "at '/crds/enabled': got string, want boolean"),
        ({"rbac": {"extraRules": [{"resources": ["pods"]}]}}, "missing property 'verbs'"),
    ],
)
def test_schema_refuses_bad_values_with_a_clear_message(values: Obj, message: str) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError) as refused:
            chart.validate_schema(values)
        assert message in str(refused.value)
        # An install renders nothing with such values either.
        with pytest.raises(helm.HelmValuesError):
            chart.render(values, name="x", namespace="x")


def test_every_value_key_is_in_the_schema_and_documented() -> None:
    values_text = (CHART / "values.yaml").read_text()
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(values: Obj, node: Obj, path: str) -> None:
        assert node.get("additionalProperties") is False, f"{path or '<root>'} accepts unknown keys"
        for key, value in values.items():
            assert key in node["properties"], f"{path}.{key} missing from the schema"
            sub = node["properties"][key]
            assert sub.get("description"), f"{path}.{key} has no description in the schema"
            if isinstance(value, dict) and sub.get("properties"):
                walk(value, sub, f"{path}.{key}")

    walk(yaml.safe_load(values_text), schema, "")
    # values.yaml documents every declared key in a comment right above it.
    stack: list[tuple[int, Obj]] = [(-1, schema)]
    previous = ""
    undocumented = []
    for line in values_text.splitlines():
        match = re.match(r"^( *)([A-Za-z][\w-]*):", line)
        if match:
            indent, key = len(match.group(1)), match.group(2)
            while stack[-1][0] >= indent:
                stack.pop()
            node = stack[-1][1].get("properties", {}).get(key)
            if node is not None:  # a key of the chart, not inside a free-form default
                if not previous.lstrip().startswith("#"):
                    undocumented.append(key)
                stack.append((indent, node))
            else:
                stack.append((indent, {}))
        if line.strip():
            previous = line
    assert undocumented == []


def test_deploy_and_argocd_snippet_are_generated_from_the_chart() -> None:
    assert [str(p) for p in chart_tool.stale()] == [], "run `make deploy`"
    # deploy/ is a plain-kubectl rendering: no Helm bookkeeping labels.
    text = (chart_tool.DEPLOY / "deployment.yaml").read_text()
    assert "helm.sh/chart" not in text and "managed-by" not in text
    namespaced = yaml.safe_load_all((chart_tool.DEPLOY / "namespaced" / "rbac.yaml").read_text())
    assert "ClusterRoleBinding" not in {d["kind"] for d in namespaced}
    snippet = yaml.safe_load((chart_tool.ARGOCD / "argocd-cm.yaml").read_text())["data"]
    for kind in chart_tool.KINDS:
        script = (chart_tool.HEALTH / kind / "health.lua").read_text()
        assert snippet[f"resource.customizations.health.audioextract.dev_{kind}"] == script


def test_notes_say_what_is_missing() -> None:
    notes = render({})["NOTES.txt"]
    assert "config.defaultDestination is not set" in notes
    notes = render(every_feature(["team-a"]))["NOTES.txt"]
    assert "team-a" in notes and "defaultDestination is not set" not in notes
    assert "audio-extract-operator-dashboard" in notes


def _merge(into: Obj, new: Obj) -> Obj:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def helm_commands(text: str) -> list[list[str]]:
    """Every `helm install|upgrade|template` command of a document, continuations joined."""
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip().replace("$REG", "registry.example.com")
        if line.startswith(("helm install", "helm upgrade", "helm template")):
            out.append(shlex.split(line.split("  #")[0]))
    return out


def values_of(argv: list[str]) -> Obj:
    """The values a helm command line sets, parsed by Helm's own --set parsers."""
    values: Obj = {}
    parsers = {"--set": helm.parse_set_string, "--set-json": helm.parse_set_json}
    for flag, arg in itertools.pairwise(argv):
        if flag in parsers:
            _merge(values, parsers[flag](arg))
    return values


@pytest.mark.parametrize(
    "doc", ["README.md", "docs/install.md", "charts/audio-extract-operator/README.md"]
)
def test_documented_helm_commands_render(doc: str) -> None:
    commands = helm_commands((ROOT / doc).read_text())
    assert commands, f"{doc} shows no helm command"
    for argv in commands:
        assert "charts/audio-extract-operator" in argv, argv
        values = values_of(argv)
        with helm.Chart.load(str(CHART)) as chart:
            chart.validate_schema(values)
        assert render(values)["deployment.yaml"]


def test_readme_quickstart_creates_what_the_example_batch_and_the_install_name() -> None:
    readme = (ROOT / "README.md").read_text()
    (install,) = [c for c in helm_commands(readme) if c[1] == "install"]
    values = values_of(install)
    batch = yaml.safe_load((ROOT / "examples" / "batch.yaml").read_text())
    created = re.findall(r"create secret generic ([a-z0-9-]+)", readme)
    # The webhook key the Batch names, and the S3 credentials the install names.
    assert batch["spec"]["webhook"]["secretRef"]["name"] in created
    assert values["config"]["s3"]["credentialsSecret"] in created
    # The Batch names no destination: the operator's default is set.
    assert all("destination" not in (j.get("output") or {}) for j in batch["spec"]["jobs"])
    assert values["config"]["defaultDestination"]["s3"]["bucket"]
    env = env_of(objects(values))
    assert (
        json.loads(env["AUDIOEXTRACT_DEFAULT_DESTINATION"])
        == values["config"]["defaultDestination"]
    )
    assert env["AUDIOEXTRACT_WORKER_IMAGE"] == "registry.example.com/audio-extract-worker:0.1.0"
    # The dashboard the README points at is what the install creates.
    (dashboard,) = by_kind(objects(values), "ConfigMap")
    assert dashboard["metadata"]["name"] in readme


@pytest.mark.parametrize(
    ("values", "created_in", "named"),
    [
        ({}, set(), None),  # all namespaces: the chart cannot create it everywhere
        ({"watchNamespaces": ["team-a"]}, {"team-a"}, WORKER_SA),
        ({"worker": {"serviceAccount": {"create": False}}}, set(), WORKER_SA),  # made by you
        (
            {"watchNamespaces": ["team-a"], "worker": {"serviceAccount": {"name": ""}}},
            set(),
            None,
        ),
    ],
)
def test_worker_service_account_per_mode(
    values: Obj, created_in: set[str], named: str | None
) -> None:
    objs = objects(values)
    workers = [o for o in by_kind(objs, "ServiceAccount") if o["metadata"]["name"] == WORKER_SA]
    assert {o["metadata"]["namespace"] for o in workers} == created_in
    assert env_of(objs).get("AUDIOEXTRACT_WORKER_SERVICE_ACCOUNT") == named


def test_operator_service_account_must_be_named_when_not_created() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"serviceAccount\.name is required"):
        render({"serviceAccount": {"create": False}})
    objs = objects({"serviceAccount": {"create": False, "name": "mine"}, "rbac": {"create": False}})
    assert not by_kind(objs, "ServiceAccount") and not by_kind(objs, "RoleBinding")
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mine"


def test_packaged_chart_renders_like_the_directory(tmp_path: Path) -> None:
    archive = helm.package(str(CHART), destination=str(tmp_path))
    assert Path(archive).name == "audio-extract-operator-0.1.0.tgz"
    values = every_feature(["team-a"])
    with helm.Chart.load(archive) as packaged:
        # .helmignore keeps the files the templates read and the Argo CD checks.
        names = {f["name"] for f in packaged.files}
        assert {"files/prometheus-rules.yaml", "files/dashboard.json", "README.md"} <= names
        assert "argocd/argocd-cm.yaml" in names
        out = packaged.render(
            values, name="audio-extract-operator", namespace="audio-extract-system"
        )
    from_archive = {Path(k).name: v for k, v in out.items()}
    assert from_archive == render(values)
