"""The operator image: the operator's stack, its CLI, and no media tools."""

from collections.abc import Iterator

import pytest

from tests.images.conftest import assert_root_unchanged
from tests.support.container import Container


@pytest.fixture(scope="module", autouse=True)
def root_unchanged(operator_image: Container) -> Iterator[None]:
    """Nothing here may change a file of the image (the root is mounted read-only)."""
    yield from assert_root_unchanged(operator_image)


def test_operator_help_runs_as_the_entrypoint(operator_image: Container) -> None:
    proc = operator_image.run(["--help"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: audio-extract operator")


def test_operator_stack_imports(operator_image: Container) -> None:
    proc = operator_image.run(
        ["-c", "import kopf, kubernetes, prometheus_client, audioextract.handlers.main"],
        entrypoint=["python"],
    )
    assert proc.returncode == 0, proc.stderr


def test_operator_image_has_no_ffmpeg(operator_image: Container) -> None:
    proc = operator_image.run(["-c", "command -v ffmpeg ffprobe"], entrypoint=["/bin/sh"])
    assert proc.returncode != 0 and proc.stdout == ""
