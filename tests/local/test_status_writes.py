"""The status file: bursts of state changes are coalesced, the last state always lands."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from audioextract.api.constants import JobPhase
from audioextract.local import runner as runner_module
from audioextract.local.load import from_object
from audioextract.local.plan import build_plan
from audioextract.local.runner import Runner
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
