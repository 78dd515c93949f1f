"""Files generated from the Helm chart: the plain manifests in deploy/ and Argo CD's snippet.

``deploy/`` is the chart rendered by a real Helm engine (helm-python-sdk, Helm v4), so
that ``kubectl apply -k deploy/`` installs exactly what ``helm install`` does:

- ``deploy/``: all namespaces (the ClusterRole), release ``audio-extract-operator`` in
  ``audio-extract-system``;
- ``deploy/namespaced/``: the same, serving only ``team-a`` and ``team-b`` (a Role and
  RoleBinding in each, nothing cluster-wide). Other namespaces: ``helm template`` with
  ``--set watchNamespaces=...``, or change the names in these files.

The CRDs are not part of deploy/: ``kubectl apply --server-side -f crds/`` installs them.
``charts/audio-extract-operator/argocd/argocd-cm.yaml`` carries the health.lua scripts
for the argocd-cm ConfigMap, and the chart README's values table is made from
values.yaml (defaults) and values.schema.json (descriptions). In values.schema.json,
``config.defaultDestination`` is generated from the API's Destination model, so a bad
default destination is refused by ``helm install`` rather than by the operator.

Usage: ``python -m tools.chart --write`` (``make deploy``) or ``--check`` (exit 1 and
name the stale files; the unit tests run the same check).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from audioextract.api.crd import openapi_schema
from audioextract.api.spec import Destination

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "audio-extract-operator"
DEPLOY = ROOT / "deploy"
RELEASE = "audio-extract-operator"
SYSTEM_NAMESPACE = "audio-extract-system"
HEADER = (
    "# Generated from charts/audio-extract-operator by `make deploy` (tools/chart.py). Do not edit:\n"
    "# change the chart (or the values in tools/chart.py) and regenerate.\n"
)
# What each deploy/ variant is: its directory and the chart values it is rendered with.
VARIANTS: dict[str, dict[str, Any]] = {
    "": {"crds": {"enabled": False}},
    "namespaced": {"crds": {"enabled": False}, "watchNamespaces": ["team-a", "team-b"]},
}
# Labels that only make sense for a Helm release.
HELM_ONLY = ("helm.sh/chart:", "app.kubernetes.io/managed-by:")
ARGOCD = CHART / "argocd"
HEALTH = ARGOCD / "resource_customizations" / "audioextract.dev"
KINDS = ("Batch", "ExtractionJob")


def render(
    values: dict[str, Any], namespace: str = SYSTEM_NAMESPACE, release: str = RELEASE
) -> dict[str, str]:
    """The chart's templates rendered with ``values``: template file name -> manifests."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name=release, namespace=namespace, is_install=True)
    return {Path(path).name: text for path, text in out.items()}


def _plain(text: str) -> str:
    lines = [line for line in text.splitlines() if not line.strip().startswith(HELM_ONLY)]
    body = "\n".join(lines).strip("\n")
    body = body.removeprefix("---").lstrip("\n")
    return HEADER + body + "\n"


def _kustomization(files: list[str]) -> str:
    resources = "".join(f"  - {name}\n" for name in files)
    return (
        "# kubectl apply -k .   (after the CRDs: kubectl apply --server-side -f crds/)\n"
        + HEADER
        + "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        + resources
    )


def deploy_files() -> dict[Path, str]:
    """Every generated file under deploy/ with its content."""
    namespace = (DEPLOY / "namespace.yaml").read_text()
    files: dict[Path, str] = {}
    for subdir, values in VARIANTS.items():
        directory = DEPLOY / subdir
        names = ["namespace.yaml"]
        if subdir:
            files[directory / "namespace.yaml"] = namespace
        for name, text in sorted(render(values).items()):
            if not name.endswith(".yaml") or not text.strip():
                continue
            files[directory / name] = _plain(text)
            names.append(name)
        files[directory / "Kustomization"] = _kustomization(names)
    return files


def _block(text: str, indent: int) -> str:
    pad = " " * indent
    return "".join(f"{pad}{line}\n" if line else "\n" for line in text.splitlines())


def argocd_cm() -> str:
    """The argocd-cm data keys with both health.lua scripts (a patch for that ConfigMap)."""
    out = (
        "# Argo CD health checks for Batch and ExtractionJob. Merge into the argocd-cm\n"
        "# ConfigMap, e.g. kubectl -n argocd patch configmap argocd-cm --patch-file argocd-cm.yaml\n"
        "# (or the Argo CD chart's configs.cm). Generated from resource_customizations/ by\n"
        "# `make deploy` (tools/chart.py); the scripts' tests are next to them.\n"
        "data:\n"
    )
    for kind in KINDS:
        script = (HEALTH / kind / "health.lua").read_text()
        out += f"  resource.customizations.health.audioextract.dev_{kind}: |\n" + _block(script, 4)
    return out


VALUES_START, VALUES_END = "<!-- values:start -->", "<!-- values:end -->"
SCHEMA = CHART / "values.schema.json"


def _json_schema(node: Any) -> Any:
    """A CRD (OpenAPI) schema as plain JSON Schema: no CEL, unknown keys refused."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False
    return out


def values_schema() -> str:
    """values.schema.json with config.defaultDestination generated from the API model."""
    schema = json.loads(SCHEMA.read_text())
    destination = _json_schema(openapi_schema(Destination))
    # Empty means "no default"; otherwise exactly one kind (the CRD says it with CEL).
    destination["maxProperties"] = 1
    destination["description"] = (
        "Destination of jobs that name none (as output.destination: exactly one of s3, "
        "volume or url); empty: none. Generated from the API model."
    )
    schema["properties"]["config"]["properties"]["defaultDestination"] = destination
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _rows(values: dict[str, Any], schema: dict[str, Any], prefix: str) -> list[str]:
    rows = []
    for key, value in values.items():
        node = schema["properties"][key]
        path = f"{prefix}{key}"
        if isinstance(value, dict) and "properties" in node and value:
            rows += _rows(value, node, f"{path}.")
            continue
        default = json.dumps(value, separators=(", ", ": ")).replace("|", "\\|")
        rows.append(f"| `{path}` | `{default}` | {node['description']} |")
    return rows


def values_table() -> str:
    """The chart README's table of every value: key, default, description."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads(values_schema())
    lines = ["| key | default | description |", "|---|---|---|", *_rows(values, schema, "")]
    return "\n".join(lines) + "\n"


def chart_readme() -> str:
    """The chart README with its values table regenerated between the markers."""
    text = (CHART / "README.md").read_text()
    head, rest = text.split(VALUES_START, 1)
    _, tail = rest.split(VALUES_END, 1)
    return f"{head}{VALUES_START}\n{values_table()}{VALUES_END}{tail}"


def generated() -> dict[Path, str]:
    """Every file this module generates, with its content."""
    return {
        **deploy_files(),
        ARGOCD / "argocd-cm.yaml": argocd_cm(),
        SCHEMA: values_schema(),
        CHART / "README.md": chart_readme(),
    }


def stale() -> list[Path]:
    """Generated files whose checked-in content differs (or that are missing)."""
    return [p for p, text in generated().items() if not p.exists() or p.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    """``--write`` the generated files or ``--check`` them; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tools.chart", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the generated files")
    mode.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    args = parser.parse_args(argv)
    if args.check:
        for path in stale():
            print(f"{path.relative_to(ROOT)}: stale; run `make deploy`", file=sys.stderr)
        return 1 if stale() else 0
    for path, text in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
