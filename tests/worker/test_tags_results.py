"""Tags read back with ffprobe in every format; result figures that match the file."""

import pytest

from audioextract.api.constants import Format
from tests.support import media as m
from tests.support import s3
from tests.worker.conftest import InProcess, RunWorker, media

TAGS = {
    "title": "Épisode 42",
    "artist": "The Band",
    "album": "Live",
    "date": "2024",
    "genre": "Speech",
    "comment": "made by ffmpeg",
    "language": "eng",
}
CUSTOM = {"mykey": "custom value", "isrc": "USRC17607839"}
MP4 = ("m4a", "alac")


@pytest.fixture
def tagged_source(in_process: InProcess) -> str:
    """An MP4 with metadata of its own: a title, a language, brands."""
    path = in_process.media_dir / "tagged.mp4"
    if not path.exists():
        m.run_ffmpeg(
            "-i",
            str(in_process.media_dir / "av.mp4"),
            "-c",
            "copy",
            "-metadata",
            "title=Source Title",
            "-metadata",
            "copyright=source",
            "-metadata:s:a:0",
            "language=fre",
            str(path),
        )
    return path.name


@pytest.mark.parametrize("fmt", [f.value for f in Format])
def test_every_requested_tag_reads_back(
    in_process: InProcess, tagged_source: str, fmt: str
) -> None:
    tags = dict(TAGS) if fmt == "wav" else {**TAGS, **CUSTOM}
    result = in_process(media(tagged_source), {"format": fmt, "tags": tags})
    got = m.probe(in_process.path(result)).tags
    for key, value in tags.items():
        assert got.get(key) == value, (fmt, key, got)
    # Nothing of the source's own metadata: not its copyright, not its brands.
    assert "copyright" not in got, (fmt, got)
    if fmt in MP4:
        assert got["major_brand"].strip() == "M4A", got  # the output's own brand
    else:
        assert "major_brand" not in got and "compatible_brands" not in got, (fmt, got)


def test_untagged_output_has_no_source_metadata(in_process: InProcess, tagged_source: str) -> None:
    result = in_process(media(tagged_source), {"format": "flac"})
    got = m.probe(in_process.path(result)).tags
    assert "title" not in got and "language" not in got and "major_brand" not in got, got


def test_bitrate_is_size_over_duration(in_process: InProcess) -> None:
    result = in_process(media("flac.mkv"), {"format": "ogg", "quality": "high"})
    out = in_process.path(result)
    seconds = m.decoded_seconds(out)
    assert result.bitrate == pytest.approx(out.stat().st_size * 8 / seconds, rel=0.01)
    assert result.size_bytes == out.stat().st_size


def test_opus_reports_the_encoded_sample_rate(in_process: InProcess) -> None:
    result = in_process(media("flac.mkv"), {"format": "opus", "sampleRate": 16000})
    assert result.sample_rate == 16000
    # ffprobe says 48000 for every opus file: the decoder's rate, not the encoded one.
    assert m.probe(in_process.path(result)).sample_rate == 48000


def test_adts_duration_is_measured_by_decoding(in_process: InProcess) -> None:
    result = in_process(media("flac.mkv"), {"format": "aac", "bitrate": "96k"})
    decoded = m.decoded_seconds(in_process.path(result))
    assert result.duration_seconds == pytest.approx(decoded, abs=0.002)


def test_rerun_replaces_its_own_object_and_says_so(in_process: InProcess) -> None:
    first = in_process(media("flac.mkv"), {"format": "flac"}, name="again")
    assert first.replaced is None
    second = in_process(media("flac.mkv"), {"format": "flac"}, name="again")
    assert second.replaced is True and second.uri == first.uri


def test_rerun_to_s3_says_so(run_worker: RunWorker, s3_endpoint: str) -> None:
    client = s3.client(s3_endpoint)
    client.create_bucket(Bucket="rerun")
    dest = {"s3": {"bucket": "rerun", "prefix": "a/", "endpoint": s3_endpoint}}
    first = run_worker(media("flac.mkv"), {"format": "mp3", "destination": dest}, name="x")
    second = run_worker(media("flac.mkv"), {"format": "mp3", "destination": dest}, name="x")
    assert "replaced" not in first.result and second.result["replaced"] is True, second.result
    assert any(e["event"] == "overwrite" for e in second.logs())
