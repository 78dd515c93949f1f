"""The controller's cache: slim projections, ordering by resourceVersion, indexes, pruning."""

import time

from audioextract.handlers.cache import Cache
from tests.support.builders import batch, cached, extraction_job, owner_ref, worker_job


def child(name: str, rv: str = "1", **status: object) -> dict:
    obj = cached(extraction_job(name), uid=f"uid-{name}", rv=rv)
    obj["metadata"]["ownerReferences"] = [owner_ref("Batch", "b", "uid-b")]
    obj["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    obj["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    obj["status"] = dict(status)
    return obj


def test_projections_are_slim_and_indexed_by_owner():
    cache = Cache()
    b = cached(batch("b"), uid="uid-b")
    cache.put("Batch", b)
    stored = cache.put("ExtractionJob", child("b-a"))
    assert stored is not None
    assert "managedFields" not in stored["metadata"] and "annotations" not in stored["metadata"]
    job = worker_job("b-a-1", child("b-a"), active=1)
    job["spec"]["template"] = {"spec": {"containers": [{"name": "worker"}]}}
    cache.put("Job", job)
    assert "template" not in cache.jobs[("ns", "b-a-1")]["spec"]
    assert set(cache.children(b)) == {"b-a"}
    assert [j["metadata"]["name"] for j in cache.owned_jobs(stored)] == ["b-a-1"]
    assert cache.unfinished_owners == {"uid-b-a": 1}
    finished = worker_job("b-a-1", child("b-a"), "Complete", succeeded=1)
    finished["metadata"]["resourceVersion"] = "2"
    cache.put("Job", finished)
    assert cache.unfinished_owners == {}
    cache.remove("Job", ("ns", "b-a-1"))
    assert cache.jobs_by_owner == {}


def test_an_older_version_never_replaces_a_newer_one():
    cache = Cache()
    cache.put("ExtractionJob", child("b-a", rv="10", phase="Running", jobName="b-a-1"))
    assert cache.put("ExtractionJob", child("b-a", rv="9")) is None
    assert cache.extraction_jobs[("ns", "b-a")]["status"]["phase"] == "Running"
    assert cache.put("ExtractionJob", child("b-a", rv="11", phase="Failed")) is not None
    assert cache.failed_by_owner == {"uid-b": {"b-a"}}
    assert ("ns", "b-a") not in cache.open_views


def test_expectation_ends_when_the_started_run_is_seen():
    cache = Cache()
    cache.put("ExtractionJob", child("b-a"))
    cache.expected[("ns", "b-a")] = time.monotonic() + 60
    cache.put("ExtractionJob", child("b-a", rv="2"))
    assert ("ns", "b-a") in cache.expected  # still queued: the slot stays reserved
    cache.put("ExtractionJob", child("b-a", rv="3", phase="Running", jobName="b-a-1"))
    assert cache.expected == {}
    cache.expected[("ns", "x")] = time.monotonic() - 1
    assert cache.expectations(time.monotonic()) == []


def test_resync_prunes_what_the_watch_missed_but_keeps_newer_entries():
    cache = Cache()
    cache.put("ExtractionJob", child("b-gone"))
    cache.put("ExtractionJob", child("b-kept"))
    started = time.monotonic()
    cache.put("ExtractionJob", child("b-new"))  # arrived while the list was running
    assert cache.prune("ExtractionJob", [("ns", "b-kept")], started) == [("ns", "b-gone")]
    assert set(cache.extraction_jobs) == {("ns", "b-kept"), ("ns", "b-new")}
