import ast
import asyncio
import contextlib
import itertools
import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from audioextract.handlers.lease import LeaderElector
from audioextract.handlers.queue import Backoff, WorkQueue
from audioextract.settings import Settings
from tests.support.builders import cached, extraction_job

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "audioextract"
FORBIDDEN = ("kopf", "kubernetes", "aiohttp")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_reconcile_is_pure():
    for path in (PACKAGE / "reconcile").glob("*.py"):
        assert not imports(path) & set(FORBIDDEN), path


def test_only_handlers_import_kopf():
    for path in PACKAGE.rglob("*.py"):
        if "kopf" in imports(path):
            assert path.parent.name == "handlers", path


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("AUDIOEXTRACT_DEFAULT_DESTINATION", '{"s3": {"bucket": "audio"}}')
    monkeypatch.setenv("AUDIOEXTRACT_MAX_CONCURRENT_JOBS", "3")
    monkeypatch.setenv("AUDIOEXTRACT_DEFAULT_REQUESTS", '{"cpu": "1"}')
    monkeypatch.setenv("AUDIOEXTRACT_ALLOW_NETWORKS", "10.0.0.0/8")
    s = Settings()
    assert s.default_destination.s3.bucket == "audio" and s.max_concurrent_jobs == 3
    w = s.worker_config()
    assert w.default_requests == {"cpu": "1"} and w.allow_networks == "10.0.0.0/8"


