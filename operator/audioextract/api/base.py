"""The base model and schema helpers shared by every API type."""

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# ASCII control characters (NUL included): never valid in a name, path or URL here.
CONTROL = r"\x00-\x1f\x7f"
HTTP_URL = rf"^https?://[^\s{CONTROL}]+$"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry; the same rule is enforced in pydantic too."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def rules(*entries: dict[str, str]) -> dict[str, Any]:
    """JSON-schema extra that attaches CEL rules to a model's object schema."""
    return {"x-kubernetes-validations": list(entries)}


class Model(BaseModel):
    """camelCase in YAML and JSON, snake_case in Python; unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=False,
        # Validators are built on first use: a worker validates one Task and never
        # pays for the Batch, ExtractionJob and status models it does not use.
        defer_build=True,
        # JSON allows Infinity and NaN in Python's parser; no field here means them.
        allow_inf_nan=False,
    )

    def dump(self) -> dict[str, Any]:
        """The object as Kubernetes sees it: camelCase, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
