"""A kmock Kubernetes API emulator with our resources and injectable faults, on 127.0.0.1.

The integration (faults) tier runs the real ``audio-extract operator`` against this
emulator to test what only an emulator injects well: API errors, slow or hanging
calls, dropped and expired watches. Real API semantics (status subresource, label
selectors, garbage collection, the Job controller) are the envtest tier's job; tests
here must not depend on what kmock does differently (it does not bump
``resourceVersion`` or ``generation``, filter label selectors or keep status apart).

The emulator runs in its own thread and event loop (:class:`EmulatorThread`), so the
tests stay synchronous and the operator, a subprocess, talks to it over HTTP.

Small additions to kmock 0.8, each because a real API server does it and the
operator relies on it (or a fault has to be injected before kmock acts):

- **uid and creationTimestamp on create, answered with 201.** kmock stores a created
  body as sent and answers 200; the operator keys ownership by ``metadata.uid`` (owner
  references, Jobs by owner uid), and the kubernetes client (v37) deserializes a
  create's body only for 201 Created (it returns None for a 200).
- **``v1/namespaces`` is declared but never listed.** kopf's namespace observer starts
  only once that resource is discovered; the operator turns kopf's namespace scanning
  off (exact namespaces only), so the list endpoint, which kmock 0.8 cannot parse,
  is never called.
- **Faults are checked before kmock touches its state.** kmock applies a create,
  patch or delete to its objects even when a user reaction answers the request, so a
  "503 on create" reaction would still create the object. Here a faulted request
  leaves the state alone, as a refused request on a real API server does.
- **Watch drops.** :meth:`FaultyEmulator.drop_watches` ends the open watch streams of a
  resource, either by closing them or with an ``ERROR`` event ``410 Gone`` (the
  "resourceVersion too old" expiry), so the client has to reconnect and re-list.
"""

import asyncio
import contextlib
import datetime
import json
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

GROUP_VERSION = "audioextract.dev/v1alpha1"
NAMESPACE = "default"

# User-Agent prefixes: the operator's own calls (kubernetes client) and kopf's watches.
OPERATOR_CLIENT = "OpenAPI-Generator"
KOPF_CLIENT = "kopf/"

_DROP = "__drop_watch__"


@dataclass
class Fault:
    """One injected fault: which requests it matches, what it answers, how often.

    ``method`` and ``path`` (a regular expression searched in the URL path) select the
    requests; ``watch`` None matches both, True only watch requests, False none of them;
    ``client`` is a User-Agent prefix (default: only the operator's own API calls, not
    kopf's watches and lists). ``status`` answers with a Kubernetes ``Status`` error
    (plus ``Retry-After`` when set); ``delay`` instead holds the request that long (or
    until :meth:`FaultyEmulator.release`) and then serves it normally. ``times`` None
    means forever.
    """

    method: str
    path: str
    status: int | None = None
    reason: str = "InternalError"
    retry_after: int | None = None
    delay: float = 0.0
    times: int | None = 1
    watch: bool | None = False
    client: str | None = OPERATOR_CLIENT
    hits: int = 0
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pattern = re.compile(self.path)

    def matches(self, request: rendering.Request) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if _method(request) != self.method.upper():
            return False
        if not self.pattern.search(request.url.path):
            return False
        is_watch = request.params.get("watch") == "true"
        if self.watch is not None and is_watch != self.watch:
            return False
        agent = request.headers.get("User-Agent", "")
        return self.client is None or agent.startswith(self.client)


@dataclass
class Served:
    """A request the emulator answered: method, path, status, whether faulted, when, by whom."""

    method: str
    path: str
    status: int
    faulted: bool
    agent: str
    name: str | None = None
    at: float = field(default_factory=time.monotonic)


def _resource(kind: str, *verbs: str, subresources: tuple[str, ...] = ()) -> kmock.ResourceInfo:
    return kmock.ResourceInfo(
        kind=kind, namespaced=kind != "Namespace", verbs=set(verbs), subresources=set(subresources)
    )


ALL_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")


