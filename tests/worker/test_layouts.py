"""Every channel layout to every format (docs/worker.md, "Channel layouts").

Sources are WAVs with a different tone in each channel, so a channel lost in a
conversion shows up as a silent one in the output.
"""

import math

import pytest

from audioextract.api.constants import Format
from audioextract.worker.command import CARRIED_LAYOUTS, plan_layout
from tests.support import media as m
from tests.worker.conftest import InProcess, media

FORMATS = [f.value for f in Format]
# Conversions that add a channel the source does not have (documented): it is silent.
ADDS_SILENT_CHANNEL = {("alac", "quad")}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_layout_to_the_format(in_process: InProcess, fmt: str) -> None:
    for layout in m.LAYOUTS:
        src = m.surround(in_process.media_dir, layout)
        result = in_process(
            media(src.name), {"format": fmt}, name=f"{fmt}-{layout.replace('(', '').strip(')')}"
        )
        count = m.LAYOUT_CHANNELS[layout]
        expected = plan_layout(Format(fmt), layout, count, None).layout
        carried = CARRIED_LAYOUTS[Format(fmt)]
        assert carried is None or expected in carried
        out = in_process.path(result)
        probe = m.probe(out)
        stream = probe.raw["streams"][0]
        # What the result says is what ffprobe reads back.
        assert probe.channels == result.channels, (fmt, layout)
        assert stream.get("channel_layout") == result.channel_layout, (fmt, layout)
        if fmt == "wav" and layout in ("mono", "stereo"):
            # Plain WAVE_FORMAT_PCM has no channel mask: the count says it all.
            assert result.channel_layout in (expected, None)
        else:
            assert result.channel_layout == expected, (fmt, layout)
        levels = m.channel_levels(out)
        assert len(levels) == result.channels
        silent = [i for i, level in enumerate(levels) if not math.isfinite(level) or level < -60]
        if (fmt, layout) in ADDS_SILENT_CHANNEL:
            assert len(silent) == 1, (fmt, layout, levels)
        else:
            assert not silent, (fmt, layout, levels)
        if fmt == "mp3":
            assert result.channels <= 2
        elif layout in ("mono", "stereo", "5.1", "7.1", "5.1(side)"):
            # Formats that carry surround keep every channel of the common layouts.
            assert result.channels == count, (fmt, layout)


def test_opus_51_side_is_mapping_family_1(in_process: InProcess) -> None:
    src = m.surround(in_process.media_dir, "5.1(side)")
    result = in_process(media(src.name), {"format": "opus", "bitrate": "192k"})
    out = in_process.path(result)
    # OpusHead byte 18 is the channel mapping family (RFC 7845 §5.1).
    head = out.read_bytes()[:4096]
    at = head.index(b"OpusHead")
    assert head[at + 18] == 1 and head[at + 9] == 6
    assert result.channel_layout == "5.1"


def test_requested_channels_downmix(in_process: InProcess) -> None:
    src = m.surround(in_process.media_dir, "5.1(side)")
    result = in_process(media(src.name), {"format": "flac", "channels": 2})
    assert (result.channels, result.channel_layout) == (2, "stereo")
    assert m.probe(in_process.path(result)).channels == 2
