"""Webhooks during a local run: the operator's owed events, signatures and delivery, unchanged.

The runner calls :meth:`Hooks.changed` on every status change; a background loop
derives the owed events from the current snapshot and delivers what is due, as the
operator does on every reconcile. At the end :meth:`Hooks.drain` keeps retrying on
the configured schedule within a time bound.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from audioextract.api.constants import WebhookEvent
from audioextract.api.spec import Webhook
from audioextract.api.status import WebhookStatus
from audioextract.webhooks.delivery import (
    DeliveryConfig,
    DeliveryOutcome,
    Dispatcher,
    Endpoint,
    Verdict,
)
from audioextract.webhooks.events import Event, Snapshot, owed_events

LOOP_ERROR_DELAY_SECONDS = 5.0

log = logging.getLogger(__name__)


@dataclass
class DrainReport:
    """What became of the owed events by the end of the run."""

    status: WebhookStatus
    failures: list[DeliveryOutcome] = field(default_factory=list)
    timed_out: bool = False


class Hooks:
    """Delivers one owner's webhook events while the run goes on."""

    def __init__(
        self,
        key: str,
        webhook: Webhook,
        secret: str,
        snapshot: Callable[[], Snapshot],
        on_outcome: Callable[[DeliveryOutcome], None] | None = None,
        download_url: Callable[[Event], str | None] | None = None,
    ) -> None:
        """``snapshot`` returns the current state; raises InvalidSecretError for a bad secret."""
        self.key = key
        self.events: list[WebhookEvent] | None = (
            [WebhookEvent(e) for e in webhook.events] if webhook.events is not None else None
        )
        self.endpoint = Endpoint.from_secret(webhook.url, secret)
        self.snapshot = snapshot
        self.status = WebhookStatus()
        self._download_url = download_url
        self._on_outcome = on_outcome
        self.dispatcher = Dispatcher(
            DeliveryConfig.from_env(),
            on_outcome=self._outcome,
            download_url=self._link if download_url is not None else None,
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failures: list[DeliveryOutcome] = []

    def _outcome(self, outcome: DeliveryOutcome) -> None:
        if outcome.verdict == Verdict.FAILED:
            self._failures.append(outcome)
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    async def _link(self, event: Event) -> str | None:
        assert self._download_url is not None
        # boto3's presigning is local computation, but keep it off the event loop anyway.
        return await asyncio.to_thread(self._download_url, event)

    def owed(self) -> list[Event]:
        """Every event the current state owes."""
        return owed_events(self.snapshot(), self.events)

    def changed(self) -> None:
        """Wake the delivery loop: the state changed."""
        self._wake.set()

    def start(self) -> None:
        """Start the background delivery loop."""
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                report = await self.dispatcher.deliver_pending(
                    self.key, self.endpoint, self.owed(), self.status
                )
            except Exception:
                # Delivery must never stop the run; the final drain tries again.
                log.exception("webhook delivery failed unexpectedly")
                next_in: float | None = LOOP_ERROR_DELAY_SECONDS
            else:
                self.status = report.status
                next_in = report.next_attempt_in
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), next_in)

    async def drain(self, seconds: float) -> DrainReport:
        """Stop the loop, then deliver what is still owed, for at most ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        if self._task is not None:
            # Let a delivery in flight finish and record its outcome: cancelling it
            # after the receiver got the request would send the same event again.
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), seconds)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        owed = self.owed()
        timed_out = False
        seconds = max(0.0, deadline - loop.time())

        def persist(status: WebhookStatus) -> None:
            self.status = status

        try:
            async with asyncio.timeout(seconds):
                await self.dispatcher.drain(
                    self.key, self.endpoint, owed, self.status, persist=persist
                )
        except TimeoutError:
            timed_out = True
        return DrainReport(self.status, list(self._failures), timed_out)
