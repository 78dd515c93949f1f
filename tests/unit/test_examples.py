"""Every example validates through the models and against the generated schema with CEL."""

from pathlib import Path

import pytest
import yaml

from audioextract.api import Batch
from audioextract.api.crd import batch_crd, extraction_job_crd
from audioextract.api.defaults import resolve_batch_job
from tests.support.schema import validate
from tests.support.validation import model_for

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
CRDS = {"Batch": batch_crd(), "ExtractionJob": extraction_job_crd()}


def test_there_are_examples_of_both_kinds() -> None:
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in EXAMPLES}
    assert kinds == {"Batch", "ExtractionJob"}
    assert {"batch.yaml", "extractionjob.yaml"} <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    model = model_for(obj).model_validate(obj)
    assert validate(CRDS[obj["kind"]], obj) == []
    # What the model dumps is what was written: no field silently dropped or renamed.
    assert model.dump() == obj
    if isinstance(model, Batch):
        for job in model.spec.jobs:
            resolved = resolve_batch_job(model.spec, job)
            assert (
                validate(
                    CRDS["ExtractionJob"], {**obj, "kind": "ExtractionJob", "spec": resolved.dump()}
                )
                == []
            )


def test_examples_cover_every_source_and_destination_kind() -> None:
    text = "\n".join(p.read_text() for p in EXAMPLES)
    for needle in [
        "url: https://",
        "url: s3://",
        "volume: {claimName",
        "s3:",
        "queueName:",
        "normalize: true",
        "startSeconds:",
        "priority: high",
        "url: https://uploads",
    ]:
        assert needle in text, needle
