"""What a user may see in a worker's error message: no secrets, no internal paths."""

import pytest

from audioextract.worker.main import MESSAGE_LIMIT, scrub


@pytest.mark.parametrize(
    ("message", "hidden", "kept"),
    [
        (
            "ffmpeg failed: http://127.0.0.1:38211/abcDEFghiJKLmnoPQRstuv: Server returned 404",
            "abcDEFghiJKLmnoPQRstuv",
            "Server returned 404",
        ),
        (
            "ffmpeg failed: /tmp/scratch/audioextract-ab12cd34/out.wav: No space left on device",
            "audioextract-ab12cd34",
            "No space left on device",
        ),
        ("file:/volumes/media/in/a.mp4: Invalid data found", "/volumes/media", "Invalid data"),
        (
            "https://cdn.example.com/a.mp4?X-Amz-Signature=deadbeef: HTTP 403",
            "deadbeef",
            "https://cdn.example.com/a.mp4",
        ),
    ],
)
def test_scrub_hides_internals(message: str, hidden: str, kept: str) -> None:
    shown = scrub(message)
    assert hidden not in shown
    assert kept in shown


def test_scrub_keeps_a_user_endpoint_on_loopback() -> None:
    # An S3 endpoint the user named is not the guard proxy: its path stays visible.
    shown = scrub("http://127.0.0.1:9000/raw/in/av.mp4: HTTP 403: access denied")
    assert shown == "http://127.0.0.1:9000/raw/in/av.mp4: HTTP 403: access denied"


def test_scrub_bounds_the_length() -> None:
    assert len(scrub("x" * 5000)) == MESSAGE_LIMIT
