"""One output, one job: two jobs of a Batch resolving to the same object are refused."""

from audioextract.api.spec import BatchSpec, Destination
from audioextract.api.validation import batch_output_conflicts
from audioextract.reconcile.names import child_name


def spec(*jobs: dict[str, object], defaults: dict[str, object] | None = None) -> BatchSpec:
    body: dict[str, object] = {"jobs": list(jobs)}
    if defaults is not None:
        body["defaults"] = {"output": defaults}
    return BatchSpec.model_validate(body)


def job(name: str | None, **output: object) -> dict[str, object]:
    body: dict[str, object] = {"source": {"url": f"https://cdn.example/{name}.mp4"}}
    if name is not None:
        body["name"] = name
    if output:
        body["output"] = output
    return body


S3 = {"s3": {"bucket": "media", "prefix": "out/"}}


def conflicts(s: BatchSpec, default: Destination | None = None) -> list[str]:
    return batch_output_conflicts("ep", s, default, child_name)


def test_distinct_names_do_not_conflict() -> None:
    assert conflicts(spec(job("a"), job("b"), job("c"), job("d"))) == []


def test_same_filename_same_destination() -> None:
    found = conflicts(spec(job("a", filename="x"), job("b", filename="x.mp3")))
    assert found == [
        "spec.jobs[1] (b) and spec.jobs[0] (a) both write the default destination: x.mp3: "
        "one output, one job (set output.filename or output.destination)"
    ]


def test_defaults_are_merged_before_comparing() -> None:
    s = spec(job("a", filename="x"), job("b", filename="x"), defaults={"destination": S3})
    assert "s3://media/out/x.mp3" in conflicts(s)[0]
    # Another format is another object (x.flac).
    assert conflicts(spec(job("a", filename="x"), job("b", filename="x", format="flac"))) == []


def test_s3_prefix_and_volume_paths_are_normalised() -> None:
    s = spec(
        job("a", filename="x", destination={"volume": {"claimName": "o", "path": "d"}}),
        job("b", filename="x", destination={"volume": {"claimName": "o", "path": "d/./"}}),
        job("c", filename="x", destination={"volume": {"claimName": "p", "path": "d"}}),
    )
    (only,) = conflicts(s)
    assert only.startswith("spec.jobs[1] (b) and spec.jobs[0] (a) both write volume o: d/x.mp3")


def test_presigned_urls_compare_by_object_not_signature() -> None:
    s = spec(
        job("a", destination={"url": "https://h.example/bucket/k?X-Amz-Signature=1"}),
        job("b", destination={"url": "https://H.example/bucket/k?X-Amz-Signature=2"}),
    )
    assert "https://h.example/bucket/k" in conflicts(s)[0]


def test_operator_default_destination() -> None:
    default = Destination.model_validate(S3)
    s = spec(job("a", filename="x"), job("b", filename="x"))
    (only,) = conflicts(s, default)
    assert only.startswith("spec.jobs[1] (b) and spec.jobs[0] (a) both write s3://media/out/x.mp3")
