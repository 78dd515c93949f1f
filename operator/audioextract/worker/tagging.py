"""Tags that ffmpeg's muxers cannot write, added to the finished file."""

from pathlib import Path

from audioextract.api.constants import ErrorCode
from audioextract.worker.errors import WorkerError

ITUNES_FREEFORM = "----:com.apple.iTunes:"


def write_mp4_freeform(path: Path, tags: dict[str, str]) -> None:
    """Add ``tags`` to an MP4 file as iTunes freeform atoms (----:com.apple.iTunes:KEY)."""
    if not tags:
        return
    # Loaded only for the few jobs that need it.
    from mutagen._util import MutagenError
    from mutagen.mp4 import MP4, MP4FreeForm

    try:
        mp4 = MP4(path)  # type: ignore[no-untyped-call]
        for key, value in sorted(tags.items()):
            mp4[ITUNES_FREEFORM + key] = [
                MP4FreeForm(value.encode("utf-8"))  # type: ignore[no-untyped-call]
            ]
        mp4.save()  # type: ignore[no-untyped-call]
    except MutagenError as exc:
        raise WorkerError(
            ErrorCode.ENCODE_FAILED, f"writing MP4 freeform tags failed: {exc}"
        ) from exc
