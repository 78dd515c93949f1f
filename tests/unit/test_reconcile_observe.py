import json

from audioextract.api.constants import ErrorCode, JobPhase
from audioextract.reconcile.observe import last_termination, observe_job, parse_message

RESULT = {
    "uri": "s3://b/k.mp3",
    "sizeBytes": 10,
    "durationSeconds": 1.0,
    "format": "mp3",
    "codec": "mp3",
    "sampleRate": 44100,
    "channels": 2,
    "sha256": "a" * 64,
    "streamCopied": False,
}


def job(cond=None, reason=None, suspend=False, **status):
    st = dict(status)
    if cond:
        st["conditions"] = [
            {"type": cond, "status": "True", "reason": reason, "lastTransitionTime": "t9"}
        ]
    return {"spec": {"suspend": suspend}, "status": st}


def pod(exit_code, message=None, reason=None, created="2026-01-01T00:00:00Z"):
    term = {"exitCode": exit_code, "reason": reason}
    if message is not None:
        term["message"] = message
    return {
        "metadata": {"name": f"p{created}", "creationTimestamp": created},
        "status": {"containerStatuses": [{"name": "worker", "state": {"terminated": term}}]},
    }


def test_complete_with_result():
    obs = observe_job(
        job("Complete", succeeded=1, startTime="t1", completionTime="t2"),
        [pod(0, json.dumps({"result": RESULT}))],
    )
    assert obs.phase == JobPhase.SUCCEEDED and obs.result.sha256 == "a" * 64
    assert (obs.start_time, obs.completion_time) == ("t1", "t2")


def test_complete_without_result_is_worker_crash():
    obs = observe_job(job("Complete"), [pod(0, "some log line")])
    assert obs.phase == JobPhase.FAILED and obs.error.code == ErrorCode.WORKER_CRASHED


def test_pod_failure_policy_uses_worker_error():
    msg = json.dumps({"error": {"code": "DecodeFailed", "message": "moov atom not found"}})
    obs = observe_job(job("Failed", "PodFailurePolicy"), [pod(14, msg)])
    assert obs.error.code == ErrorCode.DECODE_FAILED and obs.error.retryable is False
    assert "moov" in obs.error.message


def test_backoff_limit_uses_latest_pod():
    old = pod(
        20,
        json.dumps({"code": "SourceUnreachable", "message": "a"}),
        created="2026-01-01T00:00:00Z",
    )
    new = pod(
        22,
        json.dumps({"code": "OutputWriteFailed", "message": "b"}),
        created="2026-01-01T00:00:05Z",
    )
    obs = observe_job(job("Failed", "BackoffLimitExceeded"), [new, old])
    assert obs.error.code == ErrorCode.OUTPUT_WRITE_FAILED and obs.error.retryable is True


def test_exit_code_without_message():
    obs = observe_job(job("Failed", "PodFailurePolicy"), [pod(13, "")])
    assert obs.error.code == ErrorCode.NO_AUDIO_STREAM


def test_deadline_is_timeout():
    obs = observe_job(job("Failed", "DeadlineExceeded"), [])
    assert obs.error.code == ErrorCode.TIMEOUT


def test_oom_and_garbage_are_worker_crashed():
    assert (
        observe_job(job("Failed", "BackoffLimitExceeded"), [pod(137, None, "OOMKilled")]).error.code
        == ErrorCode.WORKER_CRASHED
    )
    assert (
        observe_job(job("Failed", "BackoffLimitExceeded"), [pod(1, "Traceback...")]).error.code
        == ErrorCode.WORKER_CRASHED
    )
    assert (
        observe_job(job("Failed", "BackoffLimitExceeded"), []).error.code
        == ErrorCode.WORKER_CRASHED
    )


def test_suspended_is_queued_and_active_is_running():
    assert observe_job(job(suspend=True), []).phase == JobPhase.QUEUED
    assert observe_job(job(active=1, startTime="t"), []).phase == JobPhase.RUNNING


def test_parse_message_variants():
    assert parse_message(None) is None
    assert parse_message("[1]") is None
    assert parse_message(json.dumps({"code": "Nope"})) is None
    assert parse_message(json.dumps(RESULT)).uri == "s3://b/k.mp3"
    assert last_termination([]) is None
