"""A watch on its own thread and API client, as a context manager, for observers in tests.

Tests that record what the API server reports while an operator runs (every Job ever
created, every version of a Batch) each run one watch in the background; this holds
the thread, the client and the stop for them.
"""

from __future__ import annotations

import threading
from typing import Self

import kubernetes.client
import kubernetes.watch

from tests.support.controlplane import ControlPlane


class WatchThread:
    """Runs :meth:`_run` (a loop over ``self._watch.stream(...)``) while the block runs.

    Leaving the block stops the watch (ending the stream), joins the thread and closes
    the client; ``self._stopped`` tells ``_run`` that an exception is the stop itself.
    """

    def __init__(self, cp: ControlPlane) -> None:
        self.api_client: kubernetes.client.ApiClient = cp.new_api_client()
        self._watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._watch.stop()  # type: ignore[no-untyped-call]
        self._thread.join(timeout=10)
        self.api_client.close()
