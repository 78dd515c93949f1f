"""How big a Batch gets, on the real API server and etcd (docs/api.md, "How big a Batch gets").

The CRD's location rule refuses at apply time a Batch whose URLs would make it too
large; a Batch at the rule's maximum is stored with its full finished status, as the
operator's Batch plan writes it; a Batch made large by fields the rule does not count
gets its status cut by the plan, where the whole one is refused by etcd; and the real
operator, run to the end, cuts such a status and names the listing that has it all.
"""

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from audioextract.api.constants import MAX_BATCH_LOCATION_CHARS, MAX_JOBS_PER_BATCH, JobPhase
from audioextract.api.status import ExtractionJobStatus, JobResult
from audioextract.reconcile.batch import BatchSnapshot, parse_batch_spec, plan_batch
from audioextract.reconcile.budget import (
    ETCD_LIMIT,
    OBJECT_BUDGET,
    bytes_without_status,
    json_bytes,
)
from audioextract.reconcile.children import BatchRef, desired_children
from audioextract.reconcile.conditions import STATUS_TRUNCATED
from audioextract.reconcile.names import batch_label_value
from audioextract.reconcile.patch import merge_patch
from audioextract.reconcile.rollup import ChildSnapshot, rollup
from tests.envtest.operator_process import OperatorProcess
from tests.support.bad_inputs import LOCATIONS_MESSAGE, TOO_LONG_LOCATIONS, url_of
from tests.support.builders import batch, batch_job, source
from tests.support.controlplane import ControlPlane
from tests.support.instant_kubelet import JOB_NAME_LABEL, InstantKubelet, result_for
from tests.support.wait import wait_for

Obj = dict[str, Any]
GROUP, VERSION, PLURAL = "audioextract.dev", "v1alpha1", "batches"
NOW = "2026-12-02T08:00:00Z"
SOURCE_CHARS = 40
NAME = "b" * 63


def _name(i: int) -> str:
    return f"j{i:04d}-" + "x" * 57  # 63 characters, the longest job name


def _apply(cp: ControlPlane, namespace: str, obj: Obj) -> Any:
    return cp.kubectl(
        "apply", "--server-side", "--field-manager=user", "-n", namespace, "-f", "-",
        input=json.dumps(obj), check=False, timeout=300,
    )  # fmt: skip


def _read(cp: ControlPlane, namespace: str, name: str) -> Obj:
    out = cp.kubectl(
        "get", "batch", "-n", namespace, name, "-o", "json", "--show-managed-fields", timeout=120
    ).stdout
    result: Obj = json.loads(out)
    return result


def _default_uri(i: int) -> str:
    """A result URI under the operator's default destination: a long S3 prefix."""
    return f"s3://audio-out/{'p' * 760}/{i:04d}.mp3"


def _finished_children(stored: Obj) -> dict[str, Obj]:
    """Every child of the Batch, Succeeded with a result at its job's destination.

    A job without a destination of its own writes under the operator's default one,
    which the CRD's rule cannot see: here one with a long prefix.
    """
    spec = parse_batch_spec(stored, MAX_JOBS_PER_BATCH)
    assert not isinstance(spec, str), spec
    meta = stored["metadata"]
    children = {}
    for i, manifest in enumerate(
        desired_children(BatchRef(NAME, meta["namespace"], meta["uid"]), spec)
    ):
        job = spec.jobs[i]
        dest = job.output.destination if job.output and job.output.destination else None
        uri = dest.url if dest is not None and dest.url else _default_uri(i)
        result = JobResult(
            uri=uri, size_bytes=73_400_320, duration_seconds=4587.52, format="mp3", codec="mp3",
            sample_rate=44100, channels=2, sha256=hashlib.sha256(uri.encode()).hexdigest(),
            stream_copied=False,
        )  # fmt: skip
        manifest["metadata"].update(namespace=meta["namespace"], uid=f"uid-{i}", generation=1)
        manifest["status"] = ExtractionJobStatus(
            phase="Succeeded", result=result, completion_time=NOW
        ).dump()
        children[manifest["metadata"]["name"]] = manifest
    return children


def _uncut_status(stored: Obj) -> Obj:
    """The same status, whole: the rollup alone, without the plan's budget."""
    spec = parse_batch_spec(stored, MAX_JOBS_PER_BATCH)
    assert not isinstance(spec, str), spec
    snaps = []
    for key, (name, child) in zip(
        [j.name for j in spec.jobs], _finished_children(stored).items(), strict=True
    ):
        st = ExtractionJobStatus.model_validate(child["status"])
        snaps.append(ChildSnapshot(key, name, JobPhase.SUCCEEDED, result=st.result))
    return rollup(spec, snaps, previous=None, generation=1, now=NOW).dump()


