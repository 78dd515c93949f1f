"""The worker image runs the worker and the local runner as a restricted Pod would run it.

Every process runs as the image's own user, on a read-only root filesystem, with only
/tmp (the Pod's emptyDir), /work (a volume) and the termination-message file writable;
after each test the container's root filesystem is compared with its state before.
"""

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from audioextract.api.defaults import DEFAULT_LOUDNESS
from audioextract.api.errors import EXIT_CODES
from audioextract.api.status import JobError, JobResult
from audioextract.webhooks.signing import generate_secret
from tests.images.conftest import assert_root_unchanged
from tests.support import http_server, media
from tests.support.container import Container
from tests.support.webhook_receiver import receiver

LOOPBACK = "127.0.0.0/8"
TERMINATION_LOG = "/dev/termination-log"
# Beyond tests/support/media.py: what broadcast recordings carry.
EXTRA_MEDIA = {
    # MPEG-2 video with MP2 audio in an MPEG transport stream (broadcast recordings).
    "broadcast.ts": [
        *["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=4"],
        *[
            "-f",
            "lavfi",
            "-i",
            "aevalsrc=exprs='0.2*sin(2*PI*300*t)+0.02*(random(0)-0.5)':"
            "sample_rate=48000:duration=4",
        ],
        *["-c:v", "mpeg2video", "-c:a", "mp2", "-b:a", "192k", "-f", "mpegts"],
    ],
}
CODECS = {
    "mp3": "mp3",
    "aac": "aac",
    "m4a": "aac",
    "flac": "flac",
    "wav": "pcm_s16le",
    "opus": "opus",
    "ogg": "vorbis",
    "alac": "alac",
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated media (host ffmpeg): tests/support/media.py's plus EXTRA_MEDIA."""
    directory = tmp_path_factory.mktemp("image-media")
    media.generate(
        directory, names=["av.mp4", "av.mkv", "nofaststart.mp4", "video-only.mp4", "surround.mkv"]
    )
    truncated = (directory / "nofaststart.mp4").read_bytes()
    (directory / "truncated.mp4").write_bytes(truncated[: len(truncated) // 3])
    for name, args in EXTRA_MEDIA.items():
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", *args, "-shortest", str(directory / name)],
            check=True,
        )
    return directory


@pytest.fixture(scope="module", autouse=True)
def root_unchanged(worker: Container) -> Iterator[None]:
    """No test here may change a file of the image outside the mounted volumes."""
    yield from assert_root_unchanged(worker)


def stage(sources: Path, workdir: Path, *names: str) -> None:
    """Copy media onto the volume (workdir/media), owned by the image's user."""
    target = workdir / "media"
    target.mkdir(exist_ok=True)
    os.chown(target, workdir.stat().st_uid, workdir.stat().st_gid)
    for name in names:
        (target / name).write_bytes((sources / name).read_bytes())


def on_volume(sources: Path, workdir: Path, name: str) -> dict[str, Any]:
    """A source file staged on the ``media`` volume, as the task names it."""
    stage(sources, workdir, name)
    return {"volume": {"claimName": "media", "path": name}}


def termination_log(tmp_path: Path, workdir: Path) -> Path:
    """The host file behind /dev/termination-log, writable by the image's user."""
    path = tmp_path / "termination-log"
    path.touch()
    os.chown(path, workdir.stat().st_uid, workdir.stat().st_gid)
    return path


def run_worker(
    worker: Container,
    tmp_path: Path,
    workdir: Path,
    source: dict[str, Any],
    output: dict[str, Any],
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`audio-extract worker` as the Job's Pod runs it: task in the environment, result
    in the termination message, claims `media` and `out` mounted."""
    (workdir / "out").mkdir(exist_ok=True)
    os.chown(workdir / "out", workdir.stat().st_uid, workdir.stat().st_gid)
    task = {
        "name": "job",
        "source": source,
        "output": {**output, "destination": {"volume": {"claimName": "out"}}},
        "timeoutSeconds": 120,
    }
    log = termination_log(tmp_path, workdir)
    proc = worker.run(
        [
            "worker",
            "--result",
            TERMINATION_LOG,
            "--volume=media=/work/media",
            "--volume=out=/work/out",
        ],
        mounts={workdir: "/work", log: TERMINATION_LOG},
        env={"AUDIOEXTRACT_TASK": json.dumps(task), "AUDIOEXTRACT_ALLOW_NETWORKS": LOOPBACK},
    )
    raw = log.read_text()
    assert raw, f"no termination message; exit {proc.returncode}; stderr:\n{proc.stderr}"
    assert len(raw.encode()) <= 4096
    return proc, json.loads(raw)


def test_the_process_is_the_images_user_on_a_read_only_root(worker: Container) -> None:
    assert worker.user == "65532:65532"
    proc = worker.run(
        ["-c", "id -u; id -g; grep CapEff /proc/self/status; touch /opt/probe"],
        entrypoint=["/bin/sh"],
    )
    lines = proc.stdout.split()
    assert lines[:2] == ["65532", "65532"]
    assert lines[2:] == ["CapEff:", "0000000000000000"]
    assert proc.returncode != 0
    assert "Read-only file system" in proc.stderr


@pytest.mark.parametrize("fmt", ["mp3", "flac"])
def test_worker_converts_a_video_on_a_volume(
    worker: Container, tmp_path: Path, workdir: Path, sources: Path, fmt: str
) -> None:
    proc, result = run_worker(
        worker,
        tmp_path,
        workdir,
        on_volume(sources, workdir, "av.mp4"),
        {"format": fmt, "normalize": fmt == "mp3", "tags": {"title": "Episode 42"}},
    )
    assert proc.returncode == 0, proc.stderr
    parsed = JobResult.model_validate(result)
    assert parsed.format == fmt and parsed.codec == CODECS[fmt]
    out = workdir / "out" / f"job.{fmt}"
    assert out.stat().st_uid == 65532
    probe = media.probe(out)
    assert probe.codec == CODECS[fmt]
    assert probe.duration == pytest.approx(media.SECONDS, abs=0.2)
    assert probe.tags["title"] == "Episode 42"
    if fmt == "mp3":
        # EBU R128 normalisation (ebur128 + loudnorm) ran inside the image.
        target = DEFAULT_LOUDNESS.integrated_lufs
        assert abs(media.integrated_loudness(sources / "av.mp4") - target) > 3
        assert media.integrated_loudness(out) == pytest.approx(target, abs=1.0)


def test_worker_streams_an_http_source_through_its_proxy(
    worker: Container, tmp_path: Path, workdir: Path, sources: Path
) -> None:
    # ffmpeg's http and tcp protocols of the minimal build, behind the worker's URL guard.
    with http_server.serve(sources) as server:
        proc, result = run_worker(
            worker, tmp_path, workdir, {"url": server.url("range/broadcast.ts")}, {"format": "opus"}
        )
    assert proc.returncode == 0, proc.stderr
    assert JobResult.model_validate(result).codec == "opus"
    assert media.probe(workdir / "out" / "job.opus").channels == 1


@pytest.mark.parametrize(
    ("name", "code"), [("truncated.mp4", "DecodeFailed"), ("video-only.mp4", "NoAudioStream")]
)
def test_a_bad_source_fails_with_its_code_in_the_termination_message(
    worker: Container, tmp_path: Path, workdir: Path, sources: Path, name: str, code: str
) -> None:
    # The minimal ffmpeg has no video decoder: probing still sees the video-only file.
    source = on_volume(sources, workdir, name)
    proc, result = run_worker(worker, tmp_path, workdir, source, {"format": "mp3"})
    error = JobError.model_validate(result["error"])
    assert error.code == code
    assert proc.returncode == EXIT_CODES[error.code].code
    assert not list((workdir / "out").iterdir())


def test_local_runner_runs_a_batch_inside_the_image(
    worker: Container, workdir: Path, sources: Path
) -> None:
    """`docker run -v "$PWD:/work" IMAGE run batch.yaml`: every format, signed webhooks."""
    stage(sources, workdir, "av.mp4", "av.mkv", "surround.mkv", "broadcast.ts")
    inputs = {
        "mp3": "surround.mkv",  # 5.1 downmixed to stereo
        "aac": "broadcast.ts",
        "m4a": "av.mp4",  # stream copy
        "flac": "surround.mkv",
        "wav": "av.mkv",
        "opus": "surround.mkv",  # 5.1(side) remapped to libopus's 5.1
        "ogg": "av.mp4",
        "alac": "broadcast.ts",
    }
    secret = generate_secret()
    with receiver(secret) as rec:
        batch = {
            "apiVersion": "audioextract.dev/v1alpha1",
            "kind": "Batch",
            "metadata": {"name": "episode-42"},
            "spec": {
                "webhook": {"url": rec.url, "secretRef": {"name": "hook", "key": "secret"}},
                "parallelism": 2,
                "jobs": [
                    {
                        "name": fmt,
                        "source": {"volume": {"claimName": "media", "path": name}},
                        "output": {"format": fmt, "normalize": fmt == "opus"},
                    }
                    for fmt, name in inputs.items()
                ],
            },
        }
        (workdir / "batch.yaml").write_text(yaml.safe_dump(batch))
        proc = worker.run(
            ["run", "batch.yaml", "--volume", "media=/work/media", "--status", "status.yaml"],
            mounts={workdir: "/work"},
            env={
                "AUDIOEXTRACT_ALLOW_NETWORKS": LOOPBACK,
                "AUDIOEXTRACT_WEBHOOK_SECRET": secret,
            },
            timeout=300,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = yaml.safe_load((workdir / "status.yaml").read_text())["status"]
    assert status["phase"] == "Succeeded"
    jobs = {j["name"]: j for j in status["jobs"]}
    assert set(jobs) == set(inputs)
    for fmt, job in jobs.items():
        assert job["phase"] == "Succeeded", job
        uri = job["result"]["uri"]
        out = workdir / "out" / uri.rsplit("/", 1)[1]
        assert out.stat().st_uid == 65532, fmt
        probe = media.probe(out)
        assert probe.codec == CODECS[fmt], fmt
        assert probe.duration == pytest.approx(media.SECONDS, abs=0.25), fmt
    assert media.probe(workdir / "out" / "episode-42-mp3.mp3").channels == 2
    assert media.probe(workdir / "out" / "episode-42-flac.flac").channels == 6
    assert not rec.unverified
    types = sorted(hit.type for hit in rec.hits)
    assert types.count("job.completed") == len(inputs)
    assert "batch.completed" in types


def test_worker_image_has_no_operator_stack(worker: Container) -> None:
    for module in ("kopf", "kubernetes"):
        proc = worker.run(["-c", f"import {module}"], entrypoint=["python"])
        assert proc.returncode == 1
        assert f"No module named '{module}'" in proc.stderr
    # ...but everything the worker and the local runner need imports.
    proc = worker.run(
        ["-c", "import audioextract.worker.main, audioextract.local.runner, aiohttp, boto3"],
        entrypoint=["python"],
    )
    assert proc.returncode == 0, proc.stderr
