"""Owed webhook events: payloads, filtering, stable ids, and the level-triggered property."""

import json
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from audioextract.api import BatchPhase, ExtractionJobStatus, JobError, JobPhase
from audioextract.api.constants import WebhookEvent
from audioextract.api.status import WebhookStatus
from audioextract.webhooks import state
from audioextract.webhooks.events import Child, Owner, Snapshot, event_id, owed_events
from tests.support.builders import job_result

BATCH = Owner(kind="Batch", namespace="media", name="episode-42", uid="uid-b")
NOW = datetime(2030, 1, 1, tzinfo=UTC)
RESULT = job_result()
ERROR = JobError(code="SourceNotFound", message="404 from the source", retryable=False)


def succeeded(name: str, token: str | None = None) -> Child:
    return Child(
        name=name,
        phase=JobPhase.SUCCEEDED,
        retry_token=token,
        extraction_job=f"episode-42-{name}",
        uid=f"uid-{name}",
        result=RESULT,
        attempts=1,
        start_time="2030-01-01T00:00:00Z",
        completion_time="2030-01-01T00:01:00Z",
    )


def failed(name: str, token: str | None = None) -> Child:
    return Child(
        name=name,
        phase=JobPhase.FAILED,
        retry_token=token,
        extraction_job=f"episode-42-{name}",
        error=ERROR,
        attempts=3,
        start_time="2030-01-01T00:00:00Z",
        completion_time="2030-01-01T00:02:00Z",
    )


def test_payloads_for_each_event_type() -> None:
    snap = Snapshot(
        BATCH,
        [succeeded("intro"), failed("interview")],
        BatchPhase.PARTIALLY_SUCCEEDED,
        completion_time="2030-01-01T00:03:00Z",
    )
    events = owed_events(snap, now=NOW)
    assert [e.type for e in events] == [
        WebhookEvent.JOB_COMPLETED,
        WebhookEvent.JOB_FAILED,
        WebhookEvent.BATCH_COMPLETED,
    ]
    completed, job_failed, batch = (json.loads(e.body()) for e in events)
    assert completed == {
        "type": "job.completed",
        "timestamp": "2030-01-01T00:01:00Z",
        "data": {
            "namespace": "media",
            "batch": {"name": "episode-42", "uid": "uid-b"},
            "job": {"name": "intro", "extractionJob": "episode-42-intro", "uid": "uid-intro"},
            "phase": "Succeeded",
            "attempts": 1,
            "result": {
                "uri": "s3://media/out/intro.mp3",
                "sizeBytes": 1234,
                "durationSeconds": 61.5,
                "sha256": "a" * 64,
                "format": "mp3",
            },
        },
    }
    assert job_failed["data"]["error"] == {
        "code": "SourceNotFound",
        "message": "404 from the source",
        "retryable": False,
    }
    assert "result" not in job_failed["data"]
    assert batch["type"] == "batch.completed"
    assert batch["timestamp"] == "2030-01-01T00:03:00Z"
    assert batch["data"]["phase"] == "PartiallySucceeded"
    assert batch["data"]["summary"] == {"total": 2, "succeeded": 1, "failed": 1}
    assert [j["name"] for j in batch["data"]["jobs"]] == ["interview", "intro"]
    assert batch["data"]["jobs"][1]["result"]["uri"] == "s3://media/out/intro.mp3"
    assert batch["data"]["jobs"][0]["error"]["code"] == "SourceNotFound"


def test_extra_data_is_added_to_the_body_only() -> None:
    event = owed_events(Snapshot(BATCH, [succeeded("intro")]), now=NOW)[0]
    body = json.loads(event.body({"downloadUrl": "https://s3.example/presigned"}))
    assert body["data"]["downloadUrl"] == "https://s3.example/presigned"
    assert "downloadUrl" not in event.payload["data"]


