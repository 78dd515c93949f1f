"""A real HTTP server on 127.0.0.1 for sources and upload destinations.

Paths (FILE is a name in the served directory):
  /range/FILE        200/206 with Range support
  /norange/FILE      200 only, no Accept-Ranges
  /status/CODE       that status, empty body
  /redirect/N/REST   a 302 chain of N hops ending at /REST
  /redirect-to?url=U a 302 to an arbitrary URL U
  /hang              accepts the request and never answers
  /slow/FILE         trickles the file slowly
  /flaky/N/FILE      503 for the first N GETs of this path (query included), then as /range
  /stall/N/FILE      the first N GETs of this path never answer (as /hang), then as /range
  /delay/MS/FILE     as /range, each answer held back MS milliseconds (long, sure windows)
  /drop/FILE         as /range, but every answer closes the connection halfway through its body
  /nolength/FILE     200, no Content-Length and no ranges: the body ends when the connection does
  PUT /upload/NAME   stores the body (see ``uploads``); PUT /status/CODE answers CODE
"""

import re
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


class MediaServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.uploads: dict[str, bytes] = {}
        self.connections = 0
        self.stop_hang = threading.Event()
        # (start, end, path with query) of every GET, for concurrency measurements.
        self.spans: list[tuple[float, float, str]] = []
        self.flaky_seen: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MediaServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _file(self, name: str) -> Path | None:
        path = (self.server.root / name).resolve()
        if self.server.root.resolve() not in path.parents or not path.is_file():
            return None
        return path

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        started = time.monotonic()
        try:
            self._get()
        finally:
            with self.server._lock:
                self.server.spans.append((started, time.monotonic(), self.path))

    def _get(self) -> None:
        self.server.requests.append(("GET", self.path, dict(self.headers)))
        parts = urlsplit(self.path)
        segs = parts.path.lstrip("/").split("/", 1)
        kind, rest = segs[0], (segs[1] if len(segs) > 1 else "")
        if kind == "status":
            self._empty(int(rest))
        elif kind == "redirect":
            n, _, target = rest.partition("/")
            loc = f"/redirect/{int(n) - 1}/{target}" if int(n) > 1 else f"/{target}"
            self._empty(302, {"Location": loc})
        elif kind == "redirect-to":
            self._empty(302, {"Location": parse_qs(parts.query)["url"][0]})
        elif kind in ("flaky", "stall"):
            n, _, name = rest.partition("/")
            with self.server._lock:
                seen = self.server.flaky_seen.get(self.path, 0)
                self.server.flaky_seen[self.path] = seen + 1
            path = self._file(name)
            if seen < int(n) and kind == "stall":
                self.server.stop_hang.wait(120)
            elif seen < int(n):
                self._empty(503)
            elif path is None:
                self._empty(404)
            else:
                self._serve(path, ranges=True, slow=False)
        elif kind == "delay":
            ms, _, name = rest.partition("/")
            path = self._file(name)
            if path is None:
                self._empty(404)
                return
            self.server.stop_hang.wait(int(ms) / 1000)
            self._serve(path, ranges=True, slow=False)
        elif kind == "hang":
            self.server.stop_hang.wait(120)
        elif kind == "nolength":
            path = self._file(rest)
            if path is None:
                self._empty(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            with suppress(OSError):
                self.wfile.write(path.read_bytes())
        elif kind in ("range", "norange", "slow", "drop"):
            path = self._file(rest)
            if path is None:
                self._empty(404)
                return
            self._serve(path, ranges=kind != "norange", slow=kind == "slow", drop=kind == "drop")
        else:
            self._empty(404)

    def _serve(self, path: Path, *, ranges: bool, slow: bool, drop: bool = False) -> None:
        data = path.read_bytes()
        start, end = 0, len(data) - 1
        m = re.match(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "")) if ranges else None
        if m and (m[1] or m[2]):
            if m[1]:
                start = int(m[1])
                end = int(m[2]) if m[2] else end
            else:
                start = max(0, len(data) - int(m[2]))
            if start >= len(data):
                self._empty(416, {"Content-Range": f"bytes */{len(data)}"})
                return
            end = min(end, len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        if ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        body = data[start : end + 1]
        if drop:
            # Content-Length promised the whole body; the connection ends at half of it.
            self.close_connection = True
            body = body[: len(body) // 2]
        try:
            if slow:
                for i in range(0, len(body), 2048):
                    self.wfile.write(body[i : i + 2048])
                    self.wfile.flush()
                    time.sleep(0.2)
            else:
                self.wfile.write(body)
        except OSError:
            pass

    def do_PUT(self) -> None:
        self.server.requests.append(("PUT", self.path, dict(self.headers)))
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        parts = urlsplit(self.path)
        segs = parts.path.lstrip("/").split("/", 1)
        if segs[0] == "status":
            self._empty(int(segs[1]))
            return
        self.server.uploads[segs[1] if len(segs) > 1 else ""] = body
        self._empty(200)


@contextmanager
def serve(root: Path) -> Iterator[MediaServer]:
    """Run a MediaServer for ``root`` in a thread."""
    server = MediaServer(root)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop_hang.set()
        server.shutdown()
        server.server_close()


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where nothing listens (bound, never listening, so no one else takes it)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 and localhost; returns (cert, key) PEM paths."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not cert.exists():
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
    return cert, key


@contextmanager
def serve_tls(root: Path, cert: Path, key: Path) -> Iterator[MediaServer]:
    """A MediaServer speaking HTTPS with the given certificate."""
    server = MediaServer(root)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
