"""Webhook delivery over HTTP: at-least-once, with retries, never blocking the owner.

The caller (the operator, or the local runner) derives the owed events from a
snapshot, reads the persisted ``WebhookStatus`` and calls
:meth:`Dispatcher.deliver_pending`. That makes at most one attempt per due event and
returns the status to persist, one :class:`DeliveryOutcome` per attempt or
settlement, and when to call again. Retry times live in memory only: after a restart,
every pending event is simply attempted again (its schedule starts over), with the
same ``webhook-id``.

Rules (docs/webhooks.md):

- 2xx is success; anything else, a timeout or a connection error is a failed attempt,
  retried on the schedule with full jitter; ``Retry-After`` (seconds or an HTTP date)
  on a failed response postpones the next attempt, capped.
- 3xx is a failed attempt: redirects are never followed.
- 410 Gone settles the event as failed and stops delivery to that URL for this owner:
  every further event settles as failed without a request.
- The URL guard resolves the host once per call and refuses blocked addresses before
  any connection; a refused URL settles the due events as failed. Connections go to
  the pinned address with the URL's host name for ``Host`` and TLS (SNI and
  certificate checks).
"""

import asyncio
import email.utils
import inspect
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from audioextract.api.constants import WebhookEvent
from audioextract.api.status import WebhookStatus
from audioextract.urlguard import BlockedAddressError, GuardPolicy, Purpose, check_url, redact_url
from audioextract.webhooks import state
from audioextract.webhooks.events import Event
from audioextract.webhooks.signing import parse_secrets, signed_headers

log = logging.getLogger(__name__)

# 5s, 30s, 2m, 10m, 30m, 1h, 2h, 4h: nine attempts over at most ~7h50m.
DEFAULT_SCHEDULE: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 7200, 14400)
SCHEDULE_ENV = "AUDIOEXTRACT_WEBHOOK_RETRY_SCHEDULE"
CONNECT_TIMEOUT_ENV = "AUDIOEXTRACT_WEBHOOK_CONNECT_TIMEOUT"
TIMEOUT_ENV = "AUDIOEXTRACT_WEBHOOK_TIMEOUT"
MAX_RETRY_AFTER_ENV = "AUDIOEXTRACT_WEBHOOK_MAX_RETRY_AFTER"
CONCURRENCY_ENV = "AUDIOEXTRACT_WEBHOOK_CONCURRENCY"
USER_AGENT = "audio-extract-operator-webhooks/1"

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from ``"500ms"``, ``"5s"``, ``"2m"``, ``"1h"`` or a bare number of seconds."""
    value = text.strip().lower()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if value.endswith(unit):
            number, scale = value[: -len(unit)], _UNITS[unit]
            break
    else:
        number, scale = value, 1.0
    try:
        seconds = float(number) * scale
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a duration such as 30s, 2m or 1h") from exc
    if seconds < 0:
        raise ValueError(f"{text!r}: a duration cannot be negative")
    return seconds


def parse_schedule(text: str) -> tuple[float, ...]:
    """Retry delays from a comma-separated list of durations, e.g. ``"5s,30s,2m"``."""
    return tuple(parse_duration(part) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class DeliveryConfig:
    """How hard to try. ``schedule[i]`` is the ceiling of the delay after failed attempt i+1."""

    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    connect_timeout: float = 5.0
    timeout: float = 15.0
    max_retry_after: float = 3600.0
    max_concurrency: int = 8
    user_agent: str = USER_AGENT

    @property
    def max_attempts(self) -> int:
        """Attempts per event before it is given up on: the first plus one per delay."""
        return len(self.schedule) + 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "DeliveryConfig":
        """The configuration from AUDIOEXTRACT_WEBHOOK_* variables; unset ones keep defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get(SCHEDULE_ENV, "").strip():
            values["schedule"] = parse_schedule(env[SCHEDULE_ENV])
        for name, attr in (
            (CONNECT_TIMEOUT_ENV, "connect_timeout"),
            (TIMEOUT_ENV, "timeout"),
            (MAX_RETRY_AFTER_ENV, "max_retry_after"),
        ):
            if env.get(name, "").strip():
                values[attr] = parse_duration(env[name])
        if env.get(CONCURRENCY_ENV, "").strip():
            values["max_concurrency"] = max(1, int(env[CONCURRENCY_ENV]))
        return cls(**values)

    def backoff(
        self, failed_attempts: int, rng: Callable[[], float] = random.random
    ) -> float | None:
        """Delay before the next attempt after ``failed_attempts`` failures; None when exhausted.

        Full jitter: uniform between zero and the schedule's entry, so that events
        failing together do not retry together.
        """
        if failed_attempts < 1 or failed_attempts > len(self.schedule):
            return None
        return rng() * self.schedule[failed_attempts - 1]


