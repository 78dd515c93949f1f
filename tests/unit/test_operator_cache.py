"""The controller's cache: slim projections, ordering by resourceVersion, indexes, pruning."""

import json
import time

from audioextract.handlers.cache import Cache
from tests.support.builders import (
    batch,
    cached,
    extraction_job,
    owner_ref,
    terminated_pod,
    worker_job,
)


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


def test_a_version_already_held_is_not_packed_again():
    cache = Cache()
    cache.put("ExtractionJob", child("b-a", rv="10", phase="Running", jobName="b-a-1"))
    packed = cache.extraction_jobs.packed(("ns", "b-a"))
    replay = child("b-a", rv="10", phase="Running", jobName="b-a-1")
    assert cache.put("ExtractionJob", replay) is not None  # taken, as the version it is
    assert cache.extraction_jobs.packed(("ns", "b-a")) is packed
    b = cached(batch("b"), uid="uid-b", rv="7")
    cache.put("Batch", b)
    packed = cache.batches.packed(("ns", "b"))
    cache.put("Batch", b)
    assert cache.batches.packed(("ns", "b")) is packed
    newer = cached(batch("b"), uid="uid-b", rv="8")
    cache.put("Batch", newer)
    assert cache.batches.packed(("ns", "b")) is not packed


def test_a_job_the_operator_deleted_is_not_brought_back_by_a_late_event():
    cache = Cache()
    owner = child("b-a")
    job = worker_job("b-a-1", owner, "Complete", succeeded=1, ready=0)
    job["metadata"]["resourceVersion"] = "5"
    assert cache.put("Job", job) is not None
    assert "ready" in cache.jobs[("ns", "b-a-1")]["status"]
    cache.job_deleted(("ns", "b-a-1"))
    late = dict(job, metadata={**job["metadata"], "resourceVersion": "4"})
    assert cache.put("Job", late) is None and cache.owned_jobs(cached(owner, uid="uid-b-a")) == []
    cache.remove("Job", ("ns", "b-a-1"))  # its DELETED event ends the tombstone
    assert cache.deleted_jobs == {}


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


def test_finished_pods_only_once_every_ended_pod_is_seen():
    cache = Cache()
    owner = child("b-a")
    job = worker_job("b-a-1", owner, "Complete", succeeded=1, failed=1)
    cache.put("Job", job)

    def pod(name: str, message: str) -> dict:
        p = terminated_pod(message)
        p["metadata"].update(
            {"name": name, "namespace": "ns", "labels": {"batch.kubernetes.io/job-name": "b-a-1"}}
        )
        return p

    cache.put("Pod", pod("b-a-1-x", '{"error": {"code": "EncodeFailed", "message": "x"}}'))
    # The Job counts two ended Pods; the cache has seen one: read them from the API instead.
    assert cache.finished_pods(job) is None
    cache.put("Pod", pod("b-a-1-y", "{}"))
    pods = cache.finished_pods(job)
    assert pods is not None and {p["metadata"]["name"] for p in pods} == {"b-a-1-x", "b-a-1-y"}
    assert "spec" not in pods[0]
    cache.remove("Job", ("ns", "b-a-1"))
    assert cache.prune_pods() == 2 and cache.pods_by_job == {}


def test_events_wake_only_the_objects_they_concern():
    from audioextract.handlers.controller import Controller
    from audioextract.settings import Settings

    c = Controller(object(), Settings(), ["ns"])  # type: ignore[arg-type]
    ej = child("b-a")
    c.event("ExtractionJob", "ADDED", ej)
    assert list(c.extraction_jobs._queue) == [("ns", "b-a")]
    assert list(c.batches._due) == [("ns", "b")]  # the Batch, a little later (coalesced)
    assert not c.batches._queue
    c.event("Job", "MODIFIED", worker_job("b-a-1", ej, active=1))
    assert list(c.extraction_jobs._queue) == [("ns", "b-a")]  # de-duplicated
    c.event("Batch", "MODIFIED", cached(batch("other"), uid="uid-o"))
    assert list(c.batches._queue) == [("ns", "other")]
    c.event("ExtractionJob", "DELETED", ej)
    assert ("ns", "b-a") not in c.cache.extraction_jobs


