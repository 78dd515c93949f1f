"""Private network namespaces for tests that need several addresses or their own DNS.

Only loopback addresses inside a namespace this module created are ever used; the
namespace and its /etc/netns/NAME directory (resolv.conf and hosts that
``ip netns exec`` mounts over /etc) are removed afterwards.
"""

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def available() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    return None


@contextmanager
def namespace(resolver: str) -> Iterator[str]:
    """A fresh namespace with loopback up and ``resolver`` as its only DNS server."""
    reason = available()
    if reason:
        pytest.skip(reason)
    name = f"ae-test-{os.getpid()}"
    etc = Path("/etc/netns") / name
    created_parent = not etc.parent.exists()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(f"nameserver {resolver}\noptions timeout:2 attempts:1\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        yield name
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        if created_parent:
            with contextlib.suppress(OSError):
                etc.parent.rmdir()
        subprocess.run(["ip", "netns", "del", name], check=False)


def exec_argv(name: str, argv: list[str]) -> list[str]:
    """``argv`` run inside namespace ``name``."""
    return ["ip", "netns", "exec", name, *argv]
