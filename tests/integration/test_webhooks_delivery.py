"""Webhook delivery against real HTTP receivers on 127.0.0.1.

Every receiver verifies each request with the reference ``standardwebhooks`` library,
so these tests check interoperability, not our verifier agreeing with our signer.
Retry schedules are a few tens of milliseconds so the suite stays fast.
"""

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from aiohttp import web
from tests.support.builders import job_result

from audioextract.api import BatchPhase, JobError, JobPhase
from audioextract.api.constants import WebhookEvent
from audioextract.api.status import WebhookStatus
from audioextract.urlguard import BlockedAddressError, GuardPolicy, check_url, parse_networks
from audioextract.webhooks import state
from audioextract.webhooks.delivery import (
    DeliveryConfig,
    DeliveryOutcome,
    Dispatcher,
    Endpoint,
    Verdict,
)
from audioextract.webhooks.events import Child, Event, Owner, Snapshot, owed_events
from audioextract.webhooks.signing import generate_secret

pytestmark = pytest.mark.timeout(60)

LOCAL = GuardPolicy(allow_networks=parse_networks("127.0.0.0/8"))
FAST = DeliveryConfig(schedule=(0.02, 0.02, 0.02), connect_timeout=1, timeout=2)
OWNER = Owner(kind="Batch", namespace="media", name="episode-42", uid="uid-42")
RESULT = job_result(sha256="b" * 64, stream_copied=True)
ERROR = JobError(code="DecodeFailed", message="bad frame", retryable=False)


