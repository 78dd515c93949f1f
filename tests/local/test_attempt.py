"""How one attempt's end becomes a result or an error, with stand-in workers (fast, in-process)."""

import asyncio
import sys
from pathlib import Path

import pytest

from audioextract.local import attempt


def _invocation(tmp_path: Path, timeout: float = 30) -> attempt.Invocation:
    return attempt.Invocation(
        task_file=tmp_path / "task.json",
        result_file=tmp_path / "result.json",
        temp_dir=tmp_path / "tmp",
        volumes={},
        timeout=timeout,
    )


def _run(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    code: str,
    *,
    cancel_after: float | None = None,
    timeout: float = 30,
) -> attempt.Outcome:
    """Run ``python -c code`` in place of the worker; it gets --result FILE as argv[1]."""
    inv = _invocation(tmp_path, timeout)
    monkeypatch.setattr(
        attempt, "command", lambda i: [sys.executable, "-c", code, str(i.result_file)]
    )

    async def main() -> attempt.Outcome:
        cancel = asyncio.Event()
        if cancel_after is not None:
            asyncio.get_running_loop().call_later(cancel_after, cancel.set)
        logs: list[dict[str, object]] = []
        return await attempt.run_attempt(inv, logs.append, cancel)

    return asyncio.run(main())


RESULT = (
    '{"uri":"volume://o/a.mp3","sizeBytes":1,"durationSeconds":1,"format":"mp3","codec":"mp3",'
    '"sampleRate":44100,"channels":2,"sha256":"' + "a" * 64 + '","streamCopied":false}'
)


def test_success_needs_exit_0_and_a_result(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code = f"import sys, pathlib; pathlib.Path(sys.argv[1]).write_text({RESULT!r})"
    outcome = _run(monkeypatch, tmp_path, code)
    assert outcome.succeeded and outcome.result is not None
    assert outcome.result.uri == "volume://o/a.mp3"
    outcome = _run(monkeypatch, tmp_path, "pass")
    assert outcome.error is not None and outcome.error.code == "WorkerCrashed"


def test_permanent_exit_code_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outcome = _run(monkeypatch, tmp_path, "raise SystemExit(11)")
    assert outcome.error is not None and outcome.error.code == "SourceNotFound"
    assert not outcome.retryable


def test_transient_code_and_crash_are_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outcome = _run(monkeypatch, tmp_path, "raise SystemExit(20)")
    assert outcome.error is not None and outcome.error.code == "SourceUnreachable"
    assert outcome.retryable
    outcome = _run(
        monkeypatch, tmp_path, "import sys; print('boom', file=sys.stderr); raise SystemExit(3)"
    )
    assert outcome.error is not None and outcome.error.code == "WorkerCrashed"
    assert "boom" in outcome.error.message
    assert outcome.retryable


def test_stuck_worker_is_stopped_after_timeout_and_grace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(attempt, "TIMEOUT_GRACE_SECONDS", 0.3)
    outcome = _run(monkeypatch, tmp_path, "import time; time.sleep(60)", timeout=0.3)
    assert outcome.stopped == attempt.Stop.TIMEOUT
    assert outcome.error is not None and outcome.error.code == "Timeout"
    assert not outcome.retryable


def test_cancel_sends_sigterm_then_kills(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(attempt, "TERM_GRACE_SECONDS", 0.5)
    ignore_term = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    )
    outcome = _run(monkeypatch, tmp_path, ignore_term, cancel_after=0.5)
    assert outcome.stopped == attempt.Stop.CANCELLED
    assert outcome.exit_code == -9
    assert outcome.error is not None and outcome.error.code == "Cancelled"
    assert not outcome.retryable
