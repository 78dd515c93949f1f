"""What both images contain and declare: the Dockerfile rules of docs/images.md, checked
on the built images rather than on the Dockerfiles' text."""

import re
from pathlib import Path

import pytest

import audioextract
from audioextract.worker.command import DEMUXERS
from tests.support.container import Container

WORKER_BUDGET_BYTES = 300 * 1000 * 1000  # docs/images.md
COMPILERS = re.compile(r"^usr/(local/)?bin/(cc|c\+\+|gcc|g\+\+|as|ld|nasm|clang)(-[\d.]+)?$")
LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.licenses",
)


@pytest.fixture(params=["worker", "operator_image"])
def image(request: pytest.FixtureRequest) -> Container:
    ctr: Container = request.getfixturevalue(request.param)
    return ctr


def test_config_is_non_root_exec_form_and_labelled(image: Container) -> None:
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", image.user), image.user
    entrypoint = image.config["Entrypoint"]
    assert entrypoint[0] == "audio-extract" and entrypoint[:2] != ["/bin/sh", "-c"]
    labels = image.config["Labels"]
    assert all(labels.get(key) for key in LABELS), labels
    assert labels["org.opencontainers.image.version"] == audioextract.__version__


def test_no_compilers_pip_or_package_caches(image: Container) -> None:
    paths = image.baseline
    assert not [p for p in paths if COMPILERS.match(p)]
    assert not [p for p in paths if re.search(r"(^|/)(pip|pip3)$|/site-packages/pip/", p)]
    assert not [p for p in paths if p.startswith("var/lib/apt/lists/") and "partial" not in p]
    assert not [p for p in paths if p.startswith("var/cache/apt/") and p.endswith((".bin", ".deb"))]
    assert not [p for p in paths if re.search(r"(^|/)\.cache/pip(/|$)", p)]
    # The venv holds the package, installed from its wheel (not a source tree).
    assert not [p for p in paths if p.startswith("src/")]


def test_worker_image_size_is_within_budget(worker: Container) -> None:
    total = sum(f.size for f in worker.baseline.values() if f.link is None and f.mode >> 12 == 0o10)
    assert total <= WORKER_BUDGET_BYTES, f"{total / 1e6:.0f} MB"


def test_worker_ffmpeg_is_the_minimal_build(worker: Container) -> None:
    """Only the allow-listed demuxers and protocols exist (docs/images.md)."""
    root = Path(worker.rootfs)
    assert (root / "usr/local/bin/ffmpeg").is_file() and not (root / "usr/bin/ffmpeg").exists()
    listing = worker.run(["-hide_banner", "-demuxers"], entrypoint=["ffmpeg"]).stdout
    # One line per demuxer: " D  mov,mp4,m4a,3gp,3g2,mj2  QuickTime / MOV".
    built = [
        set(line.split()[1].split(","))
        for line in listing.splitlines()
        if line[:3].strip() == "D" and len(line.split()) > 1
    ]
    allowed = set(DEMUXERS.split(","))
    # The build and the worker's allow-list agree both ways.
    assert allowed <= set().union(*built)
    assert [names for names in built if not names & allowed] == []
    protocols = worker.run(["-hide_banner", "-protocols"], entrypoint=["ffmpeg"]).stdout
    inputs = protocols.split("Input:")[1].split("Output:")[0].split()
    assert sorted(inputs) == ["file", "http", "pipe", "tcp"]
