"""A Batch on a real cluster: the operator and worker images as deployed (make e2e).

The media comes from a Pod in the test's namespace (tests/support/builders.py,
``media_server_pod``); outputs go to the PVC ``out`` through an explicit ``volume``
destination, so the tests do not depend on the operator's default destination.
"""

from typing import Any

import pytest

from audioextract.api.constants import LABEL_BATCH, ErrorCode
from tests.e2e.conftest import MEDIA, OUT_CLAIM
from tests.support import builders
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_for

JOB_SELECTOR = "app.kubernetes.io/managed-by=audio-extract-operator"
DESTINATION = {"volume": {"claimName": OUT_CLAIM, "path": "audio"}}
# Image start, two passes of loudnorm and three worker Jobs on a small kind node.
BATCH_TIMEOUT = 300

pytestmark = pytest.mark.timeout(BATCH_TIMEOUT + 120)


def out_path(uri: str) -> str:
    """Where a ``volume://out/...`` result is in the media server Pod (the PVC at /out)."""
    prefix = f"volume://{OUT_CLAIM}/"
    assert uri.startswith(prefix), uri
    return "/out/" + uri.removeprefix(prefix)


def test_batch_of_three_partially_succeeds(
    cluster: Kubectl, namespace: str, media_url: str
) -> None:
    k = cluster
    batch = builders.batch(
        "episode",
        [
            builders.batch_job(
                "mp3", source=builders.source(f"{media_url}/clip.mp4"), output={"format": "mp3"}
            ),
            builders.batch_job(
                "flac",
                source=builders.source(f"{media_url}/clip.mp4"),
                output={"format": "flac", "normalize": True},
            ),
            builders.batch_job(
                "missing", source=builders.source(f"{media_url}/missing.mp4"), retries=0
            ),
        ],
        defaults={"output": {"destination": DESTINATION}},
    )
    k.apply(namespace, batch)

    # What a user would run: a PartiallySucceeded Batch is Complete (it ran to its end).
    k(
        "wait",
        "-n",
        namespace,
        "--for=condition=Complete",
        "batch/episode",
        f"--timeout={BATCH_TIMEOUT}s",
        timeout=BATCH_TIMEOUT + 30,
    )
    done = k.get(namespace, "batch", "episode")
    st = done["status"]
    generation = done["metadata"]["generation"]
    assert st["phase"] == "PartiallySucceeded", st
    assert (st["succeeded"], st["failed"], st["total"]) == (2, 1, 3), st
    assert st["observedGeneration"] == generation
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Complete"]["status"] == "True"
    assert conds["Stalled"]["status"] == "True" and "'missing'" in conds["Stalled"]["message"]
    assert conds["Ready"]["status"] == "False"
    assert all(c["observedGeneration"] == generation for c in st["conditions"])
    entries = {e["name"]: e for e in st["jobs"]}

    missing = k.get(namespace, "extractionjob", "episode-missing")
    assert missing["status"]["error"]["code"] == ErrorCode.SOURCE_NOT_FOUND, missing["status"]
    assert entries["missing"]["phase"] == "Failed"
    assert entries["missing"]["error"]["code"] == ErrorCode.SOURCE_NOT_FOUND

    for key, format_name in (("mp3", "mp3"), ("flac", "flac")):
        ej = k.get(namespace, "extractionjob", f"episode-{key}")
        result: dict[str, Any] = ej["status"]["result"]
        assert result["format"] == key and entries[key]["result"]["uri"] == result["uri"]
        assert ej["status"]["observedGeneration"] == ej["metadata"]["generation"]
        # The file on the PVC is the one the result describes, in the asked-for format.
        path = out_path(result["uri"])
        assert k.exec(namespace, MEDIA, "sha256sum", path).split()[0] == result["sha256"]
        probed = k.exec(
            namespace, MEDIA, "ffprobe", "-v", "error", "-show_entries", "format=format_name",
            "-of", "default=noprint_wrappers=1:nokey=1", path,
        )  # fmt: skip
        assert probed.strip() == format_name

    # Worker Jobs stay for their ttlSecondsAfterFinished (kubectl logs works meanwhile),
    # and every worker Pod was admitted in this restricted namespace (a refused one
    # leaves FailedCreate events).
    assert k.names(namespace, "jobs", JOB_SELECTOR)
    refused = k(
        "get", "-n", namespace, "events", "--field-selector=reason=FailedCreate", "-o", "name"
    )
    assert not refused.stdout.split(), refused.stdout


def test_deleting_a_batch_garbage_collects_its_extraction_jobs(
    cluster: Kubectl, namespace: str, media_url: str
) -> None:
    k = cluster
    jobs = [
        builders.batch_job(name, source=builders.source(f"{media_url}/clip.mp4"))
        for name in ("a", "b")
    ]
    k.apply(
        namespace, builders.batch("gc", jobs, defaults={"output": {"destination": DESTINATION}})
    )
    children = f"{LABEL_BATCH}=gc"
    wait_for(
        lambda: len(k.names(namespace, "extractionjobs", children)) == 2,
        timeout=60,
        interval=1,
        what="the Batch's two ExtractionJobs",
    )

    k("delete", "-n", namespace, "batch/gc", "--wait=false")
    wait_for(
        lambda: not k.names(namespace, "extractionjobs", children),
        timeout=120,
        interval=1,
        what="ExtractionJobs garbage-collected",
    )
    # Their worker Jobs (owned by the ExtractionJobs) go the same way.
    wait_for(
        lambda: (
            not [
                n for n in k.names(namespace, "jobs", JOB_SELECTOR) if n.startswith("job.batch/gc-")
            ]
        ),
        timeout=120,
        interval=1,
        what="worker Jobs garbage-collected",
    )
