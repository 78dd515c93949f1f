"""Delivery bookkeeping kept in the owner's status (``status.webhook``).

Which events are owed is derived from the snapshot (``events.owed_events``); which of
them need no further delivery is the ``settled`` id list persisted here. Together they
let a restarted sender deliver exactly what is owed and not yet acknowledged. The
counters and ``lastError`` are a summary for people; ``pending`` is recomputed on
every update.

The functions are pure and return new ``WebhookStatus`` objects.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from audioextract.api.status import WebhookStatus
from audioextract.webhooks.events import Event

# The CRD caps status.webhook.settled; ids not owed any more are dropped first.
MAX_SETTLED = 2048
MAX_ERROR_LENGTH = 1024


def load(raw: WebhookStatus | Mapping[str, Any] | None) -> WebhookStatus:
    """The persisted webhook status from a status dict (camelCase) or model; empty if absent."""
    if raw is None:
        return WebhookStatus()
    if isinstance(raw, WebhookStatus):
        return raw
    return WebhookStatus.model_validate(dict(raw))


def settled_ids(status: WebhookStatus) -> set[str]:
    """Ids of events that need no further delivery."""
    return set(status.settled or ())


def unsettled(owed: Sequence[Event], status: WebhookStatus) -> list[Event]:
    """The owed events still to deliver, in the order they are owed."""
    done = settled_ids(status)
    return [event for event in owed if event.id not in done]


def settle(
    status: WebhookStatus, event_id: str, *, delivered: bool, error: str | None = None
) -> WebhookStatus:
    """Record that an event needs no further delivery: acknowledged, or given up on."""
    settled = list(status.settled or ())
    if event_id in settled:
        return status
    settled.append(event_id)
    update: dict[str, Any] = {"settled": settled}
    if delivered:
        update["delivered"] = status.delivered + 1
    else:
        update["failed"] = status.failed + 1
    if error:
        update["last_error"] = truncate(error)
    return status.model_copy(update=update)


def note_error(status: WebhookStatus, error: str) -> WebhookStatus:
    """Record the latest delivery error (an attempt that will be retried, for instance)."""
    return status.model_copy(update={"last_error": truncate(error)})


def summarize(status: WebhookStatus, owed: Sequence[Event]) -> WebhookStatus:
    """``pending`` recomputed from what is owed, and ``settled`` kept within its cap.

    Ids that are not owed any more (a superseded attempt's events) are kept while
    there is room, so that a snapshot briefly missing a child never causes a resend;
    past the cap the oldest of them go first.
    """
    owed_ids = {event.id for event in owed}
    settled = list(dict.fromkeys(status.settled or ()))
    if len(settled) > MAX_SETTLED:
        stale = [i for i in settled if i not in owed_ids]
        drop = set(stale[: len(settled) - MAX_SETTLED])
        settled = [i for i in settled if i not in drop][-MAX_SETTLED:]
    done = set(settled)
    pending = sum(1 for event_id in owed_ids if event_id not in done)
    return status.model_copy(update={"settled": settled or None, "pending": pending})


def status_patch(status: WebhookStatus) -> dict[str, Any]:
    """A merge patch for the owner's status subresource: ``{"webhook": {...}}``.

    ``lastError`` and ``goneUrl`` are written as null when unset so that a merge
    patch clears a stale value.
    """
    body = status.dump()
    body.setdefault("lastError", None)
    body.setdefault("goneUrl", None)
    body.setdefault("settled", [])
    return {"webhook": body}


def truncate(text: str, limit: int = MAX_ERROR_LENGTH) -> str:
    """``text`` cut to ``limit`` characters, marked when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def merge(persisted: WebhookStatus, remembered: WebhookStatus | None) -> WebhookStatus:
    """The persisted status, caught up with what this process settled but may not see yet.

    A sender often gets its owner from a watch cache that does not yet show its own
    last status patch; merging keeps it from resending what it already settled or
    from moving the counters backwards. Settled ids are unioned and counters only grow.
    """
    if remembered is None:
        return persisted
    settled = list(dict.fromkeys([*(persisted.settled or ()), *(remembered.settled or ())]))
    return persisted.model_copy(
        update={
            "settled": settled or None,
            "delivered": max(persisted.delivered, remembered.delivered),
            "failed": max(persisted.failed, remembered.failed),
            "last_error": remembered.last_error or persisted.last_error,
            "gone_url": remembered.gone_url or persisted.gone_url,
        }
    )
