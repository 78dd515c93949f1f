"""A real S3-compatible server (moto in server mode) on 127.0.0.1."""

import http.client
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's threaded server; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def client(endpoint: str) -> Any:
    """A boto3 client for the server with the test credentials."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
    )


@dataclass(frozen=True)
class SignedRequest:
    """One request as the S3 server saw it: who signed it, with which session token."""

    method: str
    path: str
    key_id: str | None
    session_token: str | None


_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def _signer(path: str, headers: Any) -> tuple[str | None, str | None]:
    query = parse_qs(urlsplit(path).query)
    match = _CREDENTIAL.search(headers.get("Authorization", ""))
    key_id = match[1] if match else None
    if key_id is None and "X-Amz-Credential" in query:
        key_id = query["X-Amz-Credential"][0].split("/", 1)[0]
    token = headers.get("X-Amz-Security-Token") or query.get("X-Amz-Security-Token", [None])[0]
    return key_id, token


@contextmanager
def recording_proxy(
    upstream: str, bind: str = "127.0.0.1"
) -> Iterator[tuple[str, list[SignedRequest]]]:
    """A pass-through in front of the S3 server that records which key signed each request.

    Yields its endpoint URL and the (growing) list of requests. Headers and bodies go
    through unchanged, so signatures stay valid for the server behind it.
    """
    target = urlsplit(upstream)
    records: list[SignedRequest] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            key_id, token = _signer(self.path, self.headers)
            records.append(SignedRequest(self.command, self.path, key_id, token))
            conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.send_response(resp.status)
            for name, value in resp.getheaders():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815 - http.server names

    server = ThreadingHTTPServer((bind, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{bind}:{server.server_address[1]}", records
    finally:
        server.shutdown()
        server.server_close()
