"""Polling helper for tests that wait on a real API server."""

import time
from collections.abc import Callable


def wait_for[T](
    probe: Callable[[], T], *, timeout: float = 30, interval: float = 0.1, what: str = "condition"
) -> T:
    """Call ``probe`` until it returns something truthy and return that; fail after ``timeout``.

    The failure message names ``what`` and the last value seen, so a timeout says why.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {value!r}"
            )
        time.sleep(interval)