@dataclass(frozen=True)
class Endpoint:
    """A receiver: its URL and the HMAC keys (several during a rotation)."""

    url: str
    keys: tuple[bytes, ...] = field(repr=False)

    @classmethod
    def from_secret(cls, url: str, secret: str | bytes) -> "Endpoint":
        """An endpoint from the Secret's value; raises InvalidSecretError for a bad value."""
        return cls(url=url, keys=tuple(parse_secrets(secret)))


class Verdict(StrEnum):
    """What became of one event in one call."""

    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass(frozen=True)
class DeliveryOutcome:
    """One attempt or settlement, for Kubernetes Events, metrics and logs.

    ``verdict`` FAILED is final: the event will not be sent again (the operator turns
    it into a Kubernetes Event and a metric). ``status_code`` is None when no
    response was received; ``latency_seconds`` is None when no request was made.
    """

    event_id: str
    event_type: WebhookEvent
    job: str | None
    url: str
    verdict: Verdict
    attempt: int
    status_code: int | None = None
    error: str | None = None
    latency_seconds: float | None = None
    next_attempt_in: float | None = None

    @property
    def final(self) -> bool:
        """True when the event needs no further delivery (delivered or given up)."""
        return self.verdict != Verdict.RETRYING


@dataclass(frozen=True)
class DeliveryReport:
    """What one call did: the status to persist, the outcomes, and when to call again."""

    status: WebhookStatus
    outcomes: list[DeliveryOutcome]
    next_attempt_in: float | None

    @property
    def failures(self) -> list[DeliveryOutcome]:
        """Outcomes of events given up on in this call."""
        return [o for o in self.outcomes if o.verdict == Verdict.FAILED]


DownloadUrlHook = Callable[[Event], Awaitable[str | None]]
OutcomeCallback = Callable[[DeliveryOutcome], None]
AddressResolver = Callable[[str, GuardPolicy], str]
PersistCallback = Callable[[WebhookStatus], Awaitable[None] | None]


