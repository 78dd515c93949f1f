"""Fixtures of the image tier: containers of the built worker and operator images.

Build the images first (`make images IMAGE_BUILD=../shared/images/build`, docs/images.md);
without them, or without buildah or root, every test here is skipped with the reason.
The names are `make images`' (override with $WORKER_IMAGE / $OPERATOR_IMAGE).
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.container import (
    OPERATOR_IMAGE,
    WORKER_IMAGE,
    Container,
    container_or_skip,
    diff,
)

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.images)


@pytest.fixture(scope="session")
def worker() -> Iterator[Container]:
    """A container of the worker image (one rootfs for the session)."""
    yield from container_or_skip(WORKER_IMAGE)


@pytest.fixture(scope="session")
def operator_image() -> Iterator[Container]:
    """A container of the operator image."""
    yield from container_or_skip(OPERATOR_IMAGE)


def assert_root_unchanged(ctr: Container) -> Iterator[None]:
    """Body of a module fixture: no file of the image outside the volumes changed.

    The root is mounted read-only already; this compares every path's type, mode,
    owner, size, mtime and link target with the state before the module's first test
    (once per module: walking a root filesystem takes seconds).
    """
    before = ctr.baseline
    yield
    assert diff(before, ctr.snapshot()) == []


@pytest.fixture
def workdir(tmp_path: Path, worker: Container) -> Path:
    """A host directory the image's user owns, to mount at /work (like a volume)."""
    uid, gid = (int(x) for x in worker.user.split(":"))
    directory = tmp_path / "work"
    directory.mkdir()
    os.chown(directory, uid, gid)
    return directory
