"""The bad-input table, checked by two engines: the pydantic models and the CRD schema with CEL."""

import pytest

from audioextract.api.constants import MAX_JOBS_PER_BATCH
from audioextract.api.crd import batch_crd, extraction_job_crd
from tests.support.bad_inputs import BAD_INPUTS, BadInput
from tests.support.builders import batch, batch_job, extraction_job, with_output
from tests.support.schema import SchemaError, validate
from tests.support.validation import pydantic_errors

CRDS = {"Batch": batch_crd(), "ExtractionJob": extraction_job_crd()}


def _names_field(case: BadInput, errors: list[SchemaError]) -> bool:
    return any(err.path.startswith(case.field) and case.message in err.message for err in errors)


def test_table_is_large_enough() -> None:
    assert len(BAD_INPUTS) >= 15
    assert len({c.id for c in BAD_INPUTS}) == len(BAD_INPUTS)


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c.id)
def test_models_reject(case: BadInput) -> None:
    errors = pydantic_errors(case.obj)
    assert errors, f"{case.id}: the models accepted it"
    assert _names_field(case, errors), f"{case.id}: no error names {case.field}: {errors}"


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c.id)
def test_schema_and_cel_reject(case: BadInput) -> None:
    errors = validate(CRDS[case.obj["kind"]], case.obj)
    assert errors, f"{case.id}: the CRD schema accepted it"
    assert _names_field(case, errors), f"{case.id}: no error names {case.field}: {errors}"


GOOD = [
    batch(),
    batch(jobs=[batch_job("a"), batch_job("b"), batch_job("named")]),
    batch(jobs=[batch_job(f"n{i}") for i in range(MAX_JOBS_PER_BATCH)]),
    with_output(batch(), format="flac", sampleRate=48000, channels=2),
    with_output(
        batch(), format="mp3", bitrate="320k", channels=2, tags={"title": "x", "track_no": "1"}
    ),
    with_output(batch(), format="opus", quality="low", startSeconds=0, durationSeconds=0.5),
    with_output(batch(), destination={"s3": {"bucket": "my.bucket-1", "prefix": "a/b/"}}),
    extraction_job(output={"format": "wav"}, retries=0, timeoutSeconds=1),
    extraction_job(source={"volume": {"claimName": "uploads", "path": "in/a..b.mp4"}}),
    extraction_job(resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}}),
]


@pytest.mark.parametrize("obj", GOOD, ids=range(len(GOOD)))
def test_good_objects_pass_both_engines(obj: dict) -> None:
    assert pydantic_errors(obj) == []
    assert validate(CRDS[obj["kind"]], obj) == []