def _plan_status(stored: Obj) -> Obj:
    """The status the operator's Batch plan writes for this stored Batch, all jobs finished."""
    spec = parse_batch_spec(stored, MAX_JOBS_PER_BATCH)
    snap = BatchSnapshot(
        batch=stored,
        spec=spec,
        children=_finished_children(stored),
        now=NOW,
        stored_bytes=bytes_without_status(stored),
    )
    return plan_batch(snap).status.dump()


def _write_status(api: kubernetes.client.ApiClient, namespace: str, stored: Obj, new: Obj) -> None:
    """The operator's status write: a merge patch onto the version read."""
    patch = merge_patch(stored.get("status") or {}, new)
    patch_body = {
        "metadata": {"resourceVersion": stored["metadata"]["resourceVersion"]},
        "status": patch,
    }
    kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, NAME, patch_body
    )


def test_over_long_batch_is_refused_at_apply_with_a_message_that_says_what_to_do(
    control_plane: ControlPlane, crds: list[str], namespace: str
) -> None:
    result = _apply(control_plane, namespace, TOO_LONG_LOCATIONS)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "spec.jobs: Invalid value" in output, output
    assert f"exceed {MAX_BATCH_LOCATION_CHARS} characters" in output
    assert LOCATIONS_MESSAGE in output
    assert "Request entity too large" not in output and "etcdserver" not in output


def test_batch_at_the_maximum_is_stored_with_its_full_finished_status(
    control_plane: ControlPlane, crds: list[str], namespace: str
) -> None:
    # The worst the rule admits: 1,000 jobs, the longest names, the whole total in
    # short sources and destination URLs that every status entry repeats.
    share = MAX_BATCH_LOCATION_CHARS // MAX_JOBS_PER_BATCH
    dest = share - SOURCE_CHARS
    jobs = [
        batch_job(
            _name(i),
            source=source(
                url_of(
                    SOURCE_CHARS + (1 if i < MAX_BATCH_LOCATION_CHARS % MAX_JOBS_PER_BATCH else 0),
                    i,
                )
            ),
            output={"destination": {"url": url_of(dest, i).replace(".mp4", ".mp3")}},
        )
        for i in range(MAX_JOBS_PER_BATCH)
    ]
    body = batch(NAME, jobs)
    spec = parse_batch_spec({**body, "metadata": {"name": NAME}}, MAX_JOBS_PER_BATCH)
    assert not isinstance(spec, str), spec  # exactly at the maximum: the models accept it
    created = _apply(control_plane, namespace, body)
    assert created.returncode == 0, created.stdout + created.stderr

    stored = _read(control_plane, namespace, NAME)
    status = _plan_status(stored)
    assert find_condition_dump(status, STATUS_TRUNCATED) is None
    entries = status["jobs"]
    assert len(entries) == MAX_JOBS_PER_BATCH
    _write_status(control_plane.api_client, namespace, stored, status)

    after = _read(control_plane, namespace, NAME)
    written = after["status"]["jobs"]
    assert [e["result"]["uri"] for e in written] == [
        j["output"]["destination"]["url"] for j in jobs
    ]
    assert after["status"]["succeeded"] == MAX_JOBS_PER_BATCH
    size = json_bytes(after)
    assert size <= OBJECT_BUDGET < ETCD_LIMIT, size


def find_condition_dump(status: Obj, type_: str) -> Obj | None:
    """The condition of that type in a dumped status, if any."""
    return next((c for c in status.get("conditions") or () if c["type"] == type_), None)


