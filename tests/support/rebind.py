"""A DNS-rebinding world inside a network namespace (run as ``python -m tests.support.rebind``).

Serves, on the namespace's own loopback:

- DNS on 127.0.0.53:53: names listed as ``NAME=FIRST,THEN`` answer ``FIRST`` to the
  first A query and ``THEN`` to every later one (TTL 0: the classic rebinding
  attack, where the check sees a good address and the connection a bad one);
- the media directory over HTTP on 127.0.0.1:PORT (the allowed address);
- an "internal service" on 127.0.0.2:PORT that answers 500 and records every
  request (the address the guard must keep the worker away from).

Every DNS answer and every internal request is appended to the event file as a JSON
line, so the test reads what happened after the worker ran.
"""

import argparse
import json
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DNS_ADDRESS = "127.0.0.53"
ALLOWED = "127.0.0.1"
INTERNAL = "127.0.0.2"


def _record(events: Path, lock: threading.Lock, **event: Any) -> None:
    with lock, events.open("a") as out:
        out.write(json.dumps(event) + "\n")


def _question(packet: bytes) -> tuple[str, int, int]:
    labels, offset = [], 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii").lower())
        offset += 1 + length
    qtype = struct.unpack("!H", packet[offset + 1 : offset + 3])[0]
    return ".".join(labels), qtype, offset + 5


def _answer(packet: bytes, address: str | None, end: int, known: bool) -> bytes:
    rcode = 0 if known else 3
    header = packet[:2] + struct.pack("!HHHHH", 0x8180 | rcode, 1, 1 if address else 0, 0, 0)
    body = packet[12:end]
    if address:
        body += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4) + socket.inet_aton(address)
    return header + body


def serve_dns(plan: dict[str, tuple[str, str]], events: Path, lock: threading.Lock) -> None:
    """Answer A queries per ``plan``; AAAA and others get no address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((DNS_ADDRESS, 53))
    served: dict[str, int] = {}
    while True:
        packet, peer = sock.recvfrom(512)
        try:
            name, qtype, end = _question(packet)
        except (IndexError, UnicodeDecodeError, struct.error):
            continue
        address = None
        if name in plan and qtype == 1:
            first, then = plan[name]
            address = first if served.get(name, 0) == 0 else then
            served[name] = served.get(name, 0) + 1
            _record(events, lock, kind="dns", name=name, address=address)
        sock.sendto(_answer(packet, address, end, name in plan), peer)


def main() -> None:
    """Start DNS, the media server and the internal service; print the port; run forever."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--media", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("names", nargs="+", help="NAME=FIRST,THEN")
    args = parser.parse_args()
    events, lock = Path(args.events), threading.Lock()
    plan = {}
    for entry in args.names:
        name, _, answers = entry.partition("=")
        first, _, then = answers.partition(",")
        plan[name.lower()] = (first, then or first)

    media_dir = args.media

    class Media(SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, directory=media_dir, **k)

        def log_message(self, format: str, *a: Any) -> None:
            return

    class Internal(BaseHTTPRequestHandler):
        def log_message(self, format: str, *a: Any) -> None:
            return

        def _hit(self) -> None:
            _record(events, lock, kind="internal", method=self.command, path=self.path)
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PUT = do_POST = do_HEAD = _hit  # noqa: N815 - http.server names

    media = ThreadingHTTPServer((ALLOWED, 0), Media)
    port = media.server_address[1]
    internal = ThreadingHTTPServer((INTERNAL, port), Internal)
    for server in (media, internal):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=serve_dns, args=(plan, events, lock), daemon=True).start()
    print(port, flush=True)
    sys.stdin.read()  # until the test closes our stdin


if __name__ == "__main__":
    main()
