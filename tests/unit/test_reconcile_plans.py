"""The pure plans of reconcile/: ExtractionJob, Batch and admission over cached objects."""

import json

from audioextract.api.constants import ErrorCode, JobPhase, Priority
from audioextract.api.spec import Destination
from audioextract.api.status import BatchStatus, ExtractionJobStatus
from audioextract.reconcile import events
from audioextract.reconcile.admission import SlotView, batch_limit, plan_admission
from audioextract.reconcile.batch import BatchSnapshot, parse_batch_spec, plan_batch
from audioextract.reconcile.children import BatchRef, desired_children
from audioextract.reconcile.extractionjob import (
    JobConfig,
    JobSnapshot,
    plan_extraction_job,
    pods_needed,
    wants_slot,
)
from audioextract.reconcile.manifest import WorkerConfig
from audioextract.reconcile.resources import ResourceBounds
from tests.support.builders import (
    batch,
    batch_job,
    cached,
    extraction_job,
    job_result,
    owner_ref,
    terminated_pod,
    worker_job,
)

NOW = "2026-01-01T00:02:00Z"
CFG = JobConfig(
    worker=WorkerConfig(image="worker:test"),
    default_destination=Destination.model_validate({"s3": {"bucket": "audio"}}),
)
RESULT = job_result(uri="s3://audio/ej.mp3")
MESSAGE = json.dumps({"result": RESULT.dump()})


def ej(name: str = "ej", **status: object) -> dict:
    obj = cached(extraction_job(name), uid=f"uid-{name}")
    obj["status"] = dict(status)
    return obj


# -- ExtractionJob --------------------------------------------------------------------


def test_admitted_job_gets_its_first_run_recorded_once_the_job_shows_it():
    plan = plan_extraction_job(JobSnapshot(ej(), admitted=True, now=NOW), CFG)
    start = plan.create_job
    assert start is not None and start.job["metadata"]["name"] == "ej-1"
    owner = start.job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("ExtractionJob", "uid-ej")
    # The task travels in the run's Secret, owned by the ExtractionJob; the fallback
    # Job (Secrets refused) carries it in its environment instead.
    assert start.secret["kind"] == "Secret" and start.secret["metadata"]["name"] == "ej-1"
    assert start.secret["metadata"]["ownerReferences"][0]["uid"] == "uid-ej"
    assert "AUDIOEXTRACT_TASK" not in json.dumps(start.job["spec"])
    assert "AUDIOEXTRACT_TASK" in json.dumps(start.job_with_env["spec"])
    # No status write yet: the Job (deterministic name, in the cache) is the record
    # until it shows a running worker or an outcome (docs/operator.md, write budget).
    assert plan.status == ExtractionJobStatus() and plan.events == ()
    assert plan.slot_settled and plan.delete_jobs == ()


def test_created_job_without_a_ready_worker_is_not_recorded_yet():
    obj = ej()
    job = worker_job("ej-1", obj, active=1, startTime="2026-01-01T00:00:10Z")
    plan = plan_extraction_job(JobSnapshot(obj, jobs=[job], now=NOW), CFG)
    assert plan.create_job is None and plan.status == ExtractionJobStatus()
    assert plan.events == () and plan.delete_jobs == ()


def test_job_finished_before_it_was_recorded_costs_one_status_write():
    obj = ej()
    job = worker_job("ej-1", obj, "Complete", succeeded=1, startTime="2026-01-01T00:00:10Z")
    assert pods_needed(obj, [job]) == "ej-1"
    plan = plan_extraction_job(
        JobSnapshot(obj, jobs=[job], pods=[terminated_pod(MESSAGE)], now=NOW), CFG
    )
    st = plan.status
    assert (st.phase, st.job_name, st.attempts) == (JobPhase.SUCCEEDED, "ej-1", 1)
    assert (st.result, st.start_time) == (RESULT, "2026-01-01T00:00:10Z")
    assert [e.reason for e in plan.events] == [events.JOB_STARTED, events.JOB_SUCCEEDED]
    # The finished Job is left to its ttlSecondsAfterFinished: no delete write.
    assert plan.delete_jobs == ()


