"""Generate the CustomResourceDefinitions from the pydantic models.

Pydantic emits JSON Schema 2020-12; Kubernetes wants a structural OpenAPI v3.0
schema. The conversion inlines every ``$ref``, drops titles and null defaults, turns
``X | None`` into an optional ``X``, rewrites numeric ``exclusiveMinimum`` into the
OpenAPI 3.0 boolean form and removes keywords a structural schema forbids.
"""

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from audioextract.api import constants as c
from audioextract.api.spec import BatchSpec, ExtractionJobSpec
from audioextract.api.status import BatchStatus, ExtractionJobStatus

HEADER = "# Generated from operator/audioextract/api by `audio-extract crds --write crds`. Do not edit.\n"
Schema = dict[str, Any]

# Keywords a structural schema does not allow (or that mean nothing to Kubernetes).
_DROP = {"title", "default", "propertyNames", "$schema", "examples", "const", "discriminator"}


def _inline(node: Any, defs: Schema) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        # The field's own description and rules win over the referenced type's.
        target.update(siblings)
        return _inline(target, defs)
    return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}


def _clean(node: Any) -> Any:
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    any_of = node.get("anyOf")
    if isinstance(any_of, list) and any(opt == {"type": "null"} for opt in any_of):
        rest = [opt for opt in any_of if opt != {"type": "null"}]
        del node["anyOf"]
        if len(rest) == 1:
            inner = rest[0]
            merged = {**inner, **{k: v for k, v in node.items() if k != "x-kubernetes-validations"}}
            rules = inner.get("x-kubernetes-validations", []) + node.get(
                "x-kubernetes-validations", []
            )
            if rules:
                merged["x-kubernetes-validations"] = rules
            node = merged
        else:
            node["anyOf"] = rest
    if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(
        node["exclusiveMinimum"], bool
    ):
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    if isinstance(node.get("exclusiveMaximum"), int | float) and not isinstance(
        node["exclusiveMaximum"], bool
    ):
        node["maximum"] = node.pop("exclusiveMaximum")
        node["exclusiveMaximum"] = True
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    pattern_properties = node.pop("patternProperties", None)
    if pattern_properties:
        # Key patterns are not allowed in a structural schema: keys are checked by a CEL
        # rule on the map instead, and the value schema moves to additionalProperties.
        (node["additionalProperties"],) = pattern_properties.values()
    for key in _DROP:
        node.pop(key, None)
    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
    return {k: _clean(v) for k, v in node.items()}


def openapi_schema(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of one model, refs inlined."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema: Schema = _clean(_inline(raw, defs))
    return schema


def _root_schema(
    kind: str, spec: type[BaseModel], status: type[BaseModel], description: str
) -> Schema:
    return {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "API version: audioextract.dev/v1alpha1.",
            },
            "kind": {"type": "string", "description": f"Kind: {kind}."},
            # The API server refuses anything but the type here, a description included.
            "metadata": {"type": "object"},
            "spec": openapi_schema(spec),
            "status": openapi_schema(status),
        },
    }


def _column(name: str, path: str, kind: str = "string", description: str = "") -> dict[str, str]:
    col = {"name": name, "type": kind, "jsonPath": path}
    if description:
        col["description"] = description
    return col


def _crd(
    kind: str, plural: str, schema: Schema, columns: list[dict[str, str]], short_names: list[str]
) -> Schema:
    names: Schema = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "categories": [c.CATEGORY],
    }
    if short_names:
        names["shortNames"] = short_names
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{c.GROUP}",
            "labels": {"app.kubernetes.io/name": "audio-extract-operator"},
        },
        "spec": {
            "group": c.GROUP,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def batch_crd() -> Schema:
    """The Batch CustomResourceDefinition."""
    schema = _root_schema(
        c.BATCH_KIND,
        BatchSpec,
        BatchStatus,
        "A Batch: a list of audio extraction jobs and an optional webhook.",
    )
    columns = [
        _column("Phase", ".status.phase", description="Phase of the batch."),
        _column("Succeeded", ".status.succeeded", "integer", "Jobs that succeeded."),
        _column("Failed", ".status.failed", "integer", "Jobs that failed."),
        _column("Total", ".status.total", "integer", "Number of jobs."),
        _column("Age", ".metadata.creationTimestamp", "date"),
    ]
    return _crd(c.BATCH_KIND, c.BATCH_PLURAL, schema, columns, [])


def extraction_job_crd() -> Schema:
    """The ExtractionJob CustomResourceDefinition."""
    schema = _root_schema(
        c.JOB_KIND,
        ExtractionJobSpec,
        ExtractionJobStatus,
        "An ExtractionJob: one source video turned into one audio file.",
    )
    columns = [
        _column("Phase", ".status.phase", description="Phase of the job."),
        _column("Format", ".spec.output.format", description="Output format."),
        _column("Age", ".metadata.creationTimestamp", "date"),
    ]
    return _crd(c.JOB_KIND, c.JOB_PLURAL, schema, columns, ["ej"])


def all_crds() -> dict[str, Schema]:
    """Every CRD by its file name in ``crds/``."""
    crds = [batch_crd(), extraction_job_crd()]
    return {f"{crd['metadata']['name']}.yaml": crd for crd in crds}


def render(crd: Schema) -> str:
    """The CRD as the YAML text that is checked in."""
    return HEADER + yaml.safe_dump(crd, sort_keys=False, width=120, allow_unicode=True)


def check(directory: Path) -> list[str]:
    """File names under ``directory`` that differ from what the models generate."""
    stale = []
    for name, crd in all_crds().items():
        path = directory / name
        if not path.exists() or path.read_text() != render(crd):
            stale.append(str(path))
    return stale


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``audio-extract crds``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="DIR", type=Path, help="write the CRDs into DIR")
    group.add_argument(
        "--check",
        nargs="?",
        const=Path("crds"),
        type=Path,
        metavar="DIR",
        help="exit 1 when DIR (default: crds) differs from the models",
    )


def run(args: argparse.Namespace) -> int:
    """Print, write or check the CRDs."""
    if args.check is not None:
        stale = check(args.check)
        for path in stale:
            print(
                f"{path}: differs from the models; run `audio-extract crds --write {args.check}`",
                file=sys.stderr,
            )
        return 1 if stale else 0
    if args.write is not None:
        try:
            args.write.mkdir(parents=True, exist_ok=True)
            for name, crd in all_crds().items():
                (args.write / name).write_text(render(crd))
                print(args.write / name)
        except OSError as exc:
            # A bad flag exits 2 naming it, as every command does (docs/local.md).
            print(f"error: --write {args.write}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        return 0
    sys.stdout.write("---\n".join(render(crd) for crd in all_crds().values()))
    return 0