def run[T](coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def children(*phases: JobPhase) -> list[Child]:
    out = []
    for i, phase in enumerate(phases):
        out.append(
            Child(
                name=f"job{i}",
                phase=phase,
                extraction_job=f"episode-42-job{i}",
                result=RESULT if phase == JobPhase.SUCCEEDED else None,
                error=ERROR if phase == JobPhase.FAILED else None,
                completion_time="2030-01-01T00:00:00Z",
            )
        )
    return out


def owed(*phases: JobPhase, final: BatchPhase | None = None) -> list[Event]:
    return owed_events(Snapshot(OWNER, children(*phases), final))


@dataclass
class Hit:
    """One request as the receiver saw it."""

    id: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Behaviour = Callable[[int, Hit], Coroutine[Any, Any, web.StreamResponse]]


async def ok(_n: int, _hit: Hit) -> web.StreamResponse:
    return web.Response(status=204)


@dataclass
class Receiver:
    """A Standard Webhooks receiver; ``behaviour`` answers the n-th request (from 0)."""

    secrets: list[str]
    behaviour: Behaviour = ok
    hits: list[Hit] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        hit = Hit(headers.get("webhook-id", ""), headers, body, time.monotonic())
        for secret in self.secrets:  # each key alone must verify
            try:
                standardwebhooks.Webhook(secret).verify(body, headers)
            except standardwebhooks.webhooks.WebhookVerificationError as exc:
                self.unverified.append(f"{hit.id}: {exc}")
        self.hits.append(hit)
        return await self.behaviour(len(self.hits) - 1, hit)

    def ids(self) -> list[str]:
        return [h.id for h in self.hits]


@contextlib.asynccontextmanager
async def serve(
    receiver: Receiver,
    port: int = 0,
    path: str = "/hook",
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post(path, receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls)
    await site.start()
    bound = runner.addresses[0][1]
    scheme = "https" if tls else "http"
    receiver.url = f"{scheme}://127.0.0.1:{bound}{path}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def dispatcher(config: DeliveryConfig = FAST, **kwargs: Any) -> Dispatcher:
    return Dispatcher(config, policy=kwargs.pop("policy", LOCAL), **kwargs)


# --- success, payloads and signatures --------------------------------------------


def test_delivers_every_owed_event_signed_and_records_it() -> None:
    secret = generate_secret()
    events = owed(JobPhase.SUCCEEDED, JobPhase.FAILED, final=BatchPhase.PARTIALLY_SUCCEEDED)
    seen: list[DeliveryOutcome] = []

    async def link(event: Event) -> str | None:
        return f"https://s3.example/presigned/{event.job}?X-Amz-Signature=x"

    async def main() -> None:
        async with serve(Receiver([secret])) as rx:
            d = dispatcher(download_url=link, on_outcome=seen.append)
            report = await d.deliver_pending(
                "uid-42", Endpoint.from_secret(rx.url, secret), events, None
            )
            assert rx.unverified == []
            assert sorted(rx.ids()) == sorted(e.id for e in events)
            by_type = {h.json["type"]: h for h in rx.hits}
            completed = by_type["job.completed"].json["data"]
            assert completed["result"]["sha256"] == "b" * 64
            assert completed["downloadUrl"].startswith("https://s3.example/presigned/job0")
            assert by_type["job.failed"].json["data"]["error"]["code"] == "DecodeFailed"
            assert "downloadUrl" not in by_type["job.failed"].json["data"]
            batch = by_type["batch.completed"].json["data"]
            assert batch["summary"] == {"total": 2, "succeeded": 1, "failed": 1}
            assert by_type["job.completed"].headers["Content-Type"] == "application/json"
            assert report.next_attempt_in is None
            assert report.status.delivered == 3
            assert report.status.pending == 0
            assert set(report.status.settled or ()) == {e.id for e in events}
            # The presigned link is sent, never stored.
            assert "presigned" not in json.dumps(state.status_patch(report.status))
            assert [o.verdict for o in report.outcomes] == [Verdict.DELIVERED] * 3
            assert seen == report.outcomes
            # Delivering again from the returned status sends nothing.
            again = await d.deliver_pending(
                "uid-42", Endpoint.from_secret(rx.url, secret), events, report.status
            )
            assert again.outcomes == []
            assert len(rx.hits) == 3

    run(main())


def test_key_rotation_receivers_with_either_key_verify() -> None:
    old, new = generate_secret(), generate_secret()
    events = owed(JobPhase.SUCCEEDED)

    async def main() -> None:
        async with serve(Receiver([old])) as old_rx, serve(Receiver([new])) as new_rx:
            for rx in (old_rx, new_rx):
                endpoint = Endpoint.from_secret(rx.url, f"{old} {new}")
                report = await dispatcher().deliver_pending("k", endpoint, events, None)
                assert report.status.delivered == 1
                assert rx.unverified == []
                assert len(rx.hits[0].headers["webhook-signature"].split(" ")) == 2

    run(main())


def test_connects_to_the_pinned_address_with_the_urls_host_name() -> None:
    secret = generate_secret()
    resolved: list[str] = []

    def fake_dns(url: str, policy: GuardPolicy) -> str:
        # Stands in for DNS only; the guard still judges the address.
        resolved.append(url)
        policy.check("127.0.0.1")
        return "127.0.0.1"

    async def main() -> None:
        async with serve(Receiver([secret])) as rx:
            port = rx.url.split(":")[2].split("/")[0]
            url = f"http://hooks.example.invalid:{port}/hook"
            d = dispatcher(resolve_address=fake_dns)
            report = await d.deliver_pending(
                "k", Endpoint.from_secret(url, secret), owed(JobPhase.FAILED), None
            )
            assert report.status.delivered == 1
            assert rx.hits[0].headers["Host"] == f"hooks.example.invalid:{port}"
            assert resolved == [url]

    run(main())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_to_the_pinned_address_verifies_the_urls_host_name(tmp_path: Path) -> None:
    secret = generate_secret()
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    name = "hooks.example.invalid"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"]
    command += ["-addext", f"subjectAltName=DNS:{name}"]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))

    def fake_dns(url: str, policy: GuardPolicy) -> str:
        policy.check("127.0.0.1")
        return "127.0.0.1"

    async def main() -> None:
        async with serve(Receiver([secret]), tls=server_tls) as rx:
            port = rx.url.split(":")[2].split("/")[0]
            d = dispatcher(resolve_address=fake_dns, ssl_context=trust)
            good = Endpoint.from_secret(f"https://hooks.example.invalid:{port}/hook", secret)
            report = await d.deliver_pending("k", good, owed(JobPhase.SUCCEEDED), None)
            assert report.status.delivered == 1
            assert rx.unverified == []
            # The certificate does not name 127.0.0.1: the pinned address is not trusted
            # in place of the host name.
            bare = Endpoint.from_secret(rx.url, secret)
            report = await d.deliver_pending("k2", bare, owed(JobPhase.SUCCEEDED), None)
            assert report.outcomes[0].verdict == Verdict.RETRYING
            assert "certificate" in (report.outcomes[0].error or "").lower()
            assert len(rx.hits) == 1

    run(main())


# --- failures and retries ---------------------------------------------------------


