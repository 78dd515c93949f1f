"""Webhooks (DESIGN §5): owed events, Standard Webhooks signatures, delivery, bookkeeping.

No kopf and no Kubernetes client here: the operator and the local runner both use it.

Typical use, on every change of the owner or when ``next_attempt_in`` has elapsed::

    owed = owed_events(snapshot, spec.webhook.events)
    endpoint = Endpoint.from_secret(spec.webhook.url, secret_value)
    report = await dispatcher.deliver_pending(owner.uid, endpoint, owed, status.webhook)
    patch_status(state.status_patch(report.status))
    for failure in report.failures: ...  # a Kubernetes Event and a metric
"""

from audioextract.webhooks import state
from audioextract.webhooks.delivery import (
    DEFAULT_SCHEDULE,
    DeliveryConfig,
    DeliveryOutcome,
    DeliveryReport,
    Dispatcher,
    DownloadUrlHook,
    Endpoint,
    Verdict,
)
from audioextract.webhooks.events import (
    DEFAULT_EVENTS,
    Child,
    Event,
    Owner,
    Snapshot,
    owed_events,
)
from audioextract.webhooks.signing import InvalidSecretError, parse_secrets, sign, signed_headers

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_SCHEDULE",
    "Child",
    "DeliveryConfig",
    "DeliveryOutcome",
    "DeliveryReport",
    "Dispatcher",
    "DownloadUrlHook",
    "Endpoint",
    "Event",
    "InvalidSecretError",
    "Owner",
    "Snapshot",
    "Verdict",
    "owed_events",
    "parse_secrets",
    "sign",
    "signed_headers",
    "state",
]