def test_filter_and_job_started() -> None:
    running = Child(name="a", phase=JobPhase.RUNNING, start_time="2030-01-01T00:00:00Z")
    queued = Child(name="b", phase=JobPhase.QUEUED)
    snap = Snapshot(BATCH, [running, queued, succeeded("c")])
    assert [e.type for e in owed_events(snap, now=NOW)] == [WebhookEvent.JOB_COMPLETED]
    every = [str(e) for e in WebhookEvent]
    types = [(e.type, e.job) for e in owed_events(snap, every, now=NOW)]
    assert types == [
        (WebhookEvent.JOB_STARTED, "a"),
        (WebhookEvent.JOB_STARTED, "c"),
        (WebhookEvent.JOB_COMPLETED, "c"),
    ]
    assert owed_events(snap, ["job.failed"], now=NOW) == []


def test_not_final_owes_no_batch_event() -> None:
    for phase in (None, BatchPhase.RUNNING, BatchPhase.QUEUED, BatchPhase.SUSPENDED):
        events = owed_events(Snapshot(BATCH, [succeeded("a")], phase), now=NOW)
        assert WebhookEvent.BATCH_COMPLETED not in {e.type for e in events}


def test_ids_are_stable_and_depend_on_the_retry_token() -> None:
    snap = Snapshot(BATCH, [failed("a")], BatchPhase.FAILED)
    first = owed_events(snap, now=NOW)
    again = owed_events(snap, now=datetime(2031, 1, 1, tzinfo=UTC))
    assert [e.id for e in first] == [e.id for e in again]
    assert all(e.id.startswith("msg_") and len(e.id) == 36 for e in first)
    rerun = Snapshot(BATCH, [failed("a", token="1")], BatchPhase.FAILED)
    assert not {e.id for e in first} & {e.id for e in owed_events(rerun, now=NOW)}
    other_owner = Snapshot(replace(BATCH, uid="uid-other"), [failed("a")], BatchPhase.FAILED)
    assert not {e.id for e in first} & {e.id for e in owed_events(other_owner, now=NOW)}


def test_batch_event_id_follows_the_children_attempts_not_the_batch_token() -> None:
    # The batch shows final while its children still carry their old tokens: the same
    # batch.completed as before, not a new one.
    before = Snapshot(BATCH, [succeeded("a"), failed("b")], BatchPhase.PARTIALLY_SUCCEEDED)
    after = Snapshot(BATCH, [succeeded("a"), failed("b", "1")], BatchPhase.SUCCEEDED)
    batch_ids = [
        [e.id for e in owed_events(s, now=NOW) if e.type == WebhookEvent.BATCH_COMPLETED]
        for s in (before, before, after)
    ]
    assert batch_ids[0] == batch_ids[1] != batch_ids[2]


def test_standalone_job() -> None:
    owner = Owner(kind="ExtractionJob", namespace="media", name="clip", uid="uid-clip")
    status = ExtractionJobStatus(
        phase=JobPhase.SUCCEEDED, result=RESULT, attempts=1, completion_time="2030-01-01T00:00:00Z"
    )
    snap = Snapshot(owner, [Child.from_status("clip", status)], BatchPhase.SUCCEEDED)
    events = owed_events(snap, now=NOW)
    assert [e.type for e in events] == [WebhookEvent.JOB_COMPLETED]  # never batch.completed
    data = events[0].payload["data"]
    assert "batch" not in data
    assert data["job"] == {"name": "clip", "extractionJob": "clip", "uid": "uid-clip"}
    assert events[0].id == event_id("uid-clip", WebhookEvent.JOB_COMPLETED, "clip", "")


def test_missing_times_fall_back_to_now_without_changing_ids() -> None:
    child = Child(name="a", phase=JobPhase.FAILED)
    one = owed_events(Snapshot(BATCH, [child]), now=NOW)[0]
    two = owed_events(Snapshot(BATCH, [child]), now=datetime(2031, 1, 1, tzinfo=UTC))[0]
    assert one.payload["timestamp"] == "2030-01-01T00:00:00Z"
    assert one.id == two.id


# --- the property -----------------------------------------------------------------