redact = redact_url


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class PinnedResolver(AbstractResolver):
    """Resolves the one host of a delivery to the address the URL guard approved."""

    def __init__(self, host: str, address: str) -> None:
        """Pin ``host`` to ``address``; any other name is refused."""
        self._host = host.lower()
        self._address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The pinned address; a different host (which a redirect could ask for) is refused."""
        if host.lower() != self._host:
            raise OSError(f"host {host!r} is not the webhook host")
        fam = socket.AF_INET6 if ":" in self._address else socket.AF_INET
        return [
            ResolveResult(
                hostname=host, host=self._address, port=port, family=fam, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        """Nothing to release."""


@dataclass
class _Track:
    """In-memory retry state of one pending event."""

    failed_attempts: int = 0
    due: float = 0.0


@dataclass(frozen=True)
class _Attempt:
    status_code: int | None = None
    reason: str = ""
    error: str | None = None
    retry_after: float | None = None
    latency: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Dispatcher:
    """Delivers owed events to receivers; one per process, shared by all owners.

    ``key`` identifies the owner (its uid is a good key). Calls for the same key are
    serialised; different keys run independently.
    """

    def __init__(
        self,
        config: DeliveryConfig | None = None,
        *,
        policy: GuardPolicy | None = None,
        download_url: DownloadUrlHook | None = None,
        on_outcome: OutcomeCallback | None = None,
        resolve_address: AddressResolver = check_url,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        """Configure delivery.

        ``policy`` defaults to the webhook policy of the environment (private ranges
        refused unless ``AUDIOEXTRACT_WEBHOOK_PRIVATE_NETWORKS=allow``). ``download_url`` is called
        before each ``job.completed`` attempt and may return a presigned GET URL to
        add as ``data.downloadUrl`` (it is sent, never stored). ``on_outcome`` is
        called for every outcome as it happens. ``resolve_address`` checks a URL with
        the guard and returns the address to connect to. ``ssl_context`` replaces
        the system's trust store (a receiver behind a private CA); certificates are
        always verified against the URL's host name.
        """
        self.config = config or DeliveryConfig()
        self.policy = (
            policy if policy is not None else GuardPolicy.from_env(purpose=Purpose.WEBHOOKS)
        )
        self._download_url = download_url
        self._on_outcome = on_outcome
        self._resolve_address = resolve_address
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng
        self._tracks: dict[str, dict[str, _Track]] = {}
        self._remembered: dict[str, WebhookStatus] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def forget(self, key: str) -> None:
        """Drop everything kept in memory for an owner (call when it is deleted)."""
        self._tracks.pop(key, None)
        self._remembered.pop(key, None)
        self._locks.pop(key, None)

    async def deliver_pending(
        self,
        key: str,
        endpoint: Endpoint,
        owed: Sequence[Event],
        status: WebhookStatus | Mapping[str, Any] | None,
    ) -> DeliveryReport:
        """Attempt every owed event that is unsettled and due; return what to persist.

        ``status`` is the persisted ``status.webhook`` (model, camelCase dict or None).
        The returned report's ``status`` goes back into the owner's status
        (``state.status_patch``); ``next_attempt_in`` says when to call again (None:
        nothing pending).
        """
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            report = await self._deliver(key, endpoint, owed, state.load(status))
        self._remembered[key] = report.status
        return report

    async def drain(
        self,
        key: str,
        endpoint: Endpoint,
        owed: Sequence[Event],
        status: WebhookStatus | Mapping[str, Any] | None,
        *,
        persist: PersistCallback | None = None,
    ) -> DeliveryReport:
        """Call :meth:`deliver_pending` until nothing is pending, sleeping between calls.

        For a sender whose owed events no longer change (a finished local run).
        ``persist`` is called with the status after each call. Bound the total time
        with ``asyncio.timeout`` if needed: the status persisted so far stays valid.
        """
        outcomes: list[DeliveryOutcome] = []
        current = state.load(status)
        while True:
            report = await self.deliver_pending(key, endpoint, owed, current)
            outcomes.extend(report.outcomes)
            current = report.status
            if persist is not None:
                maybe = persist(current)
                if inspect.isawaitable(maybe):
                    await maybe
            if report.next_attempt_in is None:
                return DeliveryReport(current, outcomes, None)
            await asyncio.sleep(report.next_attempt_in)

    async def _deliver(
        self, key: str, endpoint: Endpoint, owed: Sequence[Event], status: WebhookStatus
    ) -> DeliveryReport:
        status = state.merge(status, self._remembered.get(key))
        tracks = self._tracks.setdefault(key, {})
        owed_ids = {event.id for event in owed}
        for event_id in [i for i in tracks if i not in owed_ids]:
            del tracks[event_id]
        # Status keeps the URL redacted (no user-info, query or signature): goneUrl is
        # compared in that form, so a new token on the same receiver stays gone.
        url = redact(endpoint.url)
        if status.gone_url is not None and status.gone_url != url:
            # A new URL is a new receiver: the 410 was about the old one.
            status = status.model_copy(update={"gone_url": None})
        todo = state.unsettled(owed, status)
        outcomes: list[DeliveryOutcome] = []

        def give_up(
            event: Event, error: str, attempt: int, attempt_result: _Attempt | None
        ) -> None:
            nonlocal status
            status = state.settle(
                status, event.id, delivered=False, error=f"{event.type} {event.id}: {error}"
            )
            tracks.pop(event.id, None)
            self._emit(outcomes, event, url, Verdict.FAILED, attempt, error, attempt_result)

        if status.gone_url == url:
            for event in todo:
                give_up(event, "receiver answered 410 Gone earlier; not sent", 0, None)
            return self._report(key, status, owed, outcomes)

        now = self._clock()
        due = [e for e in todo if e.id not in tracks or tracks[e.id].due <= now]
        if not due:
            return self._report(key, status, owed, outcomes)

        try:
            address = await asyncio.to_thread(self._resolve_address, endpoint.url, self.policy)
        except BlockedAddressError as exc:
            for event in due:
                give_up(event, f"refused by the URL guard: {exc}", 0, None)
            return self._report(key, status, owed, outcomes)
        except (OSError, ValueError) as exc:
            failure = _Attempt(error=f"cannot resolve the receiver: {exc}")
            results = dict.fromkeys((event.id for event in due), failure)
        else:
            results = await self._send_all(endpoint, address, due)

        gone = False
        for event in due:
            result = results[event.id]
            track = tracks.setdefault(event.id, _Track())
            attempt = track.failed_attempts + 1
            if result.ok:
                status = state.settle(status, event.id, delivered=True)
                tracks.pop(event.id, None)
                self._emit(outcomes, event, url, Verdict.DELIVERED, attempt, None, result)
                continue
            if result.status_code is None and result.error == _SKIPPED_GONE:
                give_up(event, "receiver answered 410 Gone; not sent", 0, None)
                continue
            error = result.error or f"HTTP {result.status_code} {result.reason}".rstrip()
            error = error.replace(endpoint.url, url)
            if result.status_code is not None and 300 <= result.status_code < 400:
                error += " (redirects are not followed)"
            if result.status_code == 410:
                gone = True
                status = status.model_copy(update={"gone_url": url})
                give_up(event, error + ": no further events are sent to this URL", attempt, result)
                continue
            track.failed_attempts = attempt
            delay = self.config.backoff(attempt, self._rng)
            if delay is None:
                give_up(event, f"{error} (gave up after {attempt} attempts)", attempt, result)
                continue
            if result.retry_after is not None:
                delay = max(delay, min(result.retry_after, self.config.max_retry_after))
            track.due = self._clock() + delay
            status = state.note_error(status, f"{event.type} {event.id}: {error}")
            self._emit(outcomes, event, url, Verdict.RETRYING, attempt, error, result, delay)
        if gone:
            for event in state.unsettled(owed, status):
                give_up(event, "receiver answered 410 Gone; not sent", 0, None)
        return self._report(key, status, owed, outcomes)

    async def _send_all(
        self, endpoint: Endpoint, address: str, due: Sequence[Event]
    ) -> dict[str, _Attempt]:
        host = urlsplit(endpoint.url).hostname or ""
        timeout = aiohttp.ClientTimeout(
            total=self.config.timeout,
            sock_connect=self.config.connect_timeout,
            sock_read=self.config.timeout,
        )
        connector = aiohttp.TCPConnector(
            resolver=PinnedResolver(host, address),
            use_dns_cache=False,
            ssl=self._ssl,
            limit=self.config.max_concurrency,
        )
        semaphore = asyncio.Semaphore(self.config.max_concurrency)
        gone = asyncio.Event()

        async def one(session: aiohttp.ClientSession, event: Event) -> _Attempt:
            async with semaphore:
                if gone.is_set():
                    return _Attempt(error=_SKIPPED_GONE)
                result = await self._send(session, endpoint, event)
                if result.status_code == 410:
                    gone.set()
                return result

        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=False, auto_decompress=False
        ) as session:
            results = await asyncio.gather(*(one(session, event) for event in due))
        return {event.id: result for event, result in zip(due, results, strict=True)}

    async def _send(
        self, session: aiohttp.ClientSession, endpoint: Endpoint, event: Event
    ) -> _Attempt:
        extra: dict[str, Any] = {}
        if self._download_url is not None and event.type == WebhookEvent.JOB_COMPLETED:
            try:
                link = await self._download_url(event)
            except Exception:  # a missing download link must not stop the event itself
                log.warning("webhook %s: no downloadUrl", event.id, exc_info=True)
            else:
                if link:
                    extra["downloadUrl"] = link
        body = event.body(extra)
        wall = self._wall_clock()
        headers = signed_headers(endpoint.keys, event.id, int(wall), body)
        headers["user-agent"] = self.config.user_agent
        started = self._clock()
        try:
            async with session.post(
                endpoint.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                latency = self._clock() - started
                retry_after = None
                if not 200 <= response.status < 300:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"), wall)
                return _Attempt(
                    status_code=response.status,
                    reason=response.reason or "",
                    retry_after=retry_after,
                    latency=latency,
                )
        except TimeoutError:
            return _Attempt(
                error=f"timed out after {self.config.timeout:g}s", latency=self._clock() - started
            )
        except aiohttp.ClientError as exc:
            # aiohttp names the full URL in some errors; status and Events get it redacted.
            reason = str(exc).replace(endpoint.url, redact(endpoint.url))
            return _Attempt(error=f"connection failed: {reason}", latency=self._clock() - started)

    def _emit(
        self,
        outcomes: list[DeliveryOutcome],
        event: Event,
        url: str,
        verdict: Verdict,
        attempt: int,
        error: str | None,
        result: _Attempt | None,
        next_attempt_in: float | None = None,
    ) -> None:
        outcome = DeliveryOutcome(
            event_id=event.id,
            event_type=event.type,
            job=event.job,
            url=url,
            verdict=verdict,
            attempt=attempt,
            status_code=result.status_code if result else None,
            error=error,
            latency_seconds=result.latency if result else None,
            next_attempt_in=next_attempt_in,
        )
        outcomes.append(outcome)
        if verdict == Verdict.FAILED:
            log.warning("webhook %s %s to %s failed: %s", event.type, event.id, url, error)
        if self._on_outcome is not None:
            try:
                self._on_outcome(outcome)
            except Exception:  # a broken observer must not lose the delivery state
                log.exception("webhook outcome callback failed")

    def _report(
        self,
        key: str,
        status: WebhookStatus,
        owed: Sequence[Event],
        outcomes: list[DeliveryOutcome],
    ) -> DeliveryReport:
        status = state.summarize(status, owed)
        tracks = self._tracks.get(key, {})
        pending = state.unsettled(owed, status)
        next_in: float | None = None
        if pending:
            now = self._clock()
            next_in = max(
                0.0, min(tracks[e.id].due - now if e.id in tracks else 0.0 for e in pending)
            )
        return DeliveryReport(status=status, outcomes=outcomes, next_attempt_in=next_in)


_SKIPPED_GONE = "skipped: the receiver answered 410 Gone"
