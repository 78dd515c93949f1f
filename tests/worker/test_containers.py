"""Common containers are read; what can reach other files or URLs is refused (docs/worker.md)."""

from pathlib import Path

import pytest

from audioextract.worker.command import ALLOWED_DEMUXERS
from audioextract.worker.errors import WorkerError
from tests.support import media as m
from tests.worker.conftest import InProcess, media

TONE = "aevalsrc=exprs='0.2*sin(2*PI*440*t)+0.02*(random(0)-0.5)':sample_rate=44100:d=1.5"
# file name -> ffmpeg output options; every container ffmpeg here can write.
CONTAINERS = {
    "a.ts": ["-c:a", "mp2", "-f", "mpegts"],
    "a.mpg": ["-c:a", "mp2", "-f", "mpeg"],
    "a.avi": ["-c:a", "libmp3lame"],
    "a.wma": ["-c:a", "wmav2"],
    "a.flv": ["-c:a", "libmp3lame"],
    "a.caf": ["-c:a", "pcm_s16be"],
    "a.aiff": [],
    "a.wv": [],
    "a.w64": [],
    "a.au": [],
    "a.nut": ["-c:a", "flac"],
    "a.rm": ["-c:a", "ac3"],
    "a.tta": [],
    "a.ac3": [],
    "a.eac3": [],
    "a.dts": ["-strict", "-2", "-ar", "48000"],
    "a.mlp": ["-strict", "-2", "-ar", "48000"],
    "a.voc": [],
    "a.latm": ["-c:a", "aac", "-f", "latm"],
    "a.sf": ["-f", "ircam"],
    "a.wtv": ["-c:a", "ac3"],
}


def _make(directory: Path, name: str, options: list[str]) -> Path:
    path = directory / f"container-{name}"
    if not path.exists():
        m.run_ffmpeg("-f", "lavfi", "-i", TONE, *options, str(path))
    return path


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_container_is_read(in_process: InProcess, name: str) -> None:
    src = _make(in_process.media_dir, name, CONTAINERS[name])
    result = in_process(media(src.name), {"format": "flac"}, name=name.replace(".", "-"))
    assert abs(result.duration_seconds - 1.5) < 0.1, (name, result.duration_seconds)


def test_playlists_and_lists_are_refused(in_process: InProcess) -> None:
    target = _make(in_process.media_dir, "a.aiff", [])
    refused = {
        "list.m3u8": f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.5,\n{target}\n#EXT-X-ENDLIST\n",
        "list.ffconcat": f"ffconcat version 1.0\nfile '{target}'\n",
        "meta.txt": ";FFMETADATA1\ntitle=x\n",
    }
    for name, text in refused.items():
        (in_process.media_dir / name).write_text(text)
        with pytest.raises(WorkerError) as err:
            in_process(media(name), {"format": "flac"})
        assert err.value.code == "DecodeFailed", (name, err.value)
    for name in ("hls", "concat", "ffmetadata", "lavfi", "image2", "dash", "imf", "swf"):
        assert name not in ALLOWED_DEMUXERS