def test_status_that_would_not_fit_is_cut_and_says_where_the_full_listing_is(
    control_plane: ControlPlane, crds: list[str], namespace: str
) -> None:
    # What the rule does not count: tags (about 360 KB of spec here) and the operator's
    # default destination (a 760-character prefix in every result URI). The Batch passes
    # the rule, but with its whole finished status it would not fit in etcd.
    tags = {f"t{t}": "v" * 110 for t in range(3)}
    jobs = [batch_job(_name(i), output={"tags": tags}) for i in range(MAX_JOBS_PER_BATCH)]
    created = _apply(control_plane, namespace, batch(NAME, jobs))
    assert created.returncode == 0, created.stdout + created.stderr
    stored = _read(control_plane, namespace, NAME)

    # Without the cut, etcd refuses the write: the case is real, not hypothetical.
    uncut = _uncut_status(stored)
    assert bytes_without_status(stored) + json_bytes(uncut) > ETCD_LIMIT
    with pytest.raises(ApiException) as refused:
        _write_status(control_plane.api_client, namespace, stored, uncut)
    assert "too large" in str(refused.value.body), refused.value.body

    status = _plan_status(stored)
    cond = find_condition_dump(status, STATUS_TRUNCATED)
    assert cond is not None and cond["status"] == "True", status.get("conditions")
    listing = f"kubectl get ej -n {namespace} -l audioextract.dev/batch={NAME}"
    assert listing in cond["message"]
    entries = status["jobs"]
    kept = [e for e in entries if "result" in e]
    # Results are left out from the end; every entry keeps its name and phase.
    assert 0 < len(kept) < MAX_JOBS_PER_BATCH and entries[: len(kept)] == kept
    assert [e["name"] for e in entries] == [j["name"] for j in jobs]
    assert {e["phase"] for e in entries} == {"Succeeded"}

    _write_status(control_plane.api_client, namespace, stored, status)
    after = _read(control_plane, namespace, NAME)
    assert after["status"]["jobs"] == entries
    written = find_condition_dump(after["status"], STATUS_TRUNCATED)
    assert written is not None and written["reason"] == "ObjectSizeLimit"
    assert json_bytes(after) <= OBJECT_BUDGET

    # The listing the condition names lists every job: the ExtractionJobs hold the rest.
    assert f"-l audioextract.dev/batch={batch_label_value(NAME)}" in listing


@pytest.fixture
def long_uri_kubelet(controller_manager: ControlPlane, namespace: str) -> Iterator[InstantKubelet]:
    """Pods succeed at once; each result sits under a long prefix (880 characters)."""

    def message(pod: Obj) -> str:
        job = (pod["metadata"].get("labels") or {})[JOB_NAME_LABEL]
        result = {**result_for(job), "uri": f"s3://audio/{'p' * 880}/{job}.mp3"}
        return json.dumps({"result": result}, separators=(",", ":"))

    with InstantKubelet(controller_manager.new_api_client(), namespace, message=message) as k:
        yield k
    assert not k.errors, k.errors


@pytest.mark.timeout(900)
def test_operator_cuts_a_status_that_would_not_fit_and_the_listing_has_every_result(
    controller_manager: ControlPlane,
    crds: list[str],
    namespace: str,
    long_uri_kubelet: InstantKubelet,
) -> None:
    # The real operator: the stored size comes from the watched object (managedFields
    # included) through its cache. 200 jobs with six 950-character tags each (about
    # 1.2 MB stored before any status) and 900-character result URIs: the whole
    # finished status would take the Batch past the operator's budget.
    n = 200
    tags = {f"t{t}": "v" * 950 for t in range(6)}
    jobs = [batch_job(f"j{i:04d}", output={"tags": tags}) for i in range(n)]
    env = {
        "AUDIOEXTRACT_DEFAULT_DESTINATION": '{"s3": {"bucket": "audio", "prefix": "out/"}}',
        "AUDIOEXTRACT_MAX_CONCURRENT_JOBS": str(n),
    }
    custom: Any = kubernetes.client.CustomObjectsApi(controller_manager.api_client)
    with OperatorProcess(controller_manager, namespace, env) as op:
        created = _apply(controller_manager, namespace, batch("cut", jobs))
        assert created.returncode == 0, created.stdout + created.stderr

        def final() -> Obj | None:
            b: Obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "cut")
            return b if (b.get("status") or {}).get("phase") == "Succeeded" else None

        wait_for(final, timeout=600, interval=1.0, what="Batch cut Succeeded")
        op.assert_healthy()
    stored = _read(controller_manager, namespace, "cut")
    st = stored["status"]
    assert (st["total"], st["succeeded"], st["failed"]) == (n, n, 0)
    assert json_bytes(stored) <= OBJECT_BUDGET
    cond = find_condition_dump(st, STATUS_TRUNCATED)
    assert cond is not None and (cond["status"], cond["reason"]) == ("True", "ObjectSizeLimit")
    listing = f"kubectl get ej -n {namespace} -l audioextract.dev/batch=cut"
    assert listing in cond["message"]
    kept = [e for e in st["jobs"] if "result" in e]
    assert 0 < len(kept) < n and st["jobs"][: len(kept)] == kept
    assert {e["phase"] for e in st["jobs"]} == {"Succeeded"}
    # The listing the condition names: every job, each with its full result.
    out = controller_manager.kubectl(*listing.split()[1:], "-o", "json").stdout
    children = json.loads(out)["items"]
    assert len(children) == n
    assert all(len(c["status"]["result"]["uri"]) > 880 for c in children)