def test_500s_then_200_is_delivered_with_the_same_id() -> None:
    secret = generate_secret()

    async def flaky(n: int, _hit: Hit) -> web.StreamResponse:
        return web.Response(status=500 if n < 2 else 200)

    async def main() -> None:
        async with serve(Receiver([secret], flaky)) as rx:
            report = await dispatcher().drain(
                "k", Endpoint.from_secret(rx.url, secret), owed(JobPhase.SUCCEEDED), None
            )
            assert len(set(rx.ids())) == 1
            assert len(rx.hits) == 3
            assert [o.verdict for o in report.outcomes] == [
                Verdict.RETRYING,
                Verdict.RETRYING,
                Verdict.DELIVERED,
            ]
            assert report.outcomes[0].status_code == 500
            assert report.status.delivered == 1
            assert report.status.failed == 0
            assert "HTTP 500" in (report.status.last_error or "")
            assert rx.unverified == []  # every attempt signed afresh under the same id

    run(main())


def test_always_500_gives_up_after_the_schedule_and_reports_it() -> None:
    secret = generate_secret()
    persisted: list[WebhookStatus] = []

    async def broken(_n: int, _hit: Hit) -> web.StreamResponse:
        return web.Response(status=500)

    async def main() -> None:
        async with serve(Receiver([secret], broken)) as rx:
            events = owed(JobPhase.SUCCEEDED, final=BatchPhase.SUCCEEDED)
            report = await dispatcher().drain(
                "k", Endpoint.from_secret(rx.url, secret), events, None, persist=persisted.append
            )
            assert len(rx.hits) == 2 * FAST.max_attempts
            assert report.status.failed == 2
            assert report.status.delivered == 0
            assert report.status.pending == 0
            assert len(report.failures) == 2
            assert all(f.final and f.attempt == FAST.max_attempts for f in report.failures)
            assert "gave up after 4 attempts" in (report.failures[0].error or "")
            assert persisted[-1] == report.status

    run(main())


def test_retry_after_is_honoured_and_capped() -> None:
    secret = generate_secret()

    def busy(seconds: str) -> Behaviour:
        async def answer(n: int, _hit: Hit) -> web.StreamResponse:
            if n == 0:
                return web.Response(status=503, headers={"Retry-After": seconds})
            return web.Response(status=200)

        return answer

    async def main() -> None:
        async with serve(Receiver([secret], busy("1"))) as rx:
            await dispatcher().drain(
                "k", Endpoint.from_secret(rx.url, secret), owed(JobPhase.FAILED), None
            )
            assert rx.hits[1].at - rx.hits[0].at >= 0.9
        capped = DeliveryConfig(schedule=(0.02,), max_retry_after=0.2)
        async with serve(Receiver([secret], busy("3600"))) as rx:
            report = await dispatcher(capped).drain(
                "k", Endpoint.from_secret(rx.url, secret), owed(JobPhase.FAILED), None
            )
            assert 0.15 <= rx.hits[1].at - rx.hits[0].at < 2
            assert report.status.delivered == 1

    run(main())


def test_timeouts_are_bounded_and_retried() -> None:
    secret = generate_secret()
    config = DeliveryConfig(schedule=(0.02, 0.02), connect_timeout=1, timeout=0.3)

    # The receiver stalls far longer than any bound below: finishing within the bound
    # proves the sender gave up at its own timeout, however loaded the machine is.
    async def slow_then_fast(n: int, _hit: Hit) -> web.StreamResponse:
        if n == 0:
            await asyncio.sleep(30)
        return web.Response(status=200)

    async def always_slow(_n: int, _hit: Hit) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response(status=200)

    async def main() -> None:
        async with serve(Receiver([secret], slow_then_fast)) as rx:
            started = time.monotonic()
            report = await dispatcher(config).drain(
                "k", Endpoint.from_secret(rx.url, secret), owed(JobPhase.SUCCEEDED), None
            )
            assert time.monotonic() - started < 10
            assert report.outcomes[0].verdict == Verdict.RETRYING
            assert "timed out" in (report.outcomes[0].error or "")
            assert report.status.delivered == 1
            assert len(set(rx.ids())) == 1
        async with serve(Receiver([secret], always_slow)) as rx:
            started = time.monotonic()
            report = await dispatcher(config).drain(
                "k", Endpoint.from_secret(rx.url, secret), owed(JobPhase.SUCCEEDED), None
            )
            assert time.monotonic() - started < 10
            assert report.status.failed == 1
            assert "timed out" in (report.status.last_error or "")

    run(main())


