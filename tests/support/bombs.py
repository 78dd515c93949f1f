"""Decompression bombs: tiny files that decode to far more audio than they declare.

- :func:`flac_without_length`: long silence at a high sample rate (FLAC compresses
  silence to almost nothing) with STREAMINFO's total-samples field zeroed, which the
  FLAC format allows and which leaves ffprobe with no real duration.
- :func:`piped_mkv`: Matroska written to a pipe, so no Duration element is ever
  written back into its header.
"""

import subprocess
from pathlib import Path

# STREAMINFO follows "fLaC" and a 4-byte block header; total samples are the low 36
# bits of the 8 bytes at offset 10 of the block (after the 20-bit rate, 3-bit
# channels and 5-bit depth).
_STREAMINFO = 8
_TOTAL_SAMPLES = _STREAMINFO + 10


def _silence(seconds: float, rate: int) -> list[str]:
    return ["-f", "lavfi", "-i", f"anullsrc=r={rate}:cl=stereo", "-t", str(seconds)]


def flac_without_length(path: Path, seconds: float = 600, rate: int = 96000) -> Path:
    """Silent FLAC of ``seconds`` at ``rate`` Hz whose header declares no length."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", *_silence(seconds, rate), "-c:a", "flac", str(path)],
        check=True,
    )
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "STREAMINFO must come first"
    field = int.from_bytes(data[_TOTAL_SAMPLES : _TOTAL_SAMPLES + 8], "big")
    field &= ~((1 << 36) - 1)
    data[_TOTAL_SAMPLES : _TOTAL_SAMPLES + 8] = field.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def piped_mkv(path: Path, seconds: float = 600, rate: int = 96000) -> Path:
    """Silent FLAC-in-Matroska of ``seconds``, muxed to a pipe: no duration in the file."""
    with path.open("wb") as out:
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                *_silence(seconds, rate),
                "-c:a",
                "flac",
                "-f",
                "matroska",
                "pipe:1",
            ],
            stdout=out,
            check=True,
        )
    return path
