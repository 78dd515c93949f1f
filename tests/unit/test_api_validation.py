"""The bad-input table, checked by two engines: the pydantic models and the CRD schema with CEL."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audioextract.api.constants import MAX_BATCH_LOCATION_CHARS, MAX_JOBS_PER_BATCH
from audioextract.api.crd import batch_crd, extraction_job_crd
from audioextract.api.spec import LOCATION_RULE, BatchSpec, batch_location_chars
from tests.support.bad_inputs import BAD_INPUTS, LOCATIONS_MESSAGE, BadInput, url_of
from tests.support.builders import batch, batch_job, extraction_job, source, with_output
from tests.support.schema import SchemaError, cel_value, validate
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


def _locations_batch(total: int, jobs: int = MAX_JOBS_PER_BATCH) -> dict:
    """A Batch whose sources, destinations and file names add up to ``total`` characters."""
    share, extra = divmod(total, jobs)
    items = []
    for i in range(jobs):
        # Three kinds of location in turn: a URL destination, an S3 one, a volume one.
        own = share + (1 if i < extra else 0)
        dest: dict
        if i % 3 == 0:
            dest = {"url": url_of(own - 40, i)}
        elif i % 3 == 1:
            dest = {"s3": {"bucket": "out", "prefix": "p" * (own - 40 - 3 - 5)}}
        else:
            dest = {"volume": {"claimName": "audio", "path": "d" * (own - 40 - 5 - 5)}}
        output: dict = {"destination": dest}
        if i % 3:
            output["filename"] = f"f{i:04d}"
        items.append(batch_job(f"j{i}", source=source(url_of(40, i)), output=output))
    return batch(jobs=items)


def test_location_total_at_the_maximum_passes_and_one_more_is_refused_by_both_engines() -> None:
    at_max = _locations_batch(MAX_BATCH_LOCATION_CHARS)
    spec = BatchSpec.model_validate(at_max["spec"])
    assert batch_location_chars(spec.jobs, spec.defaults) == MAX_BATCH_LOCATION_CHARS
    assert pydantic_errors(at_max) == []
    assert validate(CRDS["Batch"], at_max) == []
    over = _locations_batch(MAX_BATCH_LOCATION_CHARS + 1)
    for errors in (pydantic_errors(over), validate(CRDS["Batch"], over)):
        assert [(e.path, LOCATIONS_MESSAGE in e.message) for e in errors] == [("spec.jobs", True)]


def test_a_job_with_its_own_destination_does_not_count_the_defaults_one() -> None:
    long_default = {"output": {"destination": {"url": url_of(3800)}}}
    own = {"destination": {"s3": {"bucket": "out"}}}
    obj = batch(jobs=[batch_job(f"j{i}", output=own) for i in range(70)], defaults=long_default)
    assert pydantic_errors(obj) == [] and validate(CRDS["Batch"], obj) == []


def _path(n: int) -> str:
    """A relative path of ``n`` characters whose components stay under 255 bytes."""
    return (("d" * 99 + "/") * 11)[: n - 1] + "x"


_LOCATION = st.one_of(
    st.builds(lambda n: {"url": url_of(40 + n)}, st.integers(0, 300)),
    st.builds(
        lambda n, p: {"s3": {"bucket": "b" * n, **({"prefix": "p" * p} if p else {})}},
        st.integers(3, 63),
        st.integers(0, 768),
    ),
    st.builds(
        lambda c, p: {"volume": {"claimName": "c" * c, **({"path": _path(p)} if p else {})}},
        st.integers(1, 253),
        st.integers(0, 1024),
    ),
)
_SOURCE = st.one_of(
    st.builds(lambda n: {"url": url_of(40 + n)}, st.integers(0, 300)),
    st.builds(lambda p: {"volume": {"claimName": "v", "path": _path(p)}}, st.integers(1, 1024)),
)
_OUTPUT = st.fixed_dictionaries(
    {},
    optional={
        "destination": _LOCATION,
        "filename": st.builds(lambda n: "f" * n, st.integers(1, 200)),
    },
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(_SOURCE, st.one_of(st.none(), _OUTPUT)), min_size=1, max_size=8),
    st.one_of(st.none(), _LOCATION),
)
def test_the_location_rule_and_its_python_twin_add_up_the_same(jobs, default_dest) -> None:
    items = []
    for i, (src, output) in enumerate(jobs):
        job = batch_job(f"j{i}", source=src)
        if output is not None:
            job["output"] = output
        items.append(job)
    extra = {"defaults": {"output": {"destination": default_dest}}} if default_dest else {}
    spec = batch(jobs=items, **extra)["spec"]
    model = BatchSpec.model_validate(spec)
    total_rule = LOCATION_RULE.rsplit(" <= ", 1)[0]
    assert cel_value(total_rule, spec) == batch_location_chars(model.jobs, model.defaults)
