"""A Standard Webhooks receiver on 127.0.0.1 in a thread, for tests that run a subprocess.

Every request is verified with the reference ``standardwebhooks`` library; ``hits``
holds the verified ones, ``unverified`` the ids of any that failed verification.
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import standardwebhooks


@dataclass
class Hit:
    """One verified delivery."""

    id: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.body["type"])


@dataclass
class Receiver:
    """What the receiver saw."""

    url: str
    hits: list[Hit] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)


@contextmanager
def receiver(secret: str) -> Iterator[Receiver]:
    """Serve POST / on 127.0.0.1; answers 204 to verified requests and 401 otherwise."""
    verifier = standardwebhooks.Webhook(secret)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                verifier.verify(body, headers)
            except Exception:
                with lock:
                    rec.unverified.append(headers.get("webhook-id", ""))
                status = 401
            else:
                with lock:
                    rec.hits.append(Hit(headers["webhook-id"], headers, json.loads(body)))
                status = 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
