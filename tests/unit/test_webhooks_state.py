"""Delivery bookkeeping in status.webhook, and the delivery settings that need no network."""

import email.utils

import pytest

from audioextract.api.constants import WebhookEvent
from audioextract.api.status import WebhookStatus
from audioextract.webhooks import state
from audioextract.webhooks.delivery import (
    DEFAULT_SCHEDULE,
    DeliveryConfig,
    parse_duration,
    parse_retry_after,
    parse_schedule,
    redact,
)
from audioextract.webhooks.events import Event


def ev(i: int) -> Event:
    return Event(
        id=f"msg_{i}",
        type=WebhookEvent.JOB_COMPLETED,
        job=str(i),
        payload={"type": "job.completed", "timestamp": "t", "data": {}},
    )


def test_settle_counts_once_and_keeps_the_last_error() -> None:
    status = WebhookStatus()
    status = state.settle(status, "msg_1", delivered=True)
    status = state.settle(status, "msg_1", delivered=True)
    status = state.settle(status, "msg_2", delivered=False, error="HTTP 500")
    assert (status.delivered, status.failed, status.settled) == (1, 1, ["msg_1", "msg_2"])
    assert status.last_error == "HTTP 500"
    assert state.unsettled([ev(1), ev(2), ev(3)], status) == [ev(3)]
    assert state.summarize(status, [ev(1), ev(2), ev(3)]).pending == 1


def test_summarize_keeps_settled_within_the_cap_dropping_ids_no_longer_owed_first() -> None:
    old = [f"msg_old{i}" for i in range(state.MAX_SETTLED)]
    owed = [ev(i) for i in range(10)]
    # settle() appends without validation, so the list can pass the cap until summarize.
    status = WebhookStatus().model_copy(update={"settled": [*old, *(e.id for e in owed)]})
    out = state.summarize(status, owed)
    assert out.settled is not None
    assert len(out.settled) == state.MAX_SETTLED
    assert {e.id for e in owed} <= set(out.settled)
    assert "msg_old0" not in out.settled  # the oldest stale ids go first
    assert out.pending == 0


def test_load_and_patch_round_trip() -> None:
    raw = {"delivered": 2, "pending": 1, "failed": 0, "settled": ["msg_1"], "lastError": "x"}
    status = state.load(raw)
    assert status.last_error == "x"
    assert state.load(None) == WebhookStatus()
    patch = state.status_patch(status.model_copy(update={"last_error": None}))
    # A merge patch must null what was cleared, or the stale value stays.
    assert patch == {
        "webhook": {
            "delivered": 2,
            "pending": 1,
            "failed": 0,
            "settled": ["msg_1"],
            "lastError": None,
            "goneUrl": None,
        }
    }


def test_merge_catches_up_a_stale_status() -> None:
    remembered = WebhookStatus(delivered=2, settled=["msg_1", "msg_2"], last_error="e")
    stale = WebhookStatus(delivered=1, settled=["msg_1"])
    merged = state.merge(stale, remembered)
    assert merged.settled == ["msg_1", "msg_2"]
    assert merged.delivered == 2
    assert state.merge(stale, None) is stale


def test_truncate() -> None:
    assert state.truncate("x" * 2000) == "x" * 1023 + "…"
    assert state.truncate("short") == "short"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5), ("2m", 120), ("1h", 3600), ("500ms", 0.5), ("1.5", 1.5), (" 30S ", 30)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5s", "5d"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_config_from_env() -> None:
    assert DeliveryConfig.from_env({}) == DeliveryConfig()
    assert (
        DeliveryConfig().schedule
        == DEFAULT_SCHEDULE
        == parse_schedule("5s,30s,2m,10m,30m,1h,2h,4h")
    )
    config = DeliveryConfig.from_env(
        {
            "AUDIOEXTRACT_WEBHOOK_RETRY_SCHEDULE": "1s, 2s",
            "AUDIOEXTRACT_WEBHOOK_CONNECT_TIMEOUT": "2s",
            "AUDIOEXTRACT_WEBHOOK_TIMEOUT": "10s",
            "AUDIOEXTRACT_WEBHOOK_MAX_RETRY_AFTER": "5m",
            "AUDIOEXTRACT_WEBHOOK_CONCURRENCY": "3",
        }
    )
    assert config == DeliveryConfig(
        schedule=(1, 2), connect_timeout=2, timeout=10, max_retry_after=300, max_concurrency=3
    )
    assert config.max_attempts == 3


def test_backoff_is_full_jitter_within_the_schedule_and_bounded() -> None:
    config = DeliveryConfig(schedule=(5, 30, 120))
    assert config.backoff(1, lambda: 1.0) == 5
    assert config.backoff(2, lambda: 0.5) == 15
    assert config.backoff(3, lambda: 0.0) == 0
    assert config.backoff(4, lambda: 1.0) is None
    assert config.backoff(0, lambda: 1.0) is None
    default = DeliveryConfig()
    worst = sum(default.backoff(i, lambda: 1.0) or 0 for i in range(1, default.max_attempts + 1))
    assert worst == sum(DEFAULT_SCHEDULE) < 8 * 3600


def test_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == 90
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now) == 0
    assert parse_retry_after("whenever", now) is None
    assert parse_retry_after(None, now) is None


def test_redact() -> None:
    assert redact("https://user:pw@hooks.example.com:8443/a/b?token=x#f") == (
        "https://hooks.example.com:8443/a/b"
    )
    assert redact("http://[::1]:80/x") == "http://[::1]:80/x"
