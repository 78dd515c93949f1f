"""Giving memory back once the operator goes idle.

A burst of work (the start-up list of 10,000 objects, a 1,000-job fan-out) leaves
parsed statuses and Batch specs in memos, and freed blocks in the C allocator's heap
that it keeps for reuse; an idle operator needs neither. After a burst, the
controller drops the memos, collects garbage and asks glibc to return free heap pages
to the system (``malloc_trim``), so that its resident memory follows what the cache
holds rather than its busiest moment.
"""

import ctypes
import gc
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim`` (glibc), or None where the C library has none (musl, macOS)."""
    try:
        # The process's own symbols: the C library the interpreter runs on, without
        # searching for it (find_library would start a subprocess).
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def release(*forget: Callable[[], None]) -> None:
    """Call each ``forget`` (memos to empty), collect garbage, return free heap to the system."""
    for drop in forget:
        drop()
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
    log.debug("idle: memos dropped and free memory returned")
