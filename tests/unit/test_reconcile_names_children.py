import re

from hypothesis import given
from hypothesis import strategies as st

from audioextract.api.constants import LABEL_BATCH, LABEL_JOB
from audioextract.api.spec import BatchSpec
from audioextract.reconcile.children import BatchRef, desired_children, is_owned_by
from audioextract.reconcile.names import batch_label_value, child_name, dns_label, job_name

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN = st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,250}[a-z0-9])?\Z", fullmatch=True).filter(
    lambda s: ".." not in s and ".-" not in s and "-." not in s
)


def spec(*names: str) -> BatchSpec:
    jobs = []
    for n in names:
        job: dict[str, object] = {"source": {"url": "https://example.com/a.mp4"}}
        if n is not None:
            job["name"] = n
        jobs.append(job)
    return BatchSpec.model_validate({"jobs": jobs, "defaults": {"output": {"format": "flac"}}})


def test_short_names_are_kept():
    assert child_name("episode-42", "intro") == "episode-42-intro"
    assert job_name("episode-42-intro", 1) == "episode-42-intro-1"


def test_long_names_are_cut_with_a_hash_and_stay_unique():
    batch = "b" * 250
    a, b = child_name(batch, "intro"), child_name(batch, "outro")
    assert a != b
    for name in (a, b, batch_label_value(batch), job_name(a, 3)):
        assert len(name) <= 63 and DNS_LABEL.match(name), name
    assert child_name(batch, "intro") == a  # deterministic


def test_dots_in_batch_names_become_valid_labels():
    name = child_name("my.batch", "x")
    assert DNS_LABEL.match(name) and name != child_name("my-batch", "x")


@given(SUBDOMAIN, st.from_regex(r"\A[a-z]([-a-z0-9]{0,61}[a-z0-9])?\Z", fullmatch=True))
def test_child_names_are_always_dns_labels(batch, key):
    name = child_name(batch, key)
    assert len(name) <= 63 and DNS_LABEL.match(name)
    assert dns_label(batch) == batch_label_value(batch)


def test_desired_children_labels_owner_and_spec():
    ref = BatchRef(name="ep", namespace="ns", uid="u-1")
    children = desired_children(ref, spec("intro", "outro"))
    assert [c["metadata"]["name"] for c in children] == ["ep-intro", "ep-outro"]
    first = children[0]
    assert first["metadata"]["labels"][LABEL_BATCH] == "ep"
    assert first["metadata"]["labels"][LABEL_JOB] == "intro"
    assert first["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "audio-extract-operator"
    (owner,) = first["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "Batch",
        "name": "ep",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert first["spec"]["output"]["format"] == "flac"
    assert is_owned_by(first, "u-1") and not is_owned_by(first, "other")
    assert desired_children(ref, spec("intro", "outro")) == children


def test_batch_label_is_hashed_for_long_batch_names():
    ref = BatchRef(name="x" * 100, namespace="ns", uid="u")
    (child,) = desired_children(ref, spec("a"))
    value = child["metadata"]["labels"][LABEL_BATCH]
    assert len(value) <= 63 and DNS_LABEL.match(value)


def test_merge_patch():
    from audioextract.reconcile.patch import merge_patch

    old = {"phase": "Failed", "error": {"code": "X"}, "result": {"a": 1, "b": 2}, "n": 1}
    new = {"phase": "Queued", "result": {"a": 1}, "n": 1, "conditions": [1]}
    assert merge_patch(old, new) == {
        "phase": "Queued",
        "error": None,
        "result": {"b": None},
        "conditions": [1],
    }
    assert merge_patch(new, new) == {}