def test_batch_child_posts_no_per_job_events():
    obj = cached(
        extraction_job("b-a"), uid="uid-child", ownerReferences=[owner_ref("Batch", "b", "uid-b")]
    )
    job = worker_job("b-a-1", obj, "Failed", failed=1)
    plan = plan_extraction_job(JobSnapshot(obj, jobs=[job], now=NOW), CFG)
    assert plan.status.phase == JobPhase.FAILED and plan.status.job_name == "b-a-1"
    assert plan.events == ()
    running = plan_extraction_job(
        JobSnapshot(obj, jobs=[worker_job("b-a-1", obj, active=1, ready=1)], now=NOW), CFG
    )
    assert running.status.phase == JobPhase.RUNNING and running.events == ()
    # Cancelled by its Batch before the run was recorded: the running Job is stopped.
    cancelled = cached(obj, uid="uid-child")
    cancelled["status"] = {
        "phase": "Failed",
        "error": {"code": "Cancelled", "message": "x", "retryable": False},
    }
    plan = plan_extraction_job(
        JobSnapshot(cancelled, jobs=[worker_job("b-a-1", obj, active=1)], now=NOW), CFG
    )
    assert plan.delete_jobs == ("b-a-1",) and plan.create_job is None
    # Just created and not admitted yet, a child writes nothing and looks again later;
    # still waiting 2 s after its creation, it writes Queued.
    fresh = plan_extraction_job(JobSnapshot(obj, now="2026-01-01T00:00:01Z"), CFG)
    assert fresh.status == ExtractionJobStatus() and fresh.create_job is None
    assert fresh.requeue_after == 1.0
    waiting = plan_extraction_job(JobSnapshot(obj, now="2026-01-01T00:00:02Z"), CFG)
    assert waiting.status.phase == JobPhase.QUEUED and waiting.requeue_after is None


def test_queued_job_without_a_slot_waits_and_says_so():
    plan = plan_extraction_job(JobSnapshot(ej(), now=NOW), CFG)
    assert plan.create_job is None and plan.events == ()
    assert plan.status.phase == JobPhase.QUEUED
    assert {c.type: c.status for c in plan.status.conditions}["Reconciling"] == "True"
    assert not plan.slot_settled


def test_a_job_of_the_next_run_is_adopted_not_created_again():
    obj = ej()
    job = worker_job("ej-1", obj, active=1, ready=1)
    assert not wants_slot(obj, [job])
    plan = plan_extraction_job(JobSnapshot(obj, jobs=[job], now=NOW), CFG)
    assert plan.create_job is None
    assert (plan.status.phase, plan.status.job_name) == (JobPhase.RUNNING, "ej-1")
    assert "started Job ej-1 (run 1)" in plan.events[0].message


def test_finished_job_records_the_result_and_is_left_to_its_ttl():
    obj = ej(phase="Running", jobName="ej-1", attempts=1, startTime="2026-01-01T00:00:10Z")
    job = worker_job("ej-1", obj, "Complete", succeeded=1, completionTime="2026-01-01T00:01:00Z")
    assert pods_needed(obj, [job]) == "ej-1"
    plan = plan_extraction_job(
        JobSnapshot(obj, jobs=[job], pods=[terminated_pod(MESSAGE)], now=NOW), CFG
    )
    assert plan.status.phase == JobPhase.SUCCEEDED and plan.status.result == RESULT
    assert plan.status.completion_time == "2026-01-01T00:01:00Z"
    assert [e.reason for e in plan.events] == [events.JOB_SUCCEEDED]
    assert plan.delete_jobs == () and plan.requeue_after is None


def test_only_unfinished_unrecorded_jobs_are_stopped_once_final():
    obj = ej(phase="Failed", jobName="ej-2", attempts=2, completionTime="2026-01-01T00:01:50Z")
    obj["status"]["error"] = {"code": "Cancelled", "message": "x", "retryable": False}
    jobs = [
        worker_job("ej-1", obj, "Failed", failed=1),  # an earlier run: left to its TTL
        worker_job("ej-2", obj, "Failed", failed=1),  # the recorded run
        worker_job("ej-3", obj, active=1),  # started, never recorded: stopped
        {
            **worker_job("ej-4", obj, active=1),
            "metadata": {"name": "ej-4", "deletionTimestamp": NOW},
        },
    ]
    plan = plan_extraction_job(JobSnapshot(obj, jobs=jobs, now=NOW), CFG)
    assert plan.delete_jobs == ("ej-3",)
    running = ej(phase="Running", jobName="ej-1", attempts=1)
    plan = plan_extraction_job(
        JobSnapshot(running, jobs=[worker_job("ej-1", running, active=1, ready=1)], now=NOW), CFG
    )
    assert plan.delete_jobs == ()


