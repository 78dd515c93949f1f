"""The few Kubernetes API calls the operator makes, as coroutines.

The official client is synchronous; each call runs in a worker thread so the event
loop (and kopf's watches) never block on the network.
"""

import asyncio
import functools
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from audioextract.api.constants import GROUP, VERSION

Obj = dict[str, Any]


def load_config() -> None:
    """Credentials from the Pod's service account, else from KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


def is_conflict(exc: BaseException) -> bool:
    """Whether an API error is 409 (AlreadyExists or a resourceVersion conflict)."""
    return isinstance(exc, ApiException) and exc.status == 409


def is_forbidden(exc: BaseException) -> bool:
    """Whether an API error is 403 (RBAC refused the call)."""
    return isinstance(exc, ApiException) and exc.status == 403


def is_not_found(exc: BaseException) -> bool:
    """Whether an API error is 404."""
    return isinstance(exc, ApiException) and exc.status == 404


def retry_after(exc: BaseException) -> float | None:
    """The seconds an API error's ``Retry-After`` header asks to wait (429, 503), if any."""
    if not isinstance(exc, ApiException) or not exc.headers:
        return None
    value = exc.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from the API server; the caller's backoff applies


DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_WRITES = 20
# Items per page of the safety-net resync's lists.
PAGE_SIZE = 500
JOBS_PATH = "/apis/batch/v1/namespaces/{namespace}/jobs"
CUSTOM_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{{plural}}"
MERGE_PATCH = "application/merge-patch+json"
# Takes one page of a list call's items.
OnPage = Callable[[list[Obj]], None]