class FakeLeases:
    """An in-memory Lease store with resourceVersion compare-and-swap, like the API server."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None if self.lease is None else {**self.lease, "spec": dict(self.lease["spec"])}

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> None:
        if self.lease is not None:
            raise ApiException(status=409)
        self.version += 1
        self.lease = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": str(self.version)},
        }

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        assert self.lease is not None
        if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise ApiException(status=409)
        self.version += 1
        self.lease = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": str(self.version)},
        }


def test_lease_one_leader_then_takeover_after_expiry():
    store = FakeLeases()
    a = LeaderElector(store, "ns", "l", "a", 5)  # type: ignore[arg-type]
    b = LeaderElector(store, "ns", "l", "b", 5)  # type: ignore[arg-type]

    async def scenario() -> None:
        assert await a.try_acquire() and a.leading
        assert not await b.try_acquire() and not b.leading
        assert await a.try_acquire()  # renewal
        # a stops renewing: make its renewal old enough to have expired.
        store.lease["spec"]["renewTime"] = "2000-01-01T00:00:00.000000Z"
        assert await b.try_acquire() and b.leading
        assert store.lease["spec"]["holderIdentity"] == "b"
        assert store.lease["spec"]["leaseTransitions"] == 1
        assert not await a.try_acquire() and not a.leading
        await b.release()
        assert store.lease["spec"]["holderIdentity"] == ""
        assert await a.try_acquire() and a.leading  # released: no need to wait for expiry

    asyncio.run(scenario())


def test_retry_after_from_api_errors():
    from audioextract.handlers.kube import retry_after

    throttled = ApiException(status=429)
    throttled.headers = {"Retry-After": "2"}
    assert retry_after(throttled) == 2.0
    dated = ApiException(status=503)
    dated.headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert retry_after(dated) is None
    assert retry_after(ApiException(status=500)) is None
    assert retry_after(ValueError("not an API error")) is None


def test_failed_reconciles_back_off_per_key_and_honour_retry_after():
    from audioextract.handlers.queue import Backoff, Result, WorkQueue, run_workers

    async def scenario() -> tuple[list[float], list[str]]:
        queue: WorkQueue[str] = WorkQueue("test", Backoff(0.05, 0.2))
        seen: list[tuple[str, float]] = []
        start = asyncio.get_running_loop().time()

        async def reconcile(key: str) -> Result:
            seen.append((key, asyncio.get_running_loop().time() - start))
            if key == "broken":
                raise ApiException(status=500)
            if key == "throttled" and sum(1 for k, _ in seen if k == key) == 1:
                exc = ApiException(status=429)
                exc.headers = {"Retry-After": "0.3"}
                raise exc
            return Result()

        def on_error(key: str, exc: BaseException) -> float | None:
            from audioextract.handlers.kube import retry_after

            return retry_after(exc)

        runner = asyncio.create_task(
            run_workers(queue, reconcile, 2, controller="test", on_error=on_error)
        )
        queue.add("broken")
        queue.add("throttled")
        queue.add("fine")
        await asyncio.sleep(1.0)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        broken = [t for k, t in seen if k == "broken"]
        gaps = [round(b - a, 2) for a, b in itertools.pairwise(broken)]
        return gaps, [k for k, _ in seen]

    gaps, keys = asyncio.run(scenario())
    # 0.05 s doubling, capped at 0.2 s; never a hot loop.
    assert gaps[:3] == pytest.approx([0.05, 0.1, 0.2], abs=0.04), gaps
    assert all(g >= 0.15 for g in gaps[3:]), gaps
    assert keys.count("fine") == 1
    # The 429 asked for 0.3 s: the second try waited at least that, then succeeded once.
    assert keys.count("throttled") == 2


def test_queue_deduplicates_and_never_runs_one_key_twice_at_once():
    from audioextract.handlers.queue import Backoff, Result, WorkQueue, run_workers

    async def scenario() -> tuple[int, int, int]:
        queue: WorkQueue[str] = WorkQueue("test", Backoff(0.01, 0.1))
        running: set[str] = set()
        overlaps = 0
        runs = {"a": 0, "b": 0}

        async def reconcile(key: str) -> Result:
            nonlocal overlaps
            if key in running:
                overlaps += 1
            running.add(key)
            runs[key] += 1
            if runs[key] == 1:
                queue.add(key)  # changed while being processed: runs once more, afterwards
            await asyncio.sleep(0.05)
            running.discard(key)
            return Result()

        for _ in range(50):
            queue.add("a")  # a burst collapses into one run
        queue.add("b")
        queue.add_after("b", 0.3)  # a later due time than the pending add: no extra run
        runner = asyncio.create_task(run_workers(queue, reconcile, 4, controller="test"))
        await asyncio.sleep(0.6)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        return overlaps, runs["a"], runs["b"]

    overlaps, a, b = asyncio.run(scenario())
    assert overlaps == 0
    assert a == 2  # the burst, then the add made while it ran
    assert b == 2  # the add, the re-add during its run; the add_after was coalesced


def test_every_api_call_has_a_timeout():
    from audioextract.handlers.kube import Kube

    seen: dict[str, Any] = {}

    def call(*args: Any, **kwargs: Any) -> None:
        seen.update(kwargs)

    kube = Kube(api_client=object(), timeout=7)  # type: ignore[arg-type]
    asyncio.run(kube._call(call, "x"))
    assert seen == {"_request_timeout": 7}


def test_status_writes_do_not_wait_behind_a_fan_outs_creates() -> None:
    """Creates are bounded below the write slots: a status write passes a queue of creates."""
    from audioextract.handlers.kube import Kube

    release = threading.Event()
    in_flight: list[str] = []
    lock = threading.Lock()

    def api(kind: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        with lock:
            in_flight.append(kind)
        if kind == "create":
            release.wait(timeout=30)
        return {}

    async def scenario() -> tuple[list[str], list[str]]:
        kube = Kube(api_client=object(), max_writes=4)  # type: ignore[arg-type]
        creates = [asyncio.create_task(kube._create(api, "create")) for _ in range(50)]
        await asyncio.sleep(0.2)
        started_before = list(in_flight)
        # Every create slot is taken and 47 more wait, yet the status write goes through.
        await asyncio.wait_for(kube._write(api, "status"), timeout=10)
        after_status = list(in_flight)
        release.set()
        await asyncio.gather(*creates)
        return started_before, after_status

    started_before, after_status = asyncio.run(scenario())
    assert started_before == ["create"] * 3  # 4 write slots, 3 of them for creates
    assert after_status == ["create"] * 3 + ["status"]


def test_the_queue_says_when_it_went_quiet() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue("quiet", Backoff(0.5, 60))
        before = queue.quiet_since()
        assert before is not None
        queue.add("a")
        assert queue.quiet_since() is None  # waiting
        key = await queue.get()
        assert queue.quiet_since() is None  # running
        queue.done(key)
        after = queue.quiet_since()
        assert after is not None and after >= before
        queue.add_after("b", 60)  # a key due much later does not keep it busy
        assert queue.quiet_since() == after

    asyncio.run(scenario())


def test_statuses_are_memoised_by_content() -> None:
    from audioextract.reconcile.extractionjob import forget_parsed_statuses, read_status

    forget_parsed_statuses()
    running = cached(extraction_job("a"), uid="u", rv="1")
    running["status"] = {"phase": "Running", "jobName": "a-1"}
    failed = cached(extraction_job("a"), uid="u", rv="1")  # same uid and version ...
    failed["status"] = {"phase": "Failed", "attempts": 2}  # ... other content
    assert read_status(running).phase == "Running"
    assert read_status(failed).phase == "Failed"
    first = read_status(running)
    again = json.loads(json.dumps(running))  # a fresh copy, as the packed cache returns
    assert read_status(again) is first
    forget_parsed_statuses()
    assert read_status(again) is not first and read_status(again) == first


def test_idle_release_empties_the_memos() -> None:
    from audioextract.handlers import memory

    calls: list[str] = []
    memory.release(lambda: calls.append("statuses"), lambda: calls.append("specs"))
    assert calls == ["statuses", "specs"]
    # On glibc the heap is trimmed too; elsewhere release still drops the memos.
    assert memory._TRIM is not None or not sys.platform.startswith("linux")


def test_calls_by_path_reuse_one_connection_and_raise_api_errors() -> None:
    """A real HTTP server on 127.0.0.1: ignored answers are read, so the connection is reused."""
    import http.server

    from kubernetes import client

    from audioextract.handlers.kube import Kube

    peers: list[tuple[str, int]] = []
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            peers.append(self.client_address)
            paths.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = 409 if "secrets" in self.path else 201
            body = json.dumps({"kind": "Status", "code": status}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
        kube = Kube(api_client=client.ApiClient(config), max_writes=1)

        async def scenario() -> None:
            for n in range(3):
                await kube.create_event("ns", {"metadata": {"name": f"e{n}"}})
            with pytest.raises(ApiException) as refused:
                await kube.create_secret({"metadata": {"name": "s", "namespace": "ns"}})
            assert refused.value.status == 409

        asyncio.run(scenario())
    finally:
        server.shutdown()
        server.server_close()
    assert paths == ["/api/v1/namespaces/ns/events"] * 3 + ["/api/v1/namespaces/ns/secrets"]
    assert len(set(peers)) == 1  # one connection for all four calls


def test_kopf_keeps_no_memory_of_the_objects_it_saw() -> None:
    from audioextract.handlers.registry import ForgetfulMemories

    memories = ForgetfulMemories()
    body = {"metadata": {"uid": "u1", "name": "a", "namespace": "ns"}}
    first = asyncio.run(memories.recall(body))  # type: ignore[arg-type]
    again = asyncio.run(memories.recall(body))  # type: ignore[arg-type]
    assert first is not again and not memories._items