def test_receiver_down_for_a_while_then_up() -> None:
    secret = generate_secret()
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    config = DeliveryConfig(schedule=(0.1,) * 20, connect_timeout=1, timeout=2)
    events = owed(JobPhase.SUCCEEDED, JobPhase.SUCCEEDED, final=BatchPhase.SUCCEEDED)

    async def main() -> None:
        delivery = asyncio.create_task(
            dispatcher(config).drain("k", Endpoint.from_secret(url, secret), events, None)
        )
        await asyncio.sleep(0.5)
        assert not delivery.done()
        async with serve(Receiver([secret]), port=port) as rx:
            report = await asyncio.wait_for(delivery, 10)
            assert sorted(rx.ids()) == sorted(e.id for e in events)
            assert rx.unverified == []
        assert report.status.delivered == 3
        refused = [o for o in report.outcomes if o.verdict == Verdict.RETRYING]
        assert refused
        assert all("connection failed" in (o.error or "") for o in refused)
        assert all(o.status_code is None for o in refused)

    run(main())


def test_410_gone_stops_delivery_to_that_url_for_this_owner() -> None:
    secret = generate_secret()
    one_at_a_time = DeliveryConfig(schedule=(0.02,), max_concurrency=1)

    async def gone(_n: int, _hit: Hit) -> web.StreamResponse:
        return web.Response(status=410)

    async def main() -> None:
        async with serve(Receiver([secret], gone)) as rx, serve(Receiver([secret])) as new_rx:
            d = dispatcher(one_at_a_time)
            # A token in the query string: a credential, never stored in status.
            endpoint = Endpoint.from_secret(rx.url + "?token=s3cr3t", secret)
            first = owed(JobPhase.SUCCEEDED, JobPhase.SUCCEEDED)
            report = await d.deliver_pending("k", endpoint, first, None)
            assert len(rx.hits) == 1  # the other event is not sent
            assert report.status.failed == 2
            assert report.status.gone_url == rx.url
            assert "s3cr3t" not in report.status.model_dump_json()
            assert report.next_attempt_in is None
            assert all(o.verdict == Verdict.FAILED for o in report.outcomes)
            assert report.outcomes[0].status_code == 410
            # Later events settle as failed without a request, even in a new process.
            later = owed(JobPhase.SUCCEEDED, JobPhase.SUCCEEDED, final=BatchPhase.SUCCEEDED)
            for fresh in (d, dispatcher(one_at_a_time)):
                report2 = await fresh.deliver_pending("k", endpoint, later, report.status)
                assert report2.status.failed == 3
                assert len(rx.hits) == 1
            # A new URL is a new receiver.
            moved = Endpoint.from_secret(new_rx.url, secret)
            report3 = await d.deliver_pending("k", moved, [*later, *owed(JobPhase.FAILED)], None)
            assert report3.status.gone_url is None
            assert len(new_rx.hits) == 1  # the one event not settled yet

    run(main())


def test_redirects_are_not_followed() -> None:
    secret = generate_secret()

    async def main() -> None:
        async with serve(Receiver([secret])) as target:

            async def redirect(_n: int, _hit: Hit) -> web.StreamResponse:
                return web.Response(status=307, headers={"Location": target.url})

            async with serve(Receiver([secret], redirect)) as rx:
                report = await dispatcher().drain(
                    "k", Endpoint.from_secret(rx.url, secret), owed(JobPhase.FAILED), None
                )
                assert target.hits == []
                assert len(rx.hits) == FAST.max_attempts
                assert report.status.failed == 1
                assert "redirects are not followed" in (report.status.last_error or "")
                assert report.failures[0].status_code == 307

    run(main())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "169.254.169.254"])
def test_guarded_addresses_are_refused_before_any_connection(host: str) -> None:
    secret = generate_secret()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]

    async def main() -> None:
        d = Dispatcher(FAST, policy=GuardPolicy())  # the default: loopback refused
        endpoint = Endpoint.from_secret(f"http://{host}:{port}/hook", secret)
        events = owed(JobPhase.SUCCEEDED, final=BatchPhase.SUCCEEDED)
        report = await d.deliver_pending("k", endpoint, events, None)
        assert report.status.failed == 2
        assert report.next_attempt_in is None
        assert all(o.latency_seconds is None for o in report.outcomes)
        assert "refused by the URL guard" in (report.status.last_error or "")

    try:
        run(main())
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected
    finally:
        listener.close()