# One step: move child i forward (to Running, or to a terminal phase), or annotate the
# batch with retry-failed (failed children are re-queued under a new token).
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("advance"),
            st.integers(0, 3),
            st.sampled_from([JobPhase.RUNNING, JobPhase.SUCCEEDED, JobPhase.FAILED]),
        ),
        st.tuples(st.just("retry"), st.just(0), st.just(JobPhase.QUEUED)),
        st.tuples(st.just("observe"), st.just(0), st.just(JobPhase.QUEUED)),
    ),
    max_size=30,
)
ORDER = {JobPhase.QUEUED: 0, JobPhase.RUNNING: 1, JobPhase.SUCCEEDED: 2, JobPhase.FAILED: 2}
TERMINAL = {
    JobPhase.SUCCEEDED: WebhookEvent.JOB_COMPLETED,
    JobPhase.FAILED: WebhookEvent.JOB_FAILED,
}


def batch_phase(children: list[Child]) -> BatchPhase:
    phases = [c.phase for c in children]
    if not all(p in TERMINAL for p in phases):
        return BatchPhase.RUNNING
    if all(p == JobPhase.SUCCEEDED for p in phases):
        return BatchPhase.SUCCEEDED
    if all(p == JobPhase.FAILED for p in phases):
        return BatchPhase.FAILED
    return BatchPhase.PARTIALLY_SUCCEEDED


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 4), sequence=steps, with_started=st.booleans())
def test_property_one_event_per_terminal_phase_reached(
    size: int, sequence: list[tuple[str, int, JobPhase]], with_started: bool
) -> None:
    wanted = [str(e) for e in WebhookEvent] if with_started else None
    children = [Child(name=f"job{i}", phase=JobPhase.QUEUED) for i in range(size)]
    retries = 0
    expected: set[tuple[WebhookEvent, str | None, str]] = set()
    ids: dict[tuple[WebhookEvent, str | None, str], str] = {}
    sends: dict[str, int] = {}
    status = WebhookStatus()

    def observe() -> None:
        nonlocal status
        phase = batch_phase(children)
        snap = Snapshot(BATCH, list(children), phase)
        owed = owed_events(snap, wanted, now=NOW)
        assert [e.id for e in owed] == [e.id for e in owed_events(snap, wanted, now=NOW)]
        assert len({e.id for e in owed}) == len(owed)
        for child in children:
            token = child.retry_token or ""
            if child.phase in TERMINAL:
                expected.add((TERMINAL[child.phase], child.name, token))
            if with_started and child.phase != JobPhase.QUEUED:
                expected.add((WebhookEvent.JOB_STARTED, child.name, token))
        if phase != BatchPhase.RUNNING:
            vector = ",".join(f"{c.name}={c.retry_token or ''}" for c in children)
            expected.add((WebhookEvent.BATCH_COMPLETED, None, vector))
        for event in owed:
            if event.job is None:
                token = ",".join(f"{c.name}={c.retry_token or ''}" for c in children)
            else:
                token = next(c.retry_token or "" for c in children if c.name == event.job)
            key = (event.type, event.job, token)
            assert ids.setdefault(key, event.id) == event.id  # stable across observations
        # A sender that settles what it sends never sends an id twice.
        for event in state.unsettled(owed, status):
            sends[event.id] = sends.get(event.id, 0) + 1
            status = state.settle(status, event.id, delivered=True)
        status = state.summarize(status, owed)
        assert status.pending == 0

    observe()
    for action, index, target in sequence:
        if action == "advance" and index < size:
            child = children[index]
            if ORDER[target] > ORDER[JobPhase(child.phase or JobPhase.QUEUED)]:
                when = "2030-01-01T00:00:00Z"
                children[index] = replace(
                    child,
                    phase=target,
                    start_time=child.start_time or when,
                    completion_time=when if target in TERMINAL else None,
                )
        elif action == "retry" and any(c.phase == JobPhase.FAILED for c in children):
            retries += 1
            children = [
                replace(c, phase=JobPhase.QUEUED, retry_token=str(retries), start_time=None)
                if c.phase == JobPhase.FAILED
                else c
                for c in children
            ]
        observe()

    assert set(ids) == expected
    assert len(set(ids.values())) == len(ids)  # distinct (type, job, attempt) -> distinct ids
    assert all(count == 1 for count in sends.values())
    assert set(sends) == set(ids.values())