def test_vanished_job_fails_the_run_as_worker_crashed():
    obj = ej(phase="Running", jobName="ej-1", attempts=1)
    plan = plan_extraction_job(JobSnapshot(obj, now=NOW), CFG)
    assert plan.status.error is not None
    assert (plan.status.phase, plan.status.error.code) == (
        JobPhase.FAILED,
        ErrorCode.WORKER_CRASHED,
    )
    assert [e.reason for e in plan.events] == [events.JOB_FAILED]


def test_invalid_spec_fails_once_naming_the_field():
    obj = ej()
    obj["spec"]["output"] = {"format": "mp3", "quality": "high", "bitrate": "192k"}
    plan = plan_extraction_job(JobSnapshot(obj, admitted=True, now=NOW), CFG)
    assert plan.create_job is None and plan.slot_settled
    assert plan.status.error is not None and plan.status.error.code == ErrorCode.INVALID_SPEC
    assert plan.status.error.message.startswith("spec.output")
    again = cached(obj, uid="uid-ej")
    again["status"] = plan.status.dump()
    assert plan_extraction_job(JobSnapshot(again, now=NOW), CFG).events == ()


def test_resources_out_of_bounds_are_an_invalid_spec_not_a_job():
    obj = ej()
    obj["spec"]["resources"] = {"limits": {"memory": "64Gi"}}
    bounded = WorkerConfig(image="worker:test", bounds=ResourceBounds(max_limits={"memory": "4Gi"}))
    cfg = JobConfig(worker=bounded, default_destination=CFG.default_destination)
    plan = plan_extraction_job(JobSnapshot(obj, admitted=True, now=NOW), cfg)
    assert plan.create_job is None and plan.slot_settled
    assert plan.status.error is not None and "resources.limits.memory" in plan.status.error.message
    assert plan.status.error is not None and plan.status.error.code == ErrorCode.INVALID_SPEC


def test_no_destination_anywhere_is_an_invalid_spec_not_a_job():
    cfg = JobConfig(worker=CFG.worker)
    plan = plan_extraction_job(JobSnapshot(ej(), admitted=True, now=NOW), cfg)
    assert plan.create_job is None and plan.status.phase == JobPhase.FAILED
    assert plan.status.error is not None and plan.status.error.code == ErrorCode.INVALID_SPEC


def test_standalone_webhook_owed_on_completion_and_counted_pending():
    obj = ej(phase="Running", jobName="ej-1", attempts=1)
    obj["spec"]["webhook"] = {"url": "https://hooks.example.com/a", "secretRef": {"name": "s"}}
    job = worker_job("ej-1", obj, "Complete", succeeded=1)
    plan = plan_extraction_job(
        JobSnapshot(obj, jobs=[job], pods=[terminated_pod(MESSAGE)], now=NOW), CFG
    )
    assert [e.type for e in plan.webhook_owed] == ["job.completed"]
    assert plan.webhook is not None and plan.webhook_owner is not None
    assert plan.status.webhook is not None and plan.status.webhook.pending == 1


# -- Batch ----------------------------------------------------------------------------


def batch_obj(n: int = 3, **spec: object) -> dict:
    return cached(batch("b", [batch_job(f"j{i}") for i in range(n)], **spec), uid="uid-b", rv="7")


def children(b: dict, phases: dict[str, dict]) -> dict[str, dict]:
    spec = parse_batch_spec(b, 1000)
    assert not isinstance(spec, str)
    out = {}
    for m in desired_children(BatchRef("b", "ns", "uid-b"), spec):
        name = m["metadata"]["name"]
        if name in phases:
            obj = cached(m, uid=f"uid-{name}", rv="3")
            obj["status"] = phases[name]
            out[name] = obj
    return out


