import json

from audioextract.api.constants import KUEUE_QUEUE_LABEL, LABEL_BATCH
from audioextract.api.errors import PERMANENT_EXIT_CODES
from audioextract.api.spec import Destination, ExtractionJobSpec
from audioextract.api.task import build_task
from audioextract.reconcile.manifest import (
    WorkerConfig,
    active_deadline_seconds,
    job_manifest,
    task_secret_manifest,
)

CONFIG = WorkerConfig(image="worker:1", s3_credentials_secret="default-s3")


def build(spec_dict, **kw):
    spec = ExtractionJobSpec.model_validate(spec_dict)
    dest = Destination.model_validate({"volume": {"claimName": "out", "path": "audio"}})
    task = build_task("ej", spec, dest)
    return job_manifest(
        name="ej-1",
        namespace="ns",
        extraction_job="ej",
        extraction_job_uid="uid",
        spec=spec,
        task=task,
        config=kw.pop("config", CONFIG),
        task_secret=kw.pop("task_secret", None),
        batch_label="b",
        job_key="k",
    )


def container(m):
    return m["spec"]["template"]["spec"]["containers"][0]


def test_restricted_security():
    m = build({"source": {"volume": {"claimName": "in", "path": "a.mp4"}}})
    pod = m["spec"]["template"]["spec"]
    c = container(m)
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert (
        pod["securityContext"]["runAsNonRoot"]
        and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    )
    sc = c["securityContext"]
    assert (
        sc["runAsUser"] == 65532
        and sc["readOnlyRootFilesystem"]
        and sc["allowPrivilegeEscalation"] is False
    )
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_worker_service_account_only_when_configured():
    source = {"source": {"volume": {"claimName": "in", "path": "a.mp4"}}}
    assert "serviceAccountName" not in build(source)["spec"]["template"]["spec"]
    named = WorkerConfig(image="worker:1", service_account="audio-extract-worker")
    pod = build(source, config=named)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "audio-extract-worker"
    assert pod["automountServiceAccountToken"] is False


def test_volumes_task_and_env():
    m = build({"source": {"volume": {"claimName": "in", "path": "a.mp4"}}})
    c = container(m)
    mounts = {v["mountPath"]: v.get("readOnly", False) for v in c["volumeMounts"]}
    assert mounts == {"/tmp": False, "/volumes/in": True, "/volumes/out": False}
    assert c["args"] == ["--volume=in=/volumes/in", "--volume=out=/volumes/out"]
    env = {e["name"]: e for e in c["env"]}
    task = json.loads(env["AUDIOEXTRACT_TASK"]["value"])
    assert task["source"]["volume"]["claimName"] == "in" and task["name"] == "ej"
    assert env["AUDIOEXTRACT_TEMP_DIR"]["value"] == "/tmp"
    assert "AWS_ACCESS_KEY_ID" not in env
    assert m["metadata"]["labels"][LABEL_BATCH] == "b"
    assert m["metadata"]["ownerReferences"][0]["kind"] == "ExtractionJob"


def test_s3_credentials_from_secret_refs():
    m = build(
        {
            "source": {"url": "s3://media/raw/a.mov", "s3": {"credentialsSecret": {"name": "src"}}},
            "output": {"destination": {"s3": {"bucket": "out-bucket"}}},
        }
    )
    env = {e["name"]: e for e in container(m)["env"]}
    assert (
        env["AUDIOEXTRACT_SOURCE_AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "src"
    )
    assert env["AUDIOEXTRACT_DESTINATION_AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "default-s3",
        "key": "AWS_SECRET_ACCESS_KEY",
        "optional": False,
    }
    token = env["AUDIOEXTRACT_DESTINATION_AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["optional"] is True
    # Never the plain names (any AWS client would use them for every endpoint).
    assert not any(name.startswith("AWS_ACCESS") or name.startswith("AWS_SECRET") for name in env)
    assert env["AWS_EC2_METADATA_DISABLED"]["value"] == "true"
    assert all("value" not in e or "SECRET" not in e["name"] for e in env.values())


def test_pod_failure_policy_backoff_and_deadline():
    m = build({"source": {"url": "https://e.com/a.mp4"}, "retries": 3, "timeoutSeconds": 100})
    spec = m["spec"]
    assert spec["backoffLimit"] == 3
    # Finished Jobs are removed by Kubernetes' TTL controller, not by an operator write.
    assert spec["ttlSecondsAfterFinished"] == CONFIG.ttl_seconds_after_finished == 3600
    assert spec["activeDeadlineSeconds"] == 4 * (100 + CONFIG.start_grace_seconds)
    fail, ignore = spec["podFailurePolicy"]["rules"]
    assert fail["action"] == "FailJob" and fail["onExitCodes"]["values"] == list(
        PERMANENT_EXIT_CODES
    )
    assert fail["onExitCodes"]["containerName"] == "worker"
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert "suspend" not in spec


def test_kueue():
    m = build(
        {"source": {"url": "https://e.com/a.mp4"}, "queueName": "team-a"},
        config=WorkerConfig(image="w", default_requests={"cpu": "1"}),
    )
    assert m["spec"]["suspend"] is True
    assert m["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    assert m["spec"]["template"]["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    assert container(m)["resources"]["requests"] == {"cpu": "1"}


def test_deadline_formula_defaults():
    spec = ExtractionJobSpec.model_validate({"source": {"url": "https://e.com/a.mp4"}})
    assert active_deadline_seconds(spec, 60) == 3 * (3600 + 60)


def test_task_in_a_secret_not_in_the_environment():
    spec = {"source": {"url": "https://cdn.example.com/a.mp4?X-Amz-Signature=topsecret"}}
    m = build(spec, task_secret="ej-1")
    c = container(m)
    names = {e["name"] for e in c["env"]}
    assert "AUDIOEXTRACT_TASK" not in names
    assert "topsecret" not in json.dumps(m)
    assert c["args"][0] == "--task=/etc/audioextract/task/task.json"
    volume = next(v for v in m["spec"]["template"]["spec"]["volumes"] if v["name"] == "task")
    assert volume["secret"]["secretName"] == "ej-1"
    mount = next(v for v in c["volumeMounts"] if v["name"] == "task")
    assert mount == {"name": "task", "mountPath": "/etc/audioextract/task", "readOnly": True}
    dest = Destination.model_validate({"volume": {"claimName": "out"}})
    task = build_task("ej", ExtractionJobSpec.model_validate(spec), dest)
    secret = task_secret_manifest(
        name="ej-1", namespace="ns", task=task, extraction_job="ej", extraction_job_uid="uid"
    )
    assert secret["immutable"] is True and secret["type"] == "Opaque"
    assert json.loads(secret["stringData"]["task.json"])["source"]["url"].endswith("topsecret")
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ExtractionJob", "uid", False)


def test_output_limit_follows_the_temp_volume():
    env = {
        e["name"]: e for e in container(build({"source": {"url": "https://e.com/a.mp4"}}))["env"]
    }
    limit = int(env["AUDIOEXTRACT_MAX_OUTPUT_BYTES"]["value"])
    temp = next(
        v
        for v in build({"source": {"url": "https://e.com/a.mp4"}})["spec"]["template"]["spec"][
            "volumes"
        ]
        if v["name"] == "tmp"
    )
    assert temp["emptyDir"]["sizeLimit"] == "2Gi" and limit == 2**30
