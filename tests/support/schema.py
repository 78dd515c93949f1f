"""Validate objects against a generated CRD the way the API server does, without one.

Three checks make up one engine: the OpenAPI schema (jsonschema, Draft 4 semantics as
in OpenAPI 3.0), the CEL rules (``x-kubernetes-validations``, evaluated with
cel-python) and unknown fields (what structural pruning and strict field validation
reject).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema

Schema = dict[str, Any]


@dataclass(frozen=True)
class SchemaError:
    """One rejection: the field path in kubectl's notation and the message."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def field_path(parts: Any) -> str:
    """['spec', 'jobs', 0, 'name'] -> 'spec.jobs[0].name'."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _schema_errors(schema: Schema, obj: Any) -> Iterator[SchemaError]:
    validator = jsonschema.Draft4Validator(schema)
    for error in validator.iter_errors(obj):
        parts = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [p for p in error.validator_value if p not in error.instance]
            parts += missing[:1]
        yield SchemaError(field_path(parts), error.message)


_env = celpy.Environment()
_programs: dict[str, Any] = {}


def _sum(values: Any) -> Any:
    """Kubernetes' ``<list<int>>.sum()`` (its CEL list library), which cel-python lacks."""
    return celpy.celtypes.IntType(sum(int(v) for v in values))


# The Kubernetes CEL library functions the rules use, beyond standard CEL.
_K8S_FUNCTIONS = {"sum": _sum}


def cel_value(expression: str, value: Any) -> Any:
    """``expression`` evaluated with ``self`` bound to ``value``, as a rule sees it."""
    program = _programs.get(expression)
    if program is None:
        program = _programs[expression] = _env.program(
            _env.compile(expression), functions=_K8S_FUNCTIONS
        )
    return program.evaluate({"self": celpy.json_to_cel(value)})


def _cel(rule: str, value: Any) -> bool:
    return bool(cel_value(rule, value))


def _walk(schema: Schema, value: Any, parts: list[Any], cel: bool = True) -> Iterator[SchemaError]:
    for rule in schema.get("x-kubernetes-validations", []) if cel else []:
        if not _cel(rule["rule"], value):
            extra = (
                rule.get("fieldPath", "").lstrip(".").split(".") if rule.get("fieldPath") else []
            )
            yield SchemaError(field_path(parts + extra), rule["message"])
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None:
            for key, item in value.items():
                if key not in props:
                    yield SchemaError(field_path([*parts, key]), f'unknown field "{key}"')
                else:
                    yield from _walk(props[key], item, [*parts, key], cel)
        elif isinstance(schema.get("additionalProperties"), dict):
            for key, item in value.items():
                yield from _walk(schema["additionalProperties"], item, [*parts, key], cel)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        yield from _list_type_errors(schema, value, parts)
        for index, item in enumerate(value):
            yield from _walk(schema["items"], item, [*parts, index], cel)


def _list_type_errors(schema: Schema, value: list[Any], parts: list[Any]) -> Iterator[SchemaError]:
    """Repeated keys of a ``map`` list (or items of a ``set``), as the API server words them."""
    list_type = schema.get("x-kubernetes-list-type")
    if list_type not in ("map", "set"):
        return
    seen: list[Any] = []
    for index, item in enumerate(value):
        if list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            key: Any = {k: item.get(k) for k in keys} if isinstance(item, dict) else item
        else:
            key = item
        if key in seen:
            yield SchemaError(field_path([*parts, index]), f"Duplicate value: {key!r}")
        seen.append(key)


def validate(crd: Schema, obj: Any) -> list[SchemaError]:
    """Every error the schema, the CEL rules and the unknown-field check find in ``obj``."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    errors = list(_schema_errors(schema, obj))
    # The API server evaluates CEL only on values that passed the schema checks.
    if not errors:
        errors = list(_walk(schema, obj, []))
    else:
        # Unknown fields are still reported; CEL would see ill-typed values, so it is skipped.
        errors += list(_walk(schema, obj, [], cel=False))
    return errors
