"""Webhook delivery for Batches and standalone ExtractionJobs, off the reconcile path.

Which events are owed is derived by every reconcile's plan from the observed state
(:func:`audioextract.webhooks.owed_events`); delivery runs in background tasks, one
per owner at a time, so a slow or dead receiver never delays reconciling and never
blocks a Batch from finishing. A task's outcome is kept in memory and written into
``status.webhook`` by the owner's next reconcile, so the Batch's (or ExtractionJob's) status keeps
one writer. What was delivered but not yet persisted when the operator stops is sent
again after the restart, with the same ``webhook-id`` (at-least-once).
"""

import asyncio
import base64
import logging
from collections.abc import Callable, Sequence
from typing import Any

from audioextract.api.spec import Webhook
from audioextract.api.status import WebhookStatus
from audioextract.handlers import events
from audioextract.handlers.kube import Kube
from audioextract.webhooks import DeliveryConfig, Dispatcher, Endpoint, Event, state
from audioextract.webhooks.events import Owner, Snapshot, owed_events
from audioextract.webhooks.signing import InvalidSecretError

log = logging.getLogger(__name__)

# After a delivery task failed as a whole (no Secret, an API error): retry after this, doubling.
ERROR_RETRY_SECONDS = 2.0
ERROR_RETRY_MAX_SECONDS = 300.0
DEFAULT_SECRET_KEY = "secret"  # noqa: S105 - the name of a key in a Secret, not a password


class Notifier:
    """Owns the Dispatcher, the per-owner delivery tasks and their unsaved outcomes."""

    def __init__(
        self, kube: Kube, wake: Callable[[Owner], None], dispatcher: Dispatcher | None = None
    ) -> None:
        """Deliver with ``dispatcher`` (configured from AUDIOEXTRACT_WEBHOOK_*).

        ``wake`` asks for a reconcile of the owner once a delivery task ends.
        """
        self.kube = kube
        self.wake = wake
        self.dispatcher = dispatcher or Dispatcher(DeliveryConfig.from_env())
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._unsaved: dict[str, WebhookStatus] = {}
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}

    def status(
        self, uid: str, persisted: WebhookStatus | None, owed: Sequence[Event]
    ) -> WebhookStatus:
        """The webhook status to write: persisted, caught up with delivery results, summarised."""
        merged = state.merge(state.load(persisted), self._unsaved.get(uid))
        return state.summarize(merged, owed)

    def owed(self, snapshot: Snapshot, webhook: Webhook) -> list[Event]:
        """Events the snapshot owes to the webhook."""
        return owed_events(snapshot, webhook.events)

    def unsaved(self, uid: str) -> WebhookStatus | None:
        """Delivery outcomes for ``uid`` not yet written into its status (memory only)."""
        return self._unsaved.get(uid)

    def saved(self, uid: str, written: WebhookStatus) -> None:
        """Forget an outcome once the status that contains it has been written."""
        unsaved = self._unsaved.get(uid)
        if unsaved is not None and set(unsaved.settled or ()) <= set(written.settled or ()):
            self._unsaved.pop(uid, None)

    def schedule(
        self,
        owner: Owner,
        obj: dict[str, Any],
        webhook: Webhook,
        owed: Sequence[Event],
        current: WebhookStatus,
    ) -> None:
        """Start a delivery task for ``owner`` when something is unsettled and none is running."""
        if not state.unsettled(owed, current):
            return
        task = self._tasks.get(owner.uid)
        if task is not None and not task.done():
            return
        if asyncio.get_running_loop().time() < self._retry_at.get(owner.uid, 0.0):
            return
        self._tasks[owner.uid] = asyncio.create_task(
            self._deliver(owner, obj, webhook, list(owed), current)
        )

    async def _endpoint(self, owner: Owner, webhook: Webhook) -> Endpoint:
        ref = webhook.secret_ref
        secret = await self.kube.read_secret(owner.namespace, ref.name)
        key = ref.key or DEFAULT_SECRET_KEY
        data = (secret.get("data") or {}).get(key)
        if data is None:
            raise InvalidSecretError(f"Secret {ref.name} has no key {key!r}")
        return Endpoint.from_secret(webhook.url, base64.b64decode(data))

    async def _deliver(
        self,
        owner: Owner,
        obj: dict[str, Any],
        webhook: Webhook,
        owed: list[Event],
        current: WebhookStatus,
    ) -> None:
        try:
            try:
                endpoint = await self._endpoint(owner, webhook)
            except (InvalidSecretError, ValueError) as exc:
                self._unsaved[owner.uid] = state.note_error(current, f"webhook secret: {exc}")
                self._back_off(owner)
                return
            report = await self.dispatcher.deliver_pending(owner.uid, endpoint, owed, current)
            self._failures.pop(owner.uid, None)
            self._unsaved[owner.uid] = report.status
            for failure in report.failures:
                await events.post(
                    self.kube,
                    obj,
                    events.WARNING,
                    events.WEBHOOK_FAILED,
                    f"{failure.event_type} {failure.event_id} to {failure.url}: {failure.error}",
                )
        except Exception as exc:
            # Secret not found, API errors: keep the reason in status, try again later.
            log.warning("webhook delivery for %s/%s: %s", owner.namespace, owner.name, exc)
            self._unsaved[owner.uid] = state.note_error(current, f"webhook delivery: {exc}")
            self._back_off(owner)
        finally:
            self.wake(owner)

    def _back_off(self, owner: Owner) -> None:
        """No new delivery task for ``owner`` for a while (doubling); then wake it again.

        A missing Secret or a refused read would otherwise start a task on every
        reconcile that the task's own end triggers: a loop at the API server's pace.
        """
        failures = self._failures.get(owner.uid, 0)
        self._failures[owner.uid] = failures + 1
        delay = min(ERROR_RETRY_MAX_SECONDS, ERROR_RETRY_SECONDS * 2**failures)
        loop = asyncio.get_running_loop()
        self._retry_at[owner.uid] = loop.time() + delay
        loop.call_later(delay, self.wake, owner)

    async def close(self) -> None:
        """Stop the running delivery tasks (their events are resent after a restart)."""
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            try:
                await task
            except (asyncio.CancelledError, Exception):
                log.debug("delivery task ended while stopping", exc_info=True)