class Kube:
    """Thin async facade over the Kubernetes client for the operator's resources.

    Every call has a client timeout: the client's default is none, and a call the API
    server never answers would hold its thread and its reconcile forever. Calls run
    on the facade's own threads, at most ``max_writes`` writes at once (the fan-out
    of a Batch proceeds at the API server's pace without flooding it), and after a
    429 or 503 with ``Retry-After`` no call starts before that time has passed.

    Creates take a slot of their own first, and there are fewer of those than write
    slots: a fan-out queues thousands of creates, and a status write (a finished
    child, a Batch's rollup) waiting behind all of them in one FIFO would show
    progress seconds late. With the split it waits behind a few creates at most.
    """

    def __init__(
        self,
        api_client: client.ApiClient | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_writes: int = DEFAULT_MAX_WRITES,
    ) -> None:
        """Use ``api_client``, else one from the loaded configuration; ``timeout`` per call."""
        self.timeout = timeout
        if api_client is None:
            configuration = client.Configuration.get_default_copy()
            # One connection per concurrent call: urllib3's default pool keeps only 4.
            configuration.connection_pool_maxsize = max_writes + 4
            api_client = client.ApiClient(configuration)
        self.api = api_client
        self._executor = ThreadPoolExecutor(
            max_workers=max_writes + 4, thread_name_prefix="kube-api"
        )
        self._writes = asyncio.Semaphore(max_writes)
        # Four fifths for creates (16 of the default 20), the rest kept for status writes.
        self._creates = asyncio.Semaphore(max(1, max_writes - max(1, max_writes // 5)))
        self._paused_until = 0.0
        # Our kinds, Jobs, Pods, Secrets and Events go through `_request`, not the
        # client's generated API classes: BatchV1Api and CoreV1Api (hundreds of validated
        # methods and the models they import) cost ~21 MB of memory and ~3 s of start,
        # and CustomObjectsApi validates every argument and walks every answer again,
        # which for a 1,000-job Batch's status write was ~10 % of the operator's CPU.
        self.coordination = client.CoordinationV1Api(self.api)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.timeout)
        wait = self._paused_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, functools.partial(fn, *args, **kwargs)
            )
        except ApiException as exc:
            pause = retry_after(exc)
            if pause:
                self._paused_until = max(self._paused_until, time.monotonic() + pause)
            raise

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        *,
        query: Mapping[str, Any] | None = None,
        body: Obj | None = None,
        content_type: str = "application/json",
        _request_timeout: float | None = None,
    ) -> Any:
        """One REST call by path, answered as with ``_preload_content=False``.

        ``path`` has ``{name}`` placeholders filled (and quoted) from ``params``; query
        values that are None are left out. Raises ApiException for a non-2xx answer,
        exactly as the generated methods do.
        """
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api.param_serialize(
            method=method,
            resource_path=path,
            path_params=dict(params),
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request, _request_timeout=_request_timeout)
        # Always read the body, even when the caller ignores it: an unread response
        # keeps its connection out of the pool, and every next call pays a TLS handshake.
        response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    def _list_call(
        self, path: str, params: Mapping[str, str], selector: str | None
    ) -> Callable[..., Any]:
        """A list call of ``path`` for `_pages` (its paging keywords as query parameters)."""

        def call(
            *,
            limit: int,
            _continue: str | None = None,
            _preload_content: bool = False,
            _request_timeout: float | None = None,
        ) -> Any:
            query = {"labelSelector": selector, "limit": limit, "continue": _continue}
            return self._request(
                "GET", path, params, query=query, _request_timeout=_request_timeout
            )

        return call

    async def _write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async with self._writes:
            return await self._call(fn, *args, **kwargs)

    async def _create(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async with self._creates:
            return await self._write(fn, *args, **kwargs)

    async def _pages(
        self, fn: Callable[..., Any], *args: Any, on_page: OnPage | None = None, **kwargs: Any
    ) -> list[Obj]:
        """Every item of a list call, page by page; with ``on_page``, handed over and not kept.

        A start-up list of 10,000 objects held at once would set the process's peak
        memory for good (freed memory mostly stays with the process).
        """
        items: list[Obj] = []
        token: str | None = None
        while True:
            page = {"limit": PAGE_SIZE, **({"_continue": token} if token else {})}
            out = _json(await self._call(fn, *args, _preload_content=False, **kwargs, **page))
            if on_page is None:
                items += out.get("items") or []
            else:
                on_page(out.get("items") or [])
            token = (out.get("metadata") or {}).get("continue")
            if not token:
                return items

    async def list_custom(
        self, plural: str, namespace: str | None, on_page: OnPage | None = None
    ) -> list[Obj]:
        """All objects of one of our kinds in a namespace (None: cluster-wide), page by page."""
        if namespace is None:
            call = self._list_call(f"/apis/{GROUP}/{VERSION}/{{plural}}", {"plural": plural}, None)
        else:
            params = {"namespace": namespace, "plural": plural}
            call = self._list_call(CUSTOM_PATH, params, None)
        return await self._pages(call, on_page=on_page)

    async def list_jobs(
        self, namespace: str | None, selector: str, on_page: OnPage | None = None
    ) -> list[Obj]:
        """batch/v1 Jobs matching a label selector, as plain dicts, page by page."""
        path = JOBS_PATH if namespace is not None else "/apis/batch/v1/jobs"
        params = {"namespace": namespace} if namespace is not None else {}
        return await self._pages(self._list_call(path, params, selector), on_page=on_page)

    async def list_pods(
        self, namespace: str | None, selector: str, on_page: OnPage | None = None
    ) -> list[Obj]:
        """Pods matching a label selector (None: cluster-wide), as plain dicts, page by page."""
        path = "/api/v1/namespaces/{namespace}/pods" if namespace is not None else "/api/v1/pods"
        params = {"namespace": namespace} if namespace is not None else {}
        return await self._pages(self._list_call(path, params, selector), on_page=on_page)

    async def create_custom(self, plural: str, body: Obj) -> Obj:
        """Create a custom object."""
        params = {"namespace": body["metadata"]["namespace"], "plural": plural}
        return _json(await self._create(self._request, "POST", CUSTOM_PATH, params, body=body))

    async def get_custom(self, plural: str, namespace: str, name: str) -> Obj:
        """One custom object."""
        params = {"namespace": namespace, "plural": plural, "name": name}
        return _json(await self._call(self._request, "GET", CUSTOM_PATH + "/{name}", params))

    async def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status_patch: Obj,
        resource_version: str | None = None,
    ) -> Obj:
        """Merge-patch the status subresource of a custom object.

        With ``resource_version`` the patch applies only to that version (409 otherwise).
        """
        body: Obj = {"status": status_patch}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        params = {"namespace": namespace, "plural": plural, "name": name}
        out = await self._write(
            self._request,
            "PATCH",
            CUSTOM_PATH + "/{name}/status",
            params,
            body=body,
            content_type=MERGE_PATCH,
        )
        return _json(out)

    async def delete_custom(self, plural: str, namespace: str, name: str) -> None:
        """Delete a custom object; its children go through the garbage collector."""
        await self._write(
            self._request,
            "DELETE",
            CUSTOM_PATH + "/{name}",
            {"namespace": namespace, "plural": plural, "name": name},
            query={"propagationPolicy": "Background"},
        )

    async def create_job(self, body: Obj) -> Obj:
        """Create a batch/v1 Job; returns it as created."""
        namespace = {"namespace": body["metadata"]["namespace"]}
        out = await self._create(self._request, "POST", JOBS_PATH, namespace, body=body)
        return _json(out)

    async def create_secret(self, body: Obj) -> None:
        """Create a core v1 Secret."""
        namespace = {"namespace": body["metadata"]["namespace"]}
        await self._create(
            self._request, "POST", "/api/v1/namespaces/{namespace}/secrets", namespace, body=body
        )

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and (in the background) its Pods."""
        await self._write(
            self._request,
            "DELETE",
            JOBS_PATH + "/{name}",
            {"namespace": namespace, "name": name},
            query={"propagationPolicy": "Background"},
        )

    async def create_event(self, namespace: str, body: Obj) -> None:
        """Create a core v1 Event."""
        await self._create(
            self._request,
            "POST",
            "/api/v1/namespaces/{namespace}/events",
            {"namespace": namespace},
            body=body,
        )

    async def read_secret(self, namespace: str, name: str) -> Obj:
        """A Secret as a dict (``data`` values base64-encoded)."""
        out = await self._call(
            self._request,
            "GET",
            "/api/v1/namespaces/{namespace}/secrets/{name}",
            {"namespace": namespace, "name": name},
        )
        return _json(out)

    async def read_lease(self, namespace: str, name: str) -> Obj | None:
        """The Lease as a dict, or None when it does not exist."""
        try:
            out = await self._call(
                self.coordination.read_namespaced_lease, name, namespace, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _json(out)

    async def create_lease(self, namespace: str, body: Obj) -> None:
        """Create a Lease (409 when another instance was first)."""
        await self._call(self.coordination.create_namespaced_lease, namespace, body)

    async def replace_lease(self, namespace: str, name: str, body: Obj) -> None:
        """Replace a Lease; its resourceVersion makes this a compare-and-swap (409 on a race)."""
        await self._call(self.coordination.replace_namespaced_lease, name, namespace, body)


def _json(response: Any) -> Obj:
    data: Obj = json.loads(response.data)
    return data


def _items(response: Any) -> list[Obj]:
    items: list[Obj] = _json(response).get("items", [])
    return items