def test_new_batch_plans_every_child_and_a_queued_status():
    b = batch_obj()
    plan = plan_batch(BatchSnapshot(b, parse_batch_spec(b, 1000), {}, NOW))
    assert [m["metadata"]["name"] for m in plan.create_children] == ["b-j0", "b-j1", "b-j2"]
    assert (plan.status.phase, plan.status.total, plan.status.queued) == ("Queued", 3, 3)
    assert [e.reason for e in plan.events] == [events.CHILDREN_CREATED, events.PHASE_CHANGED]
    # Applied again to what the plan asked for: nothing left to create, nothing to post.
    kids = children(b, {f"b-j{i}": {} for i in range(3)})
    b2 = dict(b, status=plan.status.dump())
    again = plan_batch(BatchSnapshot(b2, parse_batch_spec(b2, 1000), kids, NOW))
    assert again.create_children == () and again.events == ()
    assert again.status.dump() == plan.status.dump()


def test_batch_entries_carry_the_compact_result_or_the_error():
    b = batch_obj(2)
    ok = ExtractionJobStatus(phase=JobPhase.SUCCEEDED, result=RESULT).dump()
    bad = {"phase": "Failed", "error": {"code": "DecodeFailed", "message": "x", "retryable": False}}
    kids = children(b, {"b-j0": ok, "b-j1": bad})
    plan = plan_batch(BatchSnapshot(b, parse_batch_spec(b, 1000), kids, NOW))
    first, second = plan.status.dump()["jobs"]
    assert first["result"] == {
        "uri": RESULT.uri,
        "sizeBytes": RESULT.size_bytes,
        "durationSeconds": RESULT.duration_seconds,
        "sha256": RESULT.sha256,
    }
    assert "error" not in first and "result" not in second
    assert second["error"]["code"] == "DecodeFailed"
    assert plan.status.phase == "PartiallySucceeded"


def test_spent_failure_budget_cancels_only_unstarted_children():
    b = batch_obj(3, failurePolicy={"maxFailedJobs": 0})
    bad = {"phase": "Failed", "error": {"code": "DecodeFailed", "message": "x", "retryable": False}}
    kids = children(b, {"b-j0": bad, "b-j1": {"phase": "Running", "jobName": "b-j1-1"}, "b-j2": {}})
    plan = plan_batch(BatchSnapshot(b, parse_batch_spec(b, 1000), kids, NOW))
    assert [w.name for w in plan.child_writes] == ["b-j2"]
    write = plan.child_writes[0]
    assert write.resource_version == "3" and write.status.error is not None
    assert write.status.error.code == ErrorCode.CANCELLED
    assert events.CANCELLED in [e.reason for e in plan.events]
    spec = parse_batch_spec(b, 1000)
    assert not isinstance(spec, str) and batch_limit(spec, failed=1).suspended


def test_retry_failed_requeues_failed_children_once_per_token():
    b = batch_obj(2)
    b["metadata"]["annotations"] = {"audioextract.dev/retry-failed": "r1"}
    bad = {
        "phase": "Failed",
        "jobName": "b-j0-1",
        "attempts": 1,
        "error": {"code": "Timeout", "message": "x", "retryable": True},
    }
    ok = ExtractionJobStatus(phase=JobPhase.SUCCEEDED, result=RESULT).dump()
    kids = children(b, {"b-j0": bad, "b-j1": ok})
    plan = plan_batch(BatchSnapshot(b, parse_batch_spec(b, 1000), kids, NOW))
    (write,) = plan.child_writes
    assert write.name == "b-j0" and write.status.phase == JobPhase.QUEUED
    assert write.status.job_name is None and write.status.attempts == 1
    assert plan.status.retry_token == "r1" and plan.status.running == 0
    b2 = dict(b, status=plan.status.dump())
    assert plan_batch(BatchSnapshot(b2, parse_batch_spec(b2, 1000), kids, NOW)).child_writes == ()


def test_invalid_batch_fails_with_the_reason_and_creates_nothing():
    b = batch_obj(2)
    message = parse_batch_spec(b, 1)
    assert isinstance(message, str) and "maxJobsPerBatch" in message
    plan = plan_batch(BatchSnapshot(b, message, {}, NOW))
    assert plan.create_children == () and plan.status.phase == "Failed"
    assert [e.reason for e in plan.events] == [events.INVALID_SPEC]


