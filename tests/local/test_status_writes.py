"""The status file: bursts of state changes are coalesced, the last state always lands,
and its text is what the pure-Python YAML emitter writes."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from audioextract.api.constants import ErrorCode, JobPhase
from audioextract.api.status import JobResult
from audioextract.local import runner as runner_module
from audioextract.local.load import from_object
from audioextract.local.plan import build_plan
from audioextract.local.runner import Runner
from audioextract.local.state import document
from audioextract.reconcile.observe import make_error
from tests.support.builders import batch, batch_job


def test_status_writes_are_coalesced_and_the_last_state_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    obj = batch(jobs=[batch_job(f"j{i}") for i in range(20)])
    plan = build_plan(from_object(obj), {}, tmp_path / "out", None)
    status_path = tmp_path / "status.yaml"
    runner = Runner(plan, tmp_path, status_path=status_path)
    writes: list[dict[str, Any]] = []
    real_write = runner_module.write_document

    def counting(path: Path, doc: dict[str, Any]) -> None:
        writes.append(doc)
        real_write(path, doc)

    monkeypatch.setattr(runner_module, "write_document", counting)
    monkeypatch.setattr(runner_module, "STATUS_WRITE_INTERVAL_SECONDS", 0.2)

    def phases() -> list[str]:
        return [j["phase"] for j in yaml.safe_load(status_path.read_text())["status"]["jobs"]]

    async def main() -> None:
        runner.refresh()  # the first write is immediate
        assert len(writes) == 1
        for state in runner.states:  # a burst: 20 changes
            state.phase = JobPhase.RUNNING
            runner.refresh()
        assert len(writes) == 1  # coalesced, one write pending
        await asyncio.sleep(0.4)
        assert len(writes) == 2
        assert set(phases()) == {"Running"}
        runner.states[0].phase = JobPhase.FAILED
        runner.refresh(final=True)  # the end of a run: written at once
        assert len(writes) == 3
        assert phases()[0] == "Failed"
        await asyncio.sleep(0.4)
        assert len(writes) == 3  # nothing left pending

    asyncio.run(main())


def _finished_runner(tmp_path: Path, messages: list[str]) -> tuple[Runner, Path]:
    """A Batch whose jobs alternately succeeded and failed (with these error messages)."""
    names = ["plain", "ünïcode-名前", "quote's", "colon: here", "x" * 63]
    obj = batch(jobs=[batch_job(f"j{i}") for i in range(len(names))])
    plan = build_plan(from_object(obj), {}, tmp_path / "out", None)
    status_path = tmp_path / "status.yaml"
    runner = Runner(plan, tmp_path, status_path=status_path)
    for i, (state, name) in enumerate(zip(runner.states, names, strict=True)):
        state.attempts = i + 1
        state.start_time = "2026-12-02T07:00:00Z"
        state.completion_time = "2026-12-02T07:00:01Z"
        if i % 2:
            state.phase = JobPhase.FAILED
            state.error = make_error(
                ErrorCode.DECODE_FAILED, f"volume://media/{name}.mp4: {messages[i % len(messages)]}"
            )
        else:
            state.phase = JobPhase.SUCCEEDED
            state.result = JobResult(
                uri=f"volume://out/{name}.mp3",
                size_bytes=12345 + i,
                duration_seconds=0.552 + i,
                format="mp3",
                codec="mp3",
                bitrate=199609,
                sample_rate=48000,
                channels=2,
                channel_layout="stereo",
                sha256="a" * 64,
                stream_copied=False,
            )
    return runner, status_path


def test_the_status_file_is_the_text_of_the_pure_python_yaml_emitter(tmp_path: Path) -> None:
    # The status file is written with libyaml's emitter for speed; a reader (or a diff
    # of two runs' files) sees what the pure-Python emitter writes.
    assert yaml.__with_libyaml__, "PyYAML without libyaml: this test would compare nothing"
    runner, status_path = _finished_runner(
        tmp_path,
        [
            "Invalid data found when processing input | a long reason that wraps past "
            "eighty columns, with 'quotes', \"double\", a # hash and a trailing colon:",
            "ünïcode 名前 | short",
        ],
    )
    status = runner.refresh(final=True)
    expected = yaml.safe_dump(document(runner.plan, status), sort_keys=False, allow_unicode=True)
    assert status_path.read_text(encoding="utf-8") == expected
    assert "ünïcode-名前" in expected  # unicode is written as such, not escaped


def test_strings_with_control_characters_read_back_the_same(tmp_path: Path) -> None:
    # The one known difference between the two emitters: where they fold a long
    # double-quoted string (one that holds a tab, a carriage return or a line break).
    # The text differs there; the values read back are the same.
    runner, status_path = _finished_runner(
        tmp_path,
        [
            "first line\nsecond line | a long reason that wraps past eighty columns\tand a tab "
            "and a carriage return\r in the middle of a sentence that goes on and on",
        ],
    )
    status = runner.refresh(final=True)
    expected = yaml.safe_dump(document(runner.plan, status), sort_keys=False, allow_unicode=True)
    assert yaml.safe_load(status_path.read_text(encoding="utf-8")) == yaml.safe_load(expected)
