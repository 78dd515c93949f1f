"""Run an object through the pydantic models and report errors in kubectl's notation."""

from typing import Any

from pydantic import ValidationError

from audioextract.api import Batch, ExtractionJob
from audioextract.api.validation import parse_input
from tests.support.schema import SchemaError, field_path


def model_for(obj: dict[str, Any]) -> type[Batch] | type[ExtractionJob]:
    """The model class for an object's kind."""
    return Batch if obj["kind"] == "Batch" else ExtractionJob


def pydantic_errors(obj: dict[str, Any]) -> list[SchemaError]:
    """Errors the models raise for ``obj`` (empty when valid)."""
    try:
        parse_input(model_for(obj), obj)
    except ValidationError as exc:
        return [
            SchemaError(field_path([p for p in err["loc"] if p != "[key]"]), err["msg"])
            for err in exc.errors()
        ]
    return []