def test_default_policy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIOEXTRACT_ALLOW_NETWORKS", "127.0.0.0/8")
    policy = Dispatcher().policy
    assert policy.allow_networks == LOCAL.allow_networks
    assert check_url("http://127.0.0.1/x", policy) == "127.0.0.1"
    # Webhooks refuse private ranges by default (the operator's network position) ...
    assert policy.deny_private
    with pytest.raises(BlockedAddressError, match="private"):
        policy.check("10.0.0.7")
    # ... unless the operator's setting allows them.
    monkeypatch.setenv("AUDIOEXTRACT_WEBHOOK_PRIVATE_NETWORKS", "allow")
    Dispatcher().policy.check("10.0.0.7")


# --- persistence and restarts -----------------------------------------------------


def test_restart_delivers_what_is_owed_with_the_same_id_and_never_resends_acknowledged() -> None:
    secret = generate_secret()
    slow_schedule = DeliveryConfig(schedule=(3600,), connect_timeout=1, timeout=2)
    fail_job1 = {"on": True}

    async def answer(_n: int, hit: Hit) -> web.StreamResponse:
        failing = fail_job1["on"] and hit.json["data"].get("job", {}).get("name") == "job1"
        return web.Response(status=500 if failing else 200)

    async def main() -> None:
        async with serve(Receiver([secret], answer)) as rx:
            endpoint = Endpoint.from_secret(rx.url, secret)
            # Sender A: job0 is acknowledged, job1's first attempt fails.
            a = dispatcher(slow_schedule, rng=lambda: 1.0)
            first = owed(JobPhase.SUCCEEDED, JobPhase.FAILED)
            report = await a.deliver_pending("uid-42", endpoint, first, None)
            persisted = state.status_patch(report.status)["webhook"]
            assert report.status.pending == 1
            assert 3500 < (report.next_attempt_in or 0) <= 3600  # A would wait an hour
            job1_id = next(e.id for e in first if e.job == "job1")
            # A stops. Meanwhile the batch becomes final: a transition nobody delivered.
            del a
            fail_job1["on"] = False
            now_owed = owed(
                JobPhase.SUCCEEDED, JobPhase.FAILED, final=BatchPhase.PARTIALLY_SUCCEEDED
            )
            # Sender B starts from the persisted status alone.
            b = dispatcher(slow_schedule)
            report_b = await b.deliver_pending("uid-42", endpoint, now_owed, persisted)
            job0_id = next(e.id for e in now_owed if e.job == "job0")
            batch_id = next(e.id for e in now_owed if e.type == WebhookEvent.BATCH_COMPLETED)
            assert rx.ids().count(job0_id) == 1  # acknowledged: never resent
            assert rx.ids().count(job1_id) == 2  # same webhook-id across the restart
            assert rx.ids().count(batch_id) == 1
            assert report_b.status.delivered == 3
            assert report_b.status.pending == 0
            assert rx.unverified == []

    run(main())


def test_a_stale_status_from_a_watch_cache_does_not_cause_a_resend() -> None:
    secret = generate_secret()

    async def main() -> None:
        async with serve(Receiver([secret])) as rx:
            d = dispatcher()
            endpoint = Endpoint.from_secret(rx.url, secret)
            events = owed(JobPhase.SUCCEEDED)
            first = await d.deliver_pending("k", endpoint, events, None)
            # The caller's copy of the owner does not show the patch yet.
            second = await d.deliver_pending("k", endpoint, events, {"pending": 1})
            assert len(rx.hits) == 1
            assert second.status.delivered == first.status.delivered == 1
            d.forget("k")
            third = await d.deliver_pending("k", endpoint, events, first.status)
            assert third.outcomes == []

    run(main())


def test_events_not_yet_due_wait_for_their_time() -> None:
    secret = generate_secret()
    config = DeliveryConfig(schedule=(0.5,), connect_timeout=1, timeout=2)

    async def first_fails(n: int, _hit: Hit) -> web.StreamResponse:
        return web.Response(status=500 if n == 0 else 200)

    async def main() -> None:
        async with serve(Receiver([secret], first_fails)) as rx:
            d = Dispatcher(config, policy=LOCAL, rng=lambda: 1.0)
            endpoint = Endpoint.from_secret(rx.url, secret)
            events = owed(JobPhase.SUCCEEDED)
            report = await d.deliver_pending("k", endpoint, events, None)
            assert report.next_attempt_in is not None
            assert 0.3 < report.next_attempt_in <= 0.5
            early = await d.deliver_pending("k", endpoint, events, report.status)
            assert early.outcomes == []
            assert len(rx.hits) == 1
            await asyncio.sleep(report.next_attempt_in)
            late = await d.deliver_pending("k", endpoint, events, early.status)
            assert late.status.delivered == 1
            assert len(rx.hits) == 2

    run(main())
