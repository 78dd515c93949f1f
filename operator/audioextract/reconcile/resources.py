"""Bounds on the worker's resources: what a job may ask for (docs/install.md).

The operator's settings give a minimum for requests, maxima for requests and
limits, and the resources that must be limited at all (memory by default: a job
cannot remove the worker's memory limit with ``limits: {}``). A job outside the bounds fails
with ``InvalidSpec`` naming the resource, before any Job is created.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$"
)

Quantities = Mapping[str, int | str]


class ResourceBoundsError(ValueError):
    """A job's resources are outside the operator's bounds."""


def parse_quantity(value: int | str) -> Decimal:
    """A Kubernetes quantity (``500m``, ``1Gi``, ``2``, ``1e3``) as a number."""
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    try:
        return Decimal(match[1]) * _SUFFIX[match[2] or ""]
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from exc


def _check_maxima(kind: str, values: Quantities, maxima: Mapping[str, str]) -> None:
    """Raise ResourceBoundsError for the first of ``values`` above its maximum."""
    for name, high in maxima.items():
        if name in values and parse_quantity(values[name]) > parse_quantity(high):
            raise ResourceBoundsError(
                f"resources.{kind}.{name}: {values[name]} is above the operator's maximum of {high}"
            )


@dataclass(frozen=True)
class ResourceBounds:
    """Minimum requests, maximum requests and limits, and the limits that must be set."""

    min_requests: Mapping[str, str] = field(default_factory=dict)
    max_requests: Mapping[str, str] = field(default_factory=dict)
    max_limits: Mapping[str, str] = field(default_factory=dict)
    required_limits: tuple[str, ...] = ()

    def check(self, requests: Quantities, limits: Quantities) -> None:
        """Raise ResourceBoundsError naming the first resource out of bounds."""
        for name, low in self.min_requests.items():
            if name not in requests or parse_quantity(requests[name]) < parse_quantity(low):
                raise ResourceBoundsError(
                    f"resources.requests.{name}: at least {low} required by the operator"
                )
        _check_maxima("requests", requests, self.max_requests)
        for name in self.required_limits:
            if name not in limits:
                cap = self.max_limits.get(name)
                most = f" (at most {cap})" if cap else ""
                raise ResourceBoundsError(
                    f"resources.limits.{name}: a limit is required by the operator{most}"
                )
        _check_maxima("limits", limits, self.max_limits)
        for name, request in requests.items():
            if name in limits and parse_quantity(request) > parse_quantity(limits[name]):
                raise ResourceBoundsError(
                    f"resources.requests.{name}: {request} is above its limit {limits[name]}"
                )
