"""Fixtures shared by every test tier: generated media, a local HTTP server, an S3 server."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import http_server, media, s3


@pytest.fixture(scope="session")
def media_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every test medium (see tests/support/media.py), generated once per session."""
    return media.generate(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def media_server(media_files: dict[str, Path]) -> Iterator[http_server.MediaServer]:
    """The media directory served over HTTP on 127.0.0.1."""
    root = next(iter(media_files.values())).parent
    with http_server.serve(root) as server:
        yield server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1."""
    with s3.moto_server() as endpoint:
        yield endpoint
