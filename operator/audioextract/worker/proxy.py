"""A guard proxy inside the worker process: the only server ffmpeg may talk to.

ffmpeg resolves names and follows redirects itself, so checking a URL before handing
it over proves nothing about the connections ffmpeg then makes. Instead ffmpeg gets
``http://127.0.0.1:<port>/<token>`` and this proxy fetches the real URL with
:mod:`audioextract.worker.net` (address pinned, every redirect hop checked, TLS
verified), forwarding Range requests so that ffmpeg can still seek. It also keeps
the facts the worker needs to explain a failure (the upstream's HTTP status,
network errors, Range support) and enforces the input size limit.
"""

import http.client
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from audioextract.api.constants import ErrorCode
from audioextract.worker.errors import WorkerError
from audioextract.worker.net import NetConfig, open_get, status_error

CHUNK = 256 * 1024
FORWARDED = (
    "Content-Type",
    "Content-Length",
    "Content-Range",
    "Accept-Ranges",
    "Last-Modified",
    "ETag",
)


def declared_size(resp: http.client.HTTPResponse) -> int | None:
    """The resource's full size from Content-Range (206) or Content-Length (200)."""
    content_range = resp.getheader("Content-Range") or ""
    if "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    length = resp.getheader("Content-Length")
    if resp.status == 200 and length and length.isdigit():
        return int(length)
    return None


class GuardProxy:
    """Serves one upstream URL on a loopback port; use as a context manager."""

    def __init__(self, url: str, config: NetConfig, max_bytes: int) -> None:
        self._url = url
        self.config = config
        self.max_bytes = max_bytes
        self.token = secrets.token_urlsafe(16)
        self.error: WorkerError | None = None
        self.range_supported: bool | None = None
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="guard-proxy", daemon=True
        )

    @property
    def local_url(self) -> str:
        """The URL ffmpeg is given; it carries no part of the real one."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{self.token}"

    def __enter__(self) -> "GuardProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, error: WorkerError) -> None:
        """Keep the first failure: it explains why ffmpeg then failed."""
        with self._lock:
            if self.error is None:
                self.error = error

    def upstream_url(self) -> str:
        """The real URL (with its secrets); only the proxy's own requests use it."""
        return self._url


class _QuietServer(ThreadingHTTPServer):
    """Never prints a traceback: the worker's stderr is its JSON log."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Record an unexpected failure while relaying as the source's failure."""
        proxy: GuardProxy = self.proxy  # type: ignore[attr-defined]
        kind = sys.exc_info()[0]
        proxy.record(
            WorkerError(
                ErrorCode.SOURCE_UNREACHABLE,
                f"relaying the source failed: {kind.__name__ if kind else 'error'}",
            )
        )


class _Handler(BaseHTTPRequestHandler):
    server_version = "audioextract-guard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        # The default logs request lines to stderr, which would break the JSON log.
        return

    def do_GET(self) -> None:
        proxy: GuardProxy = self.server.proxy  # type: ignore[attr-defined]
        if self.path != f"/{proxy.token}":
            self.send_error(404)
            return
        headers = {}
        if self.headers.get("Range"):
            headers["Range"] = self.headers["Range"]
        try:
            conn, resp, final_url = open_get(proxy.upstream_url(), proxy.config, headers)
        except WorkerError as exc:
            proxy.record(exc)
            self.send_error(502)
            return
        try:
            self._relay(proxy, resp, final_url)
        finally:
            conn.close()

    def _relay(self, proxy: GuardProxy, resp: http.client.HTTPResponse, url: str) -> None:
        if resp.status == 416:
            # A seek past the end: ffmpeg handles it, it is no failure of the source.
            self.send_error(416)
            return
        error = status_error(resp.status, url)
        if error is not None:
            proxy.record(error)
            self.send_error(resp.status if resp.status < 500 else 502)
            return
        size = declared_size(resp)
        if size is not None and size > proxy.max_bytes:
            proxy.record(_too_large(proxy.max_bytes, size))
            self.send_error(413)
            return
        if resp.status == 206 or (resp.getheader("Accept-Ranges") or "").lower() == "bytes":
            proxy.range_supported = True
        elif proxy.range_supported is None:
            proxy.range_supported = False
        self.send_response(resp.status)
        for name in FORWARDED:
            value = resp.getheader(name)
            if value is not None:
                self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        while True:
            try:
                chunk = resp.read1(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                proxy.record(
                    WorkerError(ErrorCode.SOURCE_UNREACHABLE, f"reading the source failed: {exc}")
                )
                return
            if not chunk:
                if resp.length:
                    # http.client's read1 ends quietly when the upstream closes early.
                    proxy.record(
                        WorkerError(
                            ErrorCode.SOURCE_UNREACHABLE,
                            f"the source's connection closed after {sent} bytes, "
                            f"{resp.length} bytes short of its Content-Length",
                        )
                    )
                return
            sent += len(chunk)
            if sent > proxy.max_bytes:
                proxy.record(_too_large(proxy.max_bytes, None))
                return
            try:
                self.wfile.write(chunk)
            except OSError:
                # ffmpeg closed the connection (a seek, or it has what it needs).
                return


def _too_large(limit: int, size: int | None) -> WorkerError:
    what = f"{size} bytes" if size is not None else "more bytes than allowed"
    return WorkerError(ErrorCode.INPUT_TOO_LARGE, f"source is {what}; the limit is {limit} bytes")