def test_the_last_open_child_finishing_wakes_its_batch_at_once():
    from audioextract.handlers.controller import Controller
    from audioextract.settings import Settings

    c = Controller(object(), Settings(), ["ns"])  # type: ignore[arg-type]
    c.event("ExtractionJob", "ADDED", child("b-a"))
    c.event("ExtractionJob", "ADDED", child("b-b"))
    assert c.cache.has_open_children("ns", "uid-b")
    c.batches._due.clear()
    # One of two finishes: the rollup gathers more changes first.
    c.event("ExtractionJob", "MODIFIED", child("b-a", rv="2", phase="Succeeded"))
    assert list(c.batches._due) == [("ns", "b")] and not c.batches._queue
    c.batches._due.clear()
    # The last one finishes: the Batch's final status is not held back.
    c.event("ExtractionJob", "MODIFIED", child("b-b", rv="2", phase="Failed"))
    assert not c.cache.has_open_children("ns", "uid-b")
    assert list(c.batches._queue) == [("ns", "b")]


def test_a_batch_keeps_its_stored_size_without_status_for_the_status_budget():
    cache = Cache()
    b = cached(batch("b"), uid="uid-b")
    b["metadata"]["managedFields"] = [
        {"manager": "user", "fieldsV1": {"f:spec": {"x": "y" * 5000}}}
    ]
    b["status"] = {"jobs": [{"name": "a" * 63}] * 100}
    cache.put("Batch", b)
    size = cache.batch_bytes[("ns", "b")]
    # managedFields count (the projection drops them, etcd stores them); status does not.
    assert 5000 < size < 6000
    assert size == len(
        json.dumps({k: v for k, v in b.items() if k != "status"}, separators=(",", ":"))
    )
    cache.remove("Batch", ("ns", "b"))
    assert cache.batch_bytes == {}


def test_extraction_jobs_are_kept_packed_and_read_back_whole():
    cache = Cache()
    result = {"uri": "s3://out/b-a.mp3", "sizeBytes": 5, "sha256": "ab" * 32}
    obj = child("b-a", rv="3", phase="Succeeded", jobName="b-a-1", result=result)
    obj["spec"]["source"]["url"] = "https://example.test/vidéo.mp4"  # non-ASCII survives
    stored = cache.put("ExtractionJob", obj)
    assert stored is not None
    raw = cache.extraction_jobs._packed[("ns", "b-a")]
    assert isinstance(raw, bytes) and len(raw) < len(json.dumps(stored))
    first = cache.extraction_jobs[("ns", "b-a")]
    assert first == stored
    # Every read is a copy: changing it does not change the cache.
    first["status"]["phase"] = "Failed"
    assert cache.extraction_jobs[("ns", "b-a")]["status"]["phase"] == "Succeeded"
    assert list(cache.extraction_job_phases()) == ["Succeeded"]
    assert cache.holds_extraction_job(obj)
    assert not cache.holds_extraction_job(child("b-a", rv="4"))
    cache.remove("ExtractionJob", ("ns", "b-a"))
    assert len(cache.extraction_jobs) == 0 and cache.ej_index == {}
    assert cache.children_by_owner == {}


def test_batches_are_kept_packed_with_their_version_and_phase_beside():
    cache = Cache()
    b = cached(batch("b"), uid="uid-b", rv="7")
    b["status"] = {"phase": "Running", "jobs": [{"name": f"j{i}"} for i in range(200)]}
    stored = cache.put("Batch", b)
    assert stored is not None and cache.batches[("ns", "b")] == stored
    raw = cache.batches._packed[("ns", "b")]
    assert isinstance(raw, bytes) and len(raw) < len(json.dumps(stored)) // 4
    assert list(cache.batch_phases()) == ["Running"]
    version = cache.batch_version(("ns", "b"))
    assert version is not None and (version.uid, version.resource_version) == ("uid-b", "7")
    older = cached(batch("b"), uid="uid-b", rv="6")
    older["status"] = {"phase": "Queued"}
    assert cache.put("Batch", older) is None  # a late event does not undo a newer write
    assert list(cache.batch_phases()) == ["Running"]
    cache.remove("Batch", ("ns", "b"))
    assert len(cache.batches) == 0 and cache.batch_version(("ns", "b")) is None


def test_a_running_batchs_children_stay_decoded_until_one_changes():
    cache = Cache()
    b = cached(batch("b"), uid="uid-b")
    cache.put("Batch", b)
    cache.put("ExtractionJob", child("b-a", rv="3", phase="Running", jobName="b-a-1"))
    cache.put("ExtractionJob", child("b-b", rv="4", phase="Succeeded"))
    first = cache.children(b)
    again = cache.children(b)
    assert again["b-a"] is first["b-a"] and again["b-b"] is first["b-b"]  # not decoded again
    cache.put("ExtractionJob", child("b-a", rv="5", phase="Succeeded"))
    after = cache.children(b)
    assert after["b-a"]["status"]["phase"] == "Succeeded"  # the stored version, decoded anew
    assert after["b-b"] is first["b-b"]
    cache.forget_decoded()
    assert cache.children(b)["b-b"] is not first["b-b"]
    # Every child is finished now: nothing is kept decoded for a Batch at rest.
    assert cache._decoded == {}
    assert cache.children(b) == after
    cache.remove("ExtractionJob", ("ns", "b-b"))
    assert set(cache.children(b)) == {"b-a"}


