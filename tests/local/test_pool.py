"""The warm worker pool keeps every attempt isolated: real workers, real ffmpeg, real kills.

A crashed attempt (its worker SIGKILLed mid-encode), a stuck one (stopped by the
runner past its time limit) and a good one run side by side in one pool: only the
first two fail, each with its own error, nothing of theirs is left running, and the
pool goes on serving. If the pool server itself dies, its running attempt is reported
as crashed and the next attempt gets a new server.
"""

import asyncio
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from audioextract.local import attempt
from audioextract.local import pool as pool_module
from audioextract.local.pool import Pool
from tests.local.conftest import LOOPBACK, MEDIA
from tests.support import http_server


def _invocation(
    tmp: Path, name: str, source: dict[str, Any], timeout: float, out: str = "out"
) -> attempt.Invocation:
    task = {
        "name": name,
        "source": source,
        "output": {"format": "mp3", "destination": {"volume": {"claimName": "out"}}},
        "timeoutSeconds": 600,
    }
    task_file = tmp / f"{name}.task.json"
    task_file.write_text(json.dumps(task))
    return attempt.Invocation(
        task_file=task_file,
        result_file=tmp / f"{name}.result.json",
        temp_dir=tmp / "scratch",
        volumes={"media": tmp / "media", "out": tmp / out},
        timeout=timeout,
    )


