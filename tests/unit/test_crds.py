"""The generated CRDs: structural, described, with the columns and rules the contract names."""

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from audioextract.api import crd
from audioextract.api.constants import MAX_JOBS_PER_BATCH

ROOT = Path(__file__).resolve().parents[2]
CRDS = crd.all_crds()

# Keywords Kubernetes accepts in a structural schema (apiextensions v1 JSONSchemaProps).
ALLOWED = {
    "type",
    "description",
    "properties",
    "items",
    "required",
    "enum",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "additionalProperties",
    "anyOf",
    "nullable",
    "x-kubernetes-validations",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}


def _version(name: str) -> dict[str, Any]:
    version: dict[str, Any] = CRDS[name]["spec"]["versions"][0]
    return version


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, prop in schema.get("properties", {}).items():
        yield from _nodes(prop, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = _version(name)["schema"]["openAPIV3Schema"]
    return schema


NAMES = ["batches.audioextract.dev.yaml", "extractionjobs.audioextract.dev.yaml"]


def test_checked_in_crds_match_the_models() -> None:
    assert crd.check(ROOT / "crds") == []


def test_check_fails_and_names_the_file_when_a_model_changes(tmp_path: Path) -> None:
    # Change a model field in a copy of the package, leave crds/ alone: --check must fail.
    pkg = tmp_path / "audioextract"
    shutil.copytree(ROOT / "operator" / "audioextract", pkg)
    spec = pkg / "api" / "spec.py"
    text = spec.read_text()
    changed = text.replace(
        'ge=1, le=8, description="Channel count.', 'ge=1, le=6, description="Channel count.'
    )
    assert changed != text
    spec.write_text(changed)
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "audioextract", "crds", "--check", str(ROOT / "crds")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    assert "batches.audioextract.dev.yaml" in proc.stderr
    assert "extractionjobs.audioextract.dev.yaml" in proc.stderr
    # Unchanged package: --check passes.
    proc = subprocess.run(
        [sys.executable, "-m", "audioextract", "crds", "--check", str(ROOT / "crds")],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr


def test_crds_command_prints_both(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "audioextract", "crds"], capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [d["metadata"]["name"] for d in docs] == [
        "batches.audioextract.dev",
        "extractionjobs.audioextract.dev",
    ]
    subprocess.run(
        [sys.executable, "-m", "audioextract", "crds", "--write", str(tmp_path)], check=True
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_identity_and_subresources(name: str) -> None:
    spec = CRDS[name]["spec"]
    assert CRDS[name]["apiVersion"] == "apiextensions.k8s.io/v1"
    assert spec["group"] == "audioextract.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["categories"] == ["audioextract"]
    version = _version(name)
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_names_and_printer_columns() -> None:
    batch, ej = CRDS[NAMES[0]], CRDS[NAMES[1]]
    assert "shortNames" not in batch["spec"]["names"]
    assert ej["spec"]["names"]["shortNames"] == ["ej"]
    cols = {c["name"]: c["jsonPath"] for c in _version(NAMES[0])["additionalPrinterColumns"]}
    assert cols == {
        "Phase": ".status.phase",
        "Succeeded": ".status.succeeded",
        "Failed": ".status.failed",
        "Total": ".status.total",
        "Age": ".metadata.creationTimestamp",
    }
    cols = {c["name"]: c["jsonPath"] for c in _version(NAMES[1])["additionalPrinterColumns"]}
    assert cols == {
        "Phase": ".status.phase",
        "Format": ".spec.output.format",
        "Age": ".metadata.creationTimestamp",
    }


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_structural_and_described(name: str) -> None:
    for path, node in _nodes(_schema(name)):
        assert set(node) <= ALLOWED, f"{path}: keywords {set(node) - ALLOWED}"
        if path == ".metadata":
            assert node == {"type": "object"}  # the API server allows nothing more here
            continue
        assert node.get("description"), f"{path} has no description"
        if not node.get("x-kubernetes-int-or-string"):
            assert "type" in node, f"{path} has no type"
            assert "anyOf" not in node, f"{path}: anyOf only with int-or-string"
        if "properties" in node:
            assert "additionalProperties" not in node, path


def test_cel_rules_are_in_place() -> None:
    rules = {
        (path, r["message"])
        for name in NAMES
        for path, node in _nodes(_schema(name))
        for r in node.get("x-kubernetes-validations", [])
    }
    messages = {m for _, m in rules}
    for expected in [
        "source: exactly one of url or volume must be set",
        "output: set quality or bitrate, not both",
        "destination: exactly one of s3, volume or url must be set",
    ]:
        assert expected in messages
    assert (".spec.jobs[].source", "source: exactly one of url or volume must be set") in rules
    assert (".spec.source", "source: exactly one of url or volume must be set") in rules
    jobs = _schema(NAMES[0])["properties"]["spec"]["properties"]["jobs"]
    assert jobs["maxItems"] == MAX_JOBS_PER_BATCH == 1000
    # Unique names are the API server's own list-map check, not a (quadratic) CEL rule.
    assert jobs["x-kubernetes-list-type"] == "map"
    assert jobs["x-kubernetes-list-map-keys"] == ["name"]
    assert "name" in jobs["items"]["required"]
    assert "x-kubernetes-validations" not in jobs


@pytest.mark.parametrize("name", NAMES)
def test_status_declares_every_field_the_models_have(name: str) -> None:
    from audioextract.api import BatchStatus, ExtractionJobStatus

    model = BatchStatus if name.startswith("batches") else ExtractionJobStatus
    declared = set(_schema(name)["properties"]["status"]["properties"])
    assert declared == {f.alias for f in model.model_fields.values()}