def test_admission_limits_come_only_from_batches_with_open_children():
    cache = Cache()
    done = cached(batch("done"), uid="uid-done")
    busy = cached(batch("busy"), uid="uid-busy")
    cache.put("Batch", done)
    cache.put("Batch", busy)
    finished = child("done-a", phase="Succeeded")
    finished["metadata"]["ownerReferences"] = [owner_ref("Batch", "done", "uid-done")]
    running = child("busy-a", phase="Running", jobName="busy-a-1")
    running["metadata"]["ownerReferences"] = [owner_ref("Batch", "busy", "uid-busy")]
    cache.put("ExtractionJob", finished)
    cache.put("ExtractionJob", running)
    assert set(cache.batch_limits(1000)) == {"ns/busy"}
    cache.forget_parsed_specs()
    assert cache._specs == {}
    assert set(cache.batch_limits(1000)) == {"ns/busy"}  # parsed again when needed


def test_a_replayed_version_does_not_wake_its_batch_again():
    from audioextract.handlers.controller import Controller
    from audioextract.settings import Settings

    c = Controller(object(), Settings(), ["ns"])  # type: ignore[arg-type]
    done = child("b-a", rv="5", phase="Succeeded")
    c.event("ExtractionJob", "ADDED", done)
    assert list(c.batches._queue) == [("ns", "b")]  # its last open child: at once
    c.batches._queue.clear()
    c.batches._dirty.clear()
    # kopf's own list replays the version the controller's list already brought.
    c.event("ExtractionJob", "ADDED", child("b-a", rv="5", phase="Succeeded"))
    assert not c.batches._queue and not c.batches._due
    assert list(c.extraction_jobs._queue) == [("ns", "b-a")]
    # A new version wakes it as before.
    c.event("ExtractionJob", "MODIFIED", child("b-a", rv="6", phase="Succeeded"))
    assert list(c.batches._queue) == [("ns", "b")]


def test_compaction_keeps_every_entry_equal():
    cache = Cache()
    b = cached(batch("b"), uid="uid-b")
    cache.put("Batch", b)
    a = cache.put("ExtractionJob", child("b-a", rv="3", phase="Running", jobName="b-a-1"))
    cache.put("ExtractionJob", child("b-b", rv="4", phase="Failed"))
    assert a is not None
    cache.put("Job", worker_job("b-a-1", a, active=1))
    pod = terminated_pod("{}")
    pod["metadata"].update(
        {"name": "b-a-1-x", "namespace": "ns", "labels": {"batch.kubernetes.io/job-name": "b-a-1"}}
    )
    cache.put("Pod", pod)
    stores = ("batches", "extraction_jobs", "jobs", "pods")
    indexes = ("ej_index", "batch_index", "children_by_owner", "failed_by_owner", "jobs_by_owner",
               "unfinished_owners", "pods_by_job", "touched", "batch_bytes")  # fmt: skip
    before = {name: dict(getattr(cache, name)) for name in stores + indexes}
    old_index = cache.ej_index[("ns", "b-a")]
    cache.compact()
    assert {name: dict(getattr(cache, name)) for name in stores + indexes} == before
    assert cache.ej_index[("ns", "b-a")] is not old_index  # new objects, equal content
    assert set(cache.children(cache.batches[("ns", "b")])) == {"b-a", "b-b"}
    assert cache.has_open_children("ns", "uid-b")


def test_the_controller_releases_memory_once_per_quiet_spell(monkeypatch):
    import asyncio

    from audioextract.handlers import controller as controller_module
    from audioextract.handlers.controller import Controller
    from audioextract.settings import Settings

    releases: list[int] = []
    monkeypatch.setattr(controller_module, "IDLE_RELEASE_SECONDS", 0.1)
    monkeypatch.setattr(controller_module.memory, "release", lambda *f: releases.append(len(f)))

    async def scenario() -> None:
        c = Controller(object(), Settings(), ["ns"])  # type: ignore[arg-type]
        task = asyncio.create_task(c._release_loop())
        await asyncio.sleep(0.5)
        assert releases == [4]  # once, not again while nothing happens
        c.event("ExtractionJob", "ADDED", child("b-a"))  # queues a key: not quiet
        await asyncio.sleep(0.4)
        assert releases == [4]
        key = await c.extraction_jobs.get()
        c.extraction_jobs.done(key)
        c.batches._due.clear()
        await asyncio.sleep(0.5)
        assert releases == [4, 4]  # quiet again after that work
        task.cancel()

    asyncio.run(scenario())
