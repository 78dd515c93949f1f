"""DNS rebinding against the real worker, in a private network namespace with its own DNS.

The namespace's DNS answers the allowed address (127.0.0.1) to the first query for a
rebinding name and an "internal" address (127.0.0.2, which the guard refuses) to
every later one. The worker, like an unpinned client would, resolves more than once
(the early check, then each connection). Pinned, each connection goes where its own
check looked: the internal service must never see a request.
"""

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import netns
from tests.support.rebind import ALLOWED, DNS_ADDRESS, INTERNAL
from tests.worker.conftest import RunWorker, media

NAMES = {
    "steady.test": (ALLOWED, ALLOWED),
    "src.rebind.test": (ALLOWED, INTERNAL),
    "dst.rebind.test": (ALLOWED, INTERNAL),
    "put.rebind.test": (ALLOWED, INTERNAL),
}


@dataclass
class World:
    ns: str
    port: int
    events_file: Path

    def events(self, kind: str) -> list[dict[str, Any]]:
        lines = self.events_file.read_text().splitlines() if self.events_file.exists() else []
        return [e for e in map(json.loads, lines) if e["kind"] == kind]

    def wrap(self, argv: list[str]) -> list[str]:
        return netns.exec_argv(self.ns, argv)


@pytest.fixture(scope="module")
def world(
    media_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    events = tmp_path_factory.mktemp("rebind") / "events.jsonl"
    root = next(iter(media_files.values())).parent
    with netns.namespace(DNS_ADDRESS) as ns:
        subprocess.run(
            ["ip", "-n", ns, "addr", "add", f"{DNS_ADDRESS}/32", "dev", "lo"], check=False
        )
        helper = subprocess.Popen(
            netns.exec_argv(
                ns,
                [
                    sys.executable,
                    "-m",
                    "tests.support.rebind",
                    "--media",
                    str(root),
                    "--events",
                    str(events),
                    *(f"{name}={a},{b}" for name, (a, b) in NAMES.items()),
                ],
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert helper.stdout is not None
            port = int(helper.stdout.readline())
            yield World(ns, port, events)
        finally:
            assert helper.stdin is not None
            helper.stdin.close()
            helper.kill()
            helper.wait()


# Only 127.0.0.1 is allowed: 127.0.0.2 plays an internal address.
ENV = {"AUDIOEXTRACT_ALLOW_NETWORKS": "127.0.0.1/32"}


def test_steady_name_works(run_worker: RunWorker, world: World) -> None:
    """The control: the same setup without rebinding succeeds."""
    run = run_worker(
        {"url": f"http://steady.test:{world.port}/av.mp4"},
        env=ENV,
        allow_loopback=False,
        wrap=world.wrap,
    )
    assert run.returncode == 0, run.stderr


def test_rebinding_source_never_reaches_the_internal_address(
    run_worker: RunWorker, world: World
) -> None:
    run = run_worker(
        {"url": f"http://src.rebind.test:{world.port}/av.mp4"},
        env=ENV,
        allow_loopback=False,
        wrap=world.wrap,
    )
    answers = [e["address"] for e in world.events("dns") if e["name"] == "src.rebind.test"]
    assert answers[:2] == [ALLOWED, INTERNAL], "the name was rebound between lookups"
    assert (run.returncode, run.error["code"]) == (12, "SourceForbidden"), run.stderr
    assert world.events("internal") == []


@pytest.mark.parametrize(
    "destination",
    [
        {"s3": {"bucket": "audio", "endpoint": "http://dst.rebind.test:{port}"}},
        {"url": "http://put.rebind.test:{port}/upload/x.mp3?X-Amz-Signature=s3cr3t"},
    ],
)
def test_rebinding_destination_never_reaches_the_internal_address(
    run_worker: RunWorker, world: World, destination: dict[str, Any]
) -> None:
    dest = json.loads(json.dumps(destination).replace("{port}", str(world.port)))
    run = run_worker(
        media("av.mp4"),
        {"format": "mp3", "destination": dest},
        env={**ENV, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"},
        allow_loopback=False,
        wrap=world.wrap,
    )
    # The early check saw the allowed address; the upload's own lookup got the
    # internal one and was refused, however often boto3 retried.
    assert (run.returncode, run.error["code"]) == (10, "InvalidSpec"), run.stderr
    assert "blocked by the URL guard" in run.error["message"]
    assert world.events("internal") == []
    assert "s3cr3t" not in run.stderr and "s3cr3t" not in run.raw
