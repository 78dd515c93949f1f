"""Realistic benchmark audio: speech, music-like material and noise (never a pure sine).

A sine is pathological for some encoders (ffmpeg's native AAC encoder with its default
coder is several times slower on it than on real audio), so figures from it mislead.
Three kinds of content, each 48 kHz stereo, generated here and cached under
``.cache/bench/``:

* ``speech`` — espeak-ng reading a text with several voices (male and female
  variants, four accents) at several speeds (130-200 words per minute) and pitches,
  sentences separated by short pauses, one voice a little off-centre per sentence,
  over a quiet room-noise floor; assembled to the requested length.
* ``music`` — generated tonal and percussive material: a four-chord progression of
  harmonic-rich notes with decaying envelopes, an arpeggio, a bass line, a kick
  (a pitch-swept decaying sine), a hi-hat and a snare (decaying noise bursts), at
  120 bpm; different mixes per channel.
* ``noise`` — pink noise under a slow amplitude swell, with brown noise on top.

``mixed`` concatenates the three (speech, music, noise, in equal parts): the 10-minute
source of the overhead figures.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
RATE = 48000
KINDS = ("speech", "music", "noise")

TEXT = [
    "The quarterly figures came in slightly above expectations, mostly thanks to the new"
    " distribution centre in the north.",
    "Before we start, could everyone please check that their microphone is muted unless"
    " they are speaking?",
    "In the second half of the lecture we will look at how heat moves through solids,"
    " liquids and gases.",
    "Turn left at the second junction, then keep going until you see the old mill on your right.",
    "Thank you all for joining today's episode; our guest has spent twenty years studying"
    " coral reefs.",
    "If the package has not arrived within five working days, please contact our support"
    " team with your order number.",
    "The committee will meet again on Thursday to review the remaining proposals and vote"
    " on the budget.",
    "She opened the window, listened to the rain for a while, and then went back to her notes.",
]
VOICES = [
    "en-us",
    "en-us+f3",
    "en-gb",
    "en-gb+f2",
    "en-gb-scotland+m3",
    "en-029+f4",
    "en-us+m5",
    "en-gb-x-rp+f1",
]
SPEEDS = [130, 155, 175, 200]
PITCHES = [35, 50, 65]


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def _speech(seconds: float, out: Path, work: Path) -> None:
    """Sentences by several voices until ``seconds`` are filled."""
    parts: list[Path] = []
    total = 0.0
    i = 0
    while total < seconds:
        wav = work / f"s{i:04d}.wav"
        voice = VOICES[i % len(VOICES)]
        speed = SPEEDS[(i // 2) % len(SPEEDS)]
        pitch = PITCHES[(i // 3) % len(PITCHES)]
        text = TEXT[i % len(TEXT)]
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # 48 kHz stereo, slightly off-centre, then a pause of 0.3-0.9 s.
        pan = 0.15 * ((i % 5) - 2)
        left, right = 0.7 * (1 - max(0.0, pan)), 0.7 * (1 + min(0.0, pan))
        pause = 0.3 + 0.15 * (i % 5)
        seg = work / f"s{i:04d}.48k.wav"
        _ffmpeg(
            "-i",
            str(wav),
            "-af",
            f"aresample={RATE},pan=stereo|c0={left:.2f}*c0|c1={right:.2f}*c0,"
            f"apad=pad_dur={pause:.2f}",
            "-c:a",
            "pcm_s16le",
            str(seg),
        )
        total += _duration(seg)
        parts.append(seg)
        i += 1
    listing = work / "speech.txt"
    listing.write_text("".join(f"file '{p.name}'\n" for p in parts))
    # A quiet room-noise floor under the voices, as in a real recording.
    _ffmpeg(
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        str(listing),
        "-f",
        "lavfi",
        "-i",
        f"anoisesrc=color=brown:amplitude=0.01:sample_rate={RATE}:seed=7",
        "-filter_complex",
        "[1:a]aformat=channel_layouts=stereo[n];[0:a][n]amix=inputs=2:duration=first:normalize=0",
        "-t",
        f"{seconds:.3f}",
        "-c:a",
        "pcm_s16le",
        str(out),
    )


# One bar is 2 s at 120 bpm; the chord changes every bar (A minor, F, C, G).
_ROOTS = "if(lt(mod(t,8),2),220,if(lt(mod(t,8),4),174.61,if(lt(mod(t,8),6),261.63,196)))"
_BEAT = "mod(t,0.5)"
_EIGHTH = "mod(t,0.25)"


def _chord(root: str) -> str:
    notes = []
    for ratio, gain in ((1, 0.10), (1.2, 0.07), (1.5, 0.07), (2, 0.04)):
        f = f"({root})*{ratio}"
        # Three harmonics per note, a decaying envelope restarted every half bar.
        notes.append(
            f"{gain}*exp(-1.5*mod(t,1))*(sin(2*PI*{f}*t)+0.5*sin(4*PI*{f}*t)+0.25*sin(6*PI*{f}*t))"
        )
    return "+".join(notes)


def _music_expr(channel: int) -> str:
    arp_ratio = "if(lt(mod(t,1),0.25),2,if(lt(mod(t,1),0.5),2.4,if(lt(mod(t,1),0.75),3,4)))"
    arpeggio = f"0.06*exp(-6*{_EIGHTH})*sin(2*PI*({_ROOTS})*{arp_ratio}*t)"
    bass = f"0.15*exp(-3*{_BEAT})*sin(2*PI*({_ROOTS})/2*t)"
    kick = f"0.35*exp(-9*{_BEAT})*sin(2*PI*(45+120*exp(-30*{_BEAT}))*{_BEAT})"
    hihat = f"0.05*exp(-60*{_EIGHTH})*(2*random({channel})-1)"
    snare_t = "mod(t+0.5,1)"
    snare = f"0.12*exp(-18*{snare_t})*(2*random({channel + 2})-1)"
    # The arpeggio leans left, the hi-hat right, as a mix would place them.
    arp_gain, hat_gain = (1.3, 0.6) if channel == 0 else (0.6, 1.3)
    return f"{_chord(_ROOTS)}+{arp_gain}*{arpeggio}+{bass}+{kick}+{hat_gain}*{hihat}+{snare}"


def _music(seconds: float, out: Path) -> None:
    expr = f"{_music_expr(0)}|{_music_expr(1)}"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        # Quoted: the expressions are full of the graph syntax's commas.
        f"aevalsrc=exprs='{expr}':s={RATE}:d={seconds:.3f}:c=stereo",
        "-af",
        "alimiter=limit=0.9",
        "-c:a",
        "pcm_s16le",
        str(out),
    )


def _noise(seconds: float, out: Path) -> None:
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"anoisesrc=color=pink:amplitude=0.5:sample_rate={RATE}:seed=3:duration={seconds:.3f}",
        "-f",
        "lavfi",
        "-i",
        f"anoisesrc=color=brown:amplitude=0.3:sample_rate={RATE}:seed=5:duration={seconds:.3f}",
        "-filter_complex",
        "[0:a]volume='0.6+0.4*sin(2*PI*t/7)':eval=frame[p];"
        "[p][1:a]amix=inputs=2:normalize=0,aformat=channel_layouts=stereo,"
        "aeval=val(0)|0.9*val(0)",
        "-c:a",
        "pcm_s16le",
        str(out),
    )


def _duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip())


def audio(kind: str, seconds: float) -> Path:
    """A cached WAV of ``kind`` (speech, music, noise or mixed), ``seconds`` long."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{kind}-{seconds:g}s.wav"
    if path.exists():
        return path
    print(f"generating {path.name} ...", file=sys.stderr)
    work = CACHE / f"work-{kind}-{seconds:g}"
    work.mkdir(exist_ok=True)
    tmp = work / "out.wav"
    if kind == "speech":
        _speech(seconds, tmp, work)
    elif kind == "music":
        _music(seconds, tmp)
    elif kind == "noise":
        _noise(seconds, tmp)
    elif kind == "mixed":
        third = seconds / 3
        listing = work / "mixed.txt"
        listing.write_text("".join(f"file '{audio(k, third)}'\n" for k in KINDS))
        _ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(tmp))
    else:
        raise ValueError(f"unknown content {kind!r}")
    tmp.rename(path)
    for leftover in work.iterdir():
        leftover.unlink()
    work.rmdir()
    return path


def video(kind: str, seconds: float, size: str = "1280x720") -> Path:
    """A cached MP4 source: a test-pattern video with ``kind`` audio as AAC 128 kb/s."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"video-{kind}-{seconds:g}s-{size}.mp4"
    if path.exists():
        return path
    wav = audio(kind, seconds)
    print(f"generating {path.name} ...", file=sys.stderr)
    tmp = path.with_suffix(".partial.mp4")
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size={size}:rate=25:duration={seconds:.3f}",
        "-i",
        str(wav),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "28",
        "-c:a",
        "aac",
        "-aac_coder",
        "fast",
        "-b:a",
        "128k",
        "-movflags",
        "+faststart",
        "-shortest",
        str(tmp),
    )
    tmp.rename(path)
    return path