def test_ttl_deletes_a_finished_batch_only_when_due():
    b = batch_obj(1, ttlSecondsAfterFinished=60)
    ok = ExtractionJobStatus(
        phase=JobPhase.SUCCEEDED, result=RESULT, completion_time="2026-01-01T00:01:30Z"
    ).dump()
    kids = children(b, {"b-j0": ok})
    plan = plan_batch(BatchSnapshot(b, parse_batch_spec(b, 1000), kids, NOW))
    assert not plan.delete_batch and plan.requeue_after == 30
    later = plan_batch(BatchSnapshot(b, parse_batch_spec(b, 1000), kids, "2026-01-01T00:02:31Z"))
    assert later.delete_batch and events.TTL_EXPIRED in [e.reason for e in later.events]


def test_a_child_owned_by_another_batch_is_never_counted():
    b = batch_obj(1)
    kids = children(
        b, {"b-j0": ExtractionJobStatus(phase=JobPhase.SUCCEEDED, result=RESULT).dump()}
    )
    kids["b-j0"]["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    plan = plan_batch(BatchSnapshot(b, parse_batch_spec(b, 1000), kids, NOW))
    assert plan.status.succeeded == 0 and plan.status.queued == 1
    # The cache gives only owned children; a look-alike's name is taken: never created.
    spec = parse_batch_spec(b, 1000)
    plan = plan_batch(BatchSnapshot(b, spec, {}, NOW, taken=frozenset({"b-j0"})))
    assert plan.create_children == () and plan.status.queued == 1


def test_previous_status_wins_after_a_conflict():
    b = batch_obj(1)
    b["metadata"]["annotations"] = {"audioextract.dev/retry-failed": "r1"}
    previous = BatchStatus(retry_token="r1")
    plan = plan_batch(BatchSnapshot(b, parse_batch_spec(b, 1000), {}, NOW), previous=previous)
    assert plan.child_writes == () and events.RETRY_REQUESTED not in [e.reason for e in plan.events]


# -- admission ------------------------------------------------------------------------


def view(name: str, **fields: object) -> SlotView:
    values: dict = {
        "namespace": "ns",
        "name": name,
        "uid": f"uid-{name}",
        "batch": "ns/b",
        "priority": Priority.NORMAL,
        "kueue": False,
        "valid": True,
        "phase": "Queued",
        "job_name": None,
        "next_job": f"{name}-1",
        "created": "2026-01-01T00:00:00Z",
        "deleting": False,
        **fields,
    }
    return SlotView(**values)


def test_admission_counts_jobs_expected_and_running_against_the_cap():
    views = [
        view("running", phase="Running", job_name="running-1"),
        view("expected"),
        view("with-job"),  # Queued, but its Job of run 1 exists: adopted, not admitted
        view("q1", created="2026-01-01T00:00:01Z"),
        view("q2", created="2026-01-01T00:00:02Z"),
    ]
    limits = {"ns/b": batch_limit(parse_spec_for_limits(), failed=0)}
    chosen = plan_admission(
        views,
        {"uid-with-job": 1},
        {"uid-with-job": {"with-job-1"}},
        [("ns", "expected")],
        limits,
        4,
    )
    assert chosen == [("ns", "q1")]  # running + expected + with-job hold 3 of 4 slots


def test_admission_counts_unfinished_jobs_of_finished_extraction_jobs():
    chosen = plan_admission(
        [view("q")], {"uid-gone": 1}, {}, [], {"ns/b": batch_limit(parse_spec_for_limits(), 0)}, 1
    )
    assert chosen == []


def test_admission_skips_invalid_deleting_and_unknown_batches():
    views = [view("bad", valid=False), view("del", deleting=True), view("orphan", batch="ns/x")]
    assert (
        plan_admission(views, {}, {}, [], {"ns/b": batch_limit(parse_spec_for_limits(), 0)}, None)
        == []
    )


def parse_spec_for_limits():
    b = batch_obj(1)
    spec = parse_batch_spec(b, 1000)
    assert not isinstance(spec, str)
    return spec