def _group_members(pgid: int) -> list[int]:
    """Pids still alive in process group ``pgid`` (zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


async def _wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


@pytest.fixture
def workspace(tmp_path: Path, local_media: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "media").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out2").mkdir()
    os.link(local_media / MEDIA, tmp_path / "media" / MEDIA)
    monkeypatch.setenv("AUDIOEXTRACT_ALLOW_NETWORKS", LOOPBACK)
    monkeypatch.setattr(attempt, "TIMEOUT_GRACE_SECONDS", 0.5)
    monkeypatch.setattr(attempt, "TERM_GRACE_SECONDS", 2.0)
    return tmp_path


def test_a_crash_or_timeout_in_one_attempt_does_not_touch_the_others(
    workspace: Path, source_server: http_server.MediaServer
) -> None:
    slow = {"url": source_server.url(f"slow/{MEDIA}")}
    local = {"volume": {"claimName": "media", "path": MEDIA}}

    async def main() -> None:
        pool = Pool()
        cancel = asyncio.Event()
        logs: dict[str, list[dict[str, Any]]] = {"crash": [], "stuck": [], "good": []}

        def run(name: str, source: dict[str, Any], timeout: float = 600) -> Any:
            inv = _invocation(workspace, name, source, timeout)
            return asyncio.create_task(attempt.run_attempt(inv, logs[name].append, cancel, pool))

        try:
            crash = run("crash", slow)
            # The crashing attempt is reading its (slow) source before the others start.
            await _wait_for(lambda: any(r["event"] == "probed" for r in logs["crash"]))
            (victim,) = pool.running_pids()
            server = pool.server_pid
            stuck = run("stuck", slow, timeout=1.0)
            good = run("good", local)
            await _wait_for(lambda: len(pool.running_pids()) == 3)
            os.kill(victim, 9)
            crashed, stopped, done = await asyncio.gather(crash, stuck, good)

            assert crashed.error is not None and crashed.error.code == "WorkerCrashed"
            assert "killed by signal 9" in crashed.error.message
            assert crashed.retryable
            # The crashed worker's ffmpeg went with it: nothing of its group is left.
            assert _group_members(victim) == []

            assert stopped.stopped == attempt.Stop.TIMEOUT
            assert stopped.error is not None and stopped.error.code == "Timeout"

            assert done.result is not None, done.error
            out = workspace / "out" / "good.mp3"
            assert done.result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
            assert done.result.codec == "mp3" and done.result.duration_seconds > 3
            assert any(r["event"] == "succeeded" for r in logs["good"])
            # Only the good job delivered a file; the others left no partial output.
            assert sorted(p.name for p in (workspace / "out").iterdir()) == ["good.mp3"]

            # The same server goes on serving.
            again = await attempt.run_attempt(
                _invocation(workspace, "again", local, 600), lambda r: None, cancel, pool
            )
            assert again.result is not None, again.error
            assert pool.server_pid == server
        finally:
            await pool.close()

    asyncio.run(main())


def test_a_dead_pool_server_fails_its_attempts_and_is_replaced(
    workspace: Path, source_server: http_server.MediaServer
) -> None:
    async def main() -> None:
        pool = Pool()
        cancel = asyncio.Event()
        logs: list[dict[str, Any]] = []
        try:
            slow = _invocation(workspace, "slow", {"url": source_server.url(f"slow/{MEDIA}")}, 600)
            running = asyncio.create_task(attempt.run_attempt(slow, logs.append, cancel, pool))
            await _wait_for(lambda: any(r["event"] == "probed" for r in logs))
            (child,) = pool.running_pids()
            first = pool.server_pid
            assert first is not None
            os.kill(first, 9)
            outcome = await running
            assert outcome.error is not None and outcome.error.code == "WorkerCrashed"
            assert outcome.retryable
            await _wait_for(lambda: _group_members(child) == [])

            local = {"volume": {"claimName": "media", "path": MEDIA}}
            after = await attempt.run_attempt(
                _invocation(workspace, "after", local, 600), lambda r: None, cancel, pool
            )
            assert after.result is not None, after.error
            assert pool.server_pid not in (None, first)
        finally:
            await pool.close()

    asyncio.run(main())


def test_attempts_that_end_at_once_are_each_reported(workspace: Path) -> None:
    # An invalid task ends its worker within milliseconds of the fork: its exit may
    # reach the runner right behind its pid, and must still be its own outcome.
    async def main() -> list[attempt.Outcome]:
        pool = Pool()
        try:
            invs = []
            for i in range(12):
                inv = _invocation(workspace, f"bad{i}", {}, timeout=20)
                inv.task_file.write_text("{not json")
                invs.append(inv)
            cancel = asyncio.Event()
            return await asyncio.gather(
                *(attempt.run_attempt(inv, lambda r: None, cancel, pool) for inv in invs)
            )
        finally:
            await pool.close()

    for outcome in asyncio.run(main()):
        assert outcome.error is not None and outcome.error.code == "InvalidSpec"
        assert not outcome.retryable and outcome.stopped is None


def test_a_pool_attempt_gives_the_result_of_a_fresh_interpreter(workspace: Path) -> None:
    # Same task, once as a fresh `python -m audioextract worker` and once forked from
    # the pool (each into its own, empty, directory): the same file, the same result.
    local = {"volume": {"claimName": "media", "path": MEDIA}}

    async def main() -> tuple[attempt.Outcome, attempt.Outcome, bytes, bytes]:
        cancel = asyncio.Event()
        fresh = await attempt.run_attempt(
            _invocation(workspace, "same", local, 600, out="out"), lambda r: None, cancel
        )
        pool = Pool()
        try:
            forked = await attempt.run_attempt(
                _invocation(workspace, "same", local, 600, out="out2"),
                lambda r: None,
                cancel,
                pool,
            )
        finally:
            await pool.close()
        return fresh, forked, *((workspace / d / "same.mp3").read_bytes() for d in ("out", "out2"))

    fresh, forked, first, second = asyncio.run(main())
    assert fresh.result is not None and forked.result is not None
    assert fresh.result == forked.result
    assert first == second


def test_without_a_pool_attempts_run_in_fresh_interpreters(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where the pool cannot start (no SOCK_SEQPACKET, say), nothing fails because of it:
    # a socket type the kernel does not know makes socketpair() fail as it would there.
    monkeypatch.setattr(pool_module.socket, "SOCK_SEQPACKET", 99)
    local = {"volume": {"claimName": "media", "path": MEDIA}}

    async def main() -> attempt.Outcome:
        pool = Pool()
        try:
            inv = _invocation(workspace, "plain", local, 600)
            return await attempt.run_attempt(inv, lambda r: None, asyncio.Event(), pool)
        finally:
            await pool.close()

    outcome = asyncio.run(main())
    assert outcome.result is not None, outcome.error
    assert (workspace / "out" / "plain.mp3").is_file()