@attrs.define(kw_only=True)
class FaultyEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with our resources declared and faults injectable."""

    faults: list[Fault] = attrs.field(factory=list)
    log: list[Served] = attrs.field(factory=list)
    _release_event: asyncio.Event | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        res = self.resources
        res[f"{GROUP_VERSION}/batches"] = _resource("Batch", *ALL_VERBS, subresources=("status",))
        res[f"{GROUP_VERSION}/extractionjobs"] = _resource(
            "ExtractionJob", *ALL_VERBS, subresources=("status",)
        )
        res["batch/v1/jobs"] = _resource("Job", *ALL_VERBS, subresources=("status",))
        res["v1/pods"] = _resource("Pod", "get", "list", "watch")
        res["v1/secrets"] = _resource("Secret", "get")
        res["v1/events"] = _resource("Event", "create", "list", "watch")
        res["coordination.k8s.io/v1/leases"] = _resource("Lease", "get", "create", "update")
        # Declared so that kopf's namespace observer starts (see the module docstring).
        res["v1/namespaces"] = _resource("Namespace", "list", "watch")

    # -- request entry: faults, metadata ----------------------------------------------

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        agent = request.headers.get("User-Agent", "")
        method, path = _method(request), request.url.path
        name = request.name
        if name is None and isinstance(request.data, dict):
            name = (request.data.get("metadata") or {}).get("name")
        fault = next((f for f in self.faults if f.matches(request)), None)
        if fault is not None:
            fault.hits += 1
            if fault.status is not None:
                self.log.append(Served(method, path, fault.status, True, agent, name))
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                return _status_response(
                    fault.status, fault.reason, f"injected fault: {fault.reason}", headers
                )
            await self._hold(fault.delay)
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault(
                "creationTimestamp",
                datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
        response = await super()._handle(request)
        if (
            request.action == kmock.action.CREATE
            and response.status == 200
            and not response.prepared
        ):
            response.set_status(201)  # as the API server; the kubernetes client maps only 201
        self.log.append(Served(method, path, response.status, fault is not None, agent, name))
        return response

    async def _hold(self, seconds: float) -> None:
        if self._release_event is None:
            self._release_event = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._release_event.wait(), seconds)

    def close(self) -> None:
        """Release held requests (before stopping)."""
        self.release()

    def release(self) -> None:
        """Let every held (delayed) request go on now; later delays hold no more."""
        if self._release_event is None:
            self._release_event = asyncio.Event()
        self._release_event.set()

    # -- watches -----------------------------------------------------------------------

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        async for event in super()._serve_watch(request):
            if isinstance(event, dict) and event.get("type") == _DROP:
                if event["gone"]:
                    yield {
                        "type": "ERROR",
                        "object": {
                            "apiVersion": "v1",
                            "kind": "Status",
                            "status": "Failure",
                            "code": 410,
                            "reason": "Expired",
                            "message": "too old resource version (injected)",
                        },
                    }
                return  # ends the HTTP stream: the client sees the watch closed
            yield event

    async def drop_watches(self, plural_path: str, *, gone: bool) -> int:
        """End every open watch of ``group/version/plural``; returns how many were open."""
        resource = kmock.resource(plural_path)
        bus = self._buses[resource]
        count = bus.consumer_count
        await bus.put(
            {"type": _DROP, "gone": gone, "object": {"metadata": {"namespace": NAMESPACE}}}
        )
        return count

    def open_watches(self, plural_path: str) -> int:
        """How many watch streams of ``group/version/plural`` are open now."""
        return self._buses[kmock.resource(plural_path)].consumer_count

    # -- state ---------------------------------------------------------------------------

    def stored(self, plural_path: str) -> list[dict[str, Any]]:
        """The live objects of ``group/version/plural`` (copies)."""
        resource = kmock.resource(plural_path)
        out = []
        for (res, _ns, _name), obj in self.objects.items():
            if res == resource and not obj.deleted:
                out.append(json.loads(json.dumps(obj.raw)))
        return out


def _method(request: rendering.Request) -> str:
    method = request.method
    return str(getattr(method, "value", method)).upper()


def _status_response(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> aiohttp.web.Response:
    body = {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": status,
        "reason": reason,
        "message": message,
    }
    return aiohttp.web.json_response(body, status=status, headers=headers)


class EmulatorThread:
    """Serves a :class:`FaultyEmulator` on 127.0.0.1 from a background event loop.

    Everything that touches the emulator's state runs in that loop (:meth:`call`), so
    the synchronous tests never race the server.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.emulator: FaultyEmulator | None = None
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="kmock", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        emulator = FaultyEmulator()
        async with emulator, kmock.Server(emulator) as server:
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()
            emulator.close()  # free held requests so the server shuts down at once

    def start(self) -> "EmulatorThread":
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None or not self.url:
            raise RuntimeError(f"the kmock emulator did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def call[T](self, fn: Callable[[FaultyEmulator], T]) -> T:
        """Run ``fn(emulator)`` in the emulator's loop and return its result."""

        async def run() -> T:
            assert self.emulator is not None
            return fn(self.emulator)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def run[T](self, coro: Callable[[FaultyEmulator], Coroutine[Any, Any, T]]) -> T:
        """Await ``coro(emulator)`` in the emulator's loop and return its result."""

        async def run() -> T:
            assert self.emulator is not None
            return await coro(self.emulator)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    # -- conveniences for tests ----------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        """Inject ``fault`` (checked in order, before the ones added later)."""
        self.call(lambda em: em.faults.append(fault))
        return fault

    def stored(self, plural_path: str) -> list[dict[str, Any]]:
        return self.call(lambda em: em.stored(plural_path))

    def served(self) -> list[Served]:
        return self.call(lambda em: list(em.log))

    def create(self, plural_path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST an object as a user would (through HTTP, not faulted: another client)."""
        group_version, plural = plural_path.rsplit("/", 1)
        prefix = "/api/" if "/" not in group_version else "/apis/"
        ns = body["metadata"].setdefault("namespace", NAMESPACE)
        url = f"{self.url}{prefix}{group_version}/namespaces/{ns}/{plural}"
        req = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "test-user"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            created: dict[str, Any] = json.loads(resp.read())
        return created

    def patch_status(self, plural_path: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch an object's status as another client would (not faulted)."""
        group_version, plural = plural_path.rsplit("/", 1)
        prefix = "/api/" if "/" not in group_version else "/apis/"
        url = f"{self.url}{prefix}{group_version}/namespaces/{NAMESPACE}/{plural}/{name}/status"
        req = urllib.request.Request(
            url,
            data=json.dumps({"status": status}).encode(),
            method="PATCH",
            headers={
                "Content-Type": "application/merge-patch+json",
                "User-Agent": "test-user",
            },
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def kubeconfig(self) -> str:
        """A kubeconfig (YAML as JSON) for plain HTTP to the emulator, no credentials."""
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
                "users": [{"name": "anonymous", "user": {}}],
                "contexts": [
                    {"name": "kmock", "context": {"cluster": "kmock", "user": "anonymous"}}
                ],
                "current-context": "kmock",
            }
        )
