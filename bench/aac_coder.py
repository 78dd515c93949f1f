"""AAC coder choice: speed and quality of ffmpeg's native AAC coders on realistic audio.

    make bench-aac                         # 60 s of each content, every preset bitrate
    .venv/bin/python bench/aac_coder.py --seconds 15 --repeat 1   # quick (about a minute)

For each content (speech, music, noise; bench/content.py), each preset bitrate of
the aac/m4a formats and each coder (``twoloop``, ffmpeg's default, and ``fast``), it
encodes the 48 kHz stereo source to M4A (which carries the encoder delay in its edit
list, so the decoded audio lines up with the source) and measures:

* speed: encode wall time, best of ``--repeat``, as a realtime factor;
* quality: a null test — the decoded output subtracted from the source — as the
  signal-to-noise ratio in dB (source RMS over residual RMS). Higher is better. It is
  not a perceptual measure (it counts every difference, masked or not), but it is
  objective, reproducible with ffmpeg alone, and a coder that loses several dB on it
  is audibly worse at these bitrates.
"""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import content, report

BITRATES = {"low": "96k", "medium": "128k", "high": "192k"}
CODERS = ("twoloop", "fast")
_RMS = re.compile(r"RMS level dB:\s*(-?[\d.]+|-inf)")


def rms_db(args: list[str]) -> float:
    """The overall RMS level (dB) that astats reports at the end of an ffmpeg run."""
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", *args, "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    levels = _RMS.findall(out)
    return float("-inf") if levels[-1] == "-inf" else float(levels[-1])


def snr_db(source: Path, encoded: Path) -> float:
    """Source RMS over the RMS of (source - decoded), in dB."""
    stats = "astats=measure_perchannel=none:measure_overall=RMS_level"
    signal = rms_db(["-i", str(source), "-af", stats])
    residual = rms_db(
        [
            "-i",
            str(source),
            "-i",
            str(encoded),
            "-filter_complex",
            "[1:a]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,volume=-1[n];"
            f"[0:a]aformat=sample_fmts=fltp[s];[s][n]amix=inputs=2:normalize=0:duration=shortest,"
            f"{stats}",
        ]
    )
    return signal - residual


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each content")
    parser.add_argument(
        "--repeat", type=int, default=2, help="encodes per case; the fastest counts"
    )
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/performance.md")
    args = parser.parse_args()

    meter = report.LoadMeter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-aac-") as tmp:
        for kind in content.KINDS:
            src = content.audio(kind, args.seconds)
            for preset, bitrate in BITRATES.items():
                for coder in CODERS:
                    out = Path(tmp) / f"{kind}-{preset}-{coder}.m4a"
                    times = []
                    for _ in range(args.repeat):
                        meter.sample()
                        times.append(
                            report.timed(
                                [
                                    "ffmpeg",
                                    "-nostdin",
                                    "-y",
                                    "-i",
                                    str(src),
                                    "-c:a",
                                    "aac",
                                    "-aac_coder",
                                    coder,
                                    "-b:a",
                                    bitrate,
                                    "-f",
                                    "ipod",
                                    str(out),
                                ]
                            )
                        )
                    best = min(times)
                    snr = snr_db(src, out)
                    rows.append(
                        {
                            "content": kind,
                            "preset": preset,
                            "bitrate": bitrate,
                            "coder": coder,
                            "encode_s": best,
                            "realtime_x": args.seconds / best,
                            "snr_db": snr,
                        }
                    )
                    print(
                        f"{kind:7s} {preset:6s} {bitrate:5s} {coder:8s} "
                        f"{best:6.2f} s  {args.seconds / best:6.1f}x  SNR {snr:5.2f} dB",
                        flush=True,
                    )
    data = report.record(f"--seconds {args.seconds:g} --repeat {args.repeat}", meter, rows=rows)
    report.publish("aac_coder", data, render, section="aac", docs=not args.no_docs)
    return 0


def render(data: dict[str, Any]) -> str:
    """The docs section: when, where, under which load, and the table."""
    lines = [
        *report.header("aac_coder.py", data),
        "",
        "| Content | Preset (bitrate) | Coder | Encode (s) | Realtime | SNR (dB) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['content']} | {r['preset']} ({r['bitrate']}) | {r['coder']} | "
            f"{r['encode_s']:.2f} | {r['realtime_x']:.0f}x | {r['snr_db']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
