"""Worker resource bounds: what a job may ask for, and the quantity arithmetic behind it."""

from decimal import Decimal

import pytest

from audioextract.api.spec import ExtractionJobSpec
from audioextract.reconcile.manifest import WorkerConfig, check_resources
from audioextract.reconcile.resources import ResourceBounds, ResourceBoundsError, parse_quantity
from audioextract.settings import Settings

CONFIG = Settings().worker_config()


def _spec(resources: dict[str, object] | None) -> ExtractionJobSpec:
    body: dict[str, object] = {"source": {"url": "https://cdn.example.com/a.mp4"}}
    if resources is not None:
        body["resources"] = resources
    return ExtractionJobSpec.model_validate(body)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        (2, Decimal(2)),
        ("1Gi", Decimal(2**30)),
        ("1G", Decimal(10**9)),
        ("1.5Mi", Decimal(1.5 * 2**20)),
        ("1e3", Decimal(1000)),
        ("100k", Decimal(100_000)),
    ],
)
def test_parse_quantity(text: str | int, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_defaults_are_within_the_default_bounds() -> None:
    check_resources(_spec(None), CONFIG)
    check_resources(_spec({"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}}), CONFIG)


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"limits": {}}, "resources.limits.memory: a limit is required"),
        ({"limits": {"cpu": "1"}}, "resources.limits.memory: a limit is required"),
        ({"limits": {"cpu": "32", "memory": "1Gi"}}, "resources.limits.cpu: 32 is above"),
        ({"limits": {"memory": "64Gi"}}, "resources.limits.memory: 64Gi is above"),
        ({"requests": {"cpu": "64"}}, "resources.requests.cpu: 64 is above"),
        ({"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}, "above its limit"),
    ],
)
def test_out_of_bounds_is_named(resources: dict[str, object], field: str) -> None:
    with pytest.raises(ResourceBoundsError, match=field):
        check_resources(_spec(resources), CONFIG)


def test_minimum_requests() -> None:
    config = WorkerConfig(
        image="w", bounds=ResourceBounds(min_requests={"memory": "128Mi"}, max_limits={})
    )
    check_resources(_spec({"requests": {"memory": "256Mi"}}), config)
    with pytest.raises(ResourceBoundsError, match="at least 128Mi"):
        check_resources(_spec({"requests": {"memory": "64Mi"}}), config)
    with pytest.raises(ResourceBoundsError, match=r"requests\.memory"):
        check_resources(_spec({"requests": {}}), config)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIOEXTRACT_MAX_LIMITS", '{"memory": "2Gi"}')
    config = Settings().worker_config()
    with pytest.raises(ResourceBoundsError, match="above the operator's maximum of 2Gi"):
        check_resources(_spec({"limits": {"memory": "3Gi"}}), config)


def test_private_network_settings_reach_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().worker_config().source_private_networks == "allow"
    monkeypatch.setenv("AUDIOEXTRACT_SOURCE_PRIVATE_NETWORKS", "deny")
    assert Settings().worker_config().source_private_networks == "deny"
    monkeypatch.setenv("AUDIOEXTRACT_SOURCE_PRIVATE_NETWORKS", "allow")
    monkeypatch.setenv("AUDIOEXTRACT_DENY_PRIVATE_NETWORKS", "true")
    assert Settings().worker_config().source_private_networks == "deny"


def test_defaults_outside_the_bounds_are_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIOEXTRACT_DEFAULT_LIMITS", "{}")
    with pytest.raises(ValueError, match="AUDIOEXTRACT_DEFAULT_REQUESTS/LIMITS"):
        Settings()
