"""``make demo``: a sample video, a local HTTP server and a Batch run by ``audio-extract run``.

Shows several formats, loudness normalisation, a trim, and one job whose source does
not exist (HTTP 404), so the Batch ends ``PartiallySucceeded`` with the failing job's
error code. Everything goes to ``demo-out/`` (or the directory given as argument).
"""

import http.server
import os
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 6


def make_video(path: Path) -> None:
    """A short MP4 (test pattern, a two-tone melody with a quiet passage) made with lavfi."""
    tone = "0.25*sin(2*PI*(440+220*gte(mod(t,2),1))*t)*(0.2+0.8*gte(t,2))+0.01*(random(0)-0.5)"
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={SECONDS}",
            "-f", "lavfi", "-i", f"aevalsrc=exprs='{tone}|{tone}':sample_rate=48000:duration={SECONDS}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-shortest", str(path),
        ],
        check=True,
    )  # fmt: skip


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the media directory without a log line per request."""

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the runner's display is the show."""


def demo_batch(base: str) -> dict[str, object]:
    """The demo Batch: four formats, one normalised, one trimmed, one missing source."""
    return {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "Batch",
        "metadata": {"name": "demo"},
        "spec": {
            "parallelism": 2,
            "defaults": {"output": {"format": "mp3", "quality": "high"}},
            "jobs": [
                {"name": "podcast-mp3", "source": {"url": f"{base}/sample.mp4"}},
                {
                    "name": "master-flac",
                    "source": {"url": f"{base}/sample.mp4"},
                    "output": {"format": "flac", "normalize": True},
                },
                {
                    "name": "mobile-opus",
                    "source": {"url": f"{base}/sample.mp4"},
                    "output": {"format": "opus", "quality": "low", "channels": 1},
                },
                {
                    "name": "teaser-m4a",
                    "source": {"url": f"{base}/sample.mp4"},
                    "output": {"format": "m4a", "startSeconds": 1, "durationSeconds": 3},
                },
                {"name": "missing-source", "source": {"url": f"{base}/no-such-video.mp4"}},
            ],
        },
    }


def main() -> int:
    """Run the demo; 0 when the Batch ended as expected."""
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "demo-out").resolve()
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    video = media / "sample.mp4"
    print(f"making a {SECONDS} s sample video with ffmpeg: {video}")
    make_video(video)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(QuietHandler, directory=str(media))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"serving {media} at {base}")

    batch_file = out / "batch.yaml"
    batch_file.write_text(yaml.safe_dump(demo_batch(base), sort_keys=False))
    status_file = out / "status.yaml"
    # The URL guard refuses loopback addresses unless allowed: the demo's server is one.
    env = {**os.environ, "AUDIOEXTRACT_ALLOW_NETWORKS": "127.0.0.0/8"}
    command = [
        sys.executable, "-m", "audioextract", "run", str(batch_file),
        "--out", str(out / "audio"), "--status", str(status_file),
    ]  # fmt: skip
    print("$ audio-extract run", " ".join(command[4:]), flush=True)
    try:
        rc = subprocess.run(command, env=env, check=False).returncode
    finally:
        server.shutdown()

    status = yaml.safe_load(status_file.read_text())["status"]
    failed = [j for j in status["jobs"] if j["phase"] == "Failed"]
    print()
    print(f"exit code {rc}; Batch phase {status['phase']}")
    for job in failed:
        print(f"  {job['name']}: {job['error']['code']} - {job['error']['message']}")
    print(f"audio files: {out / 'audio'}")
    for path in sorted((out / "audio").iterdir()):
        print(f"  {path.name}  {path.stat().st_size} bytes")
    print(f"status: {status_file}")
    expected = (
        rc == 1
        and status["phase"] == "PartiallySucceeded"
        and [j["error"]["code"] for j in failed] == ["SourceNotFound"]
    )
    if not expected:
        print("the demo did not end as expected (PartiallySucceeded, one SourceNotFound)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
