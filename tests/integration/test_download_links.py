"""The operator's downloadUrl against the real S3-compatible server (moto).

The credentials come from a Secret as the API server returns it (base64 ``data``);
the link is fetched with no credentials at all, so it only works if it was signed
right. The operator-level run is in tests/envtest/test_operator_metrics.py; this file
covers the resolution rules: the destination's own endpoint and Secret over the
operator's defaults, no link for other destinations, a clear error for a bad Secret.
"""

import asyncio
import base64
import hashlib
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tests.support import builders, s3

from audioextract.handlers.links import DownloadLinks
from audioextract.settings import Settings
from audioextract.webhooks.events import Child, Owner, Snapshot, owed_events

AUDIO = b"ID3" + bytes(range(256)) * 40


class Secrets:
    """The one API call the links make, answered from a dict like the API server would."""

    def __init__(self, secrets: dict[str, dict[str, str]]) -> None:
        self.secrets = secrets
        self.reads: list[tuple[str, str]] = []

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any]:
        self.reads.append((namespace, name))
        data = {k: base64.b64encode(v.encode()).decode() for k, v in self.secrets[name].items()}
        return {"metadata": {"name": name, "namespace": namespace}, "data": data}


def completed(uri: str, name: str = "lecture-01") -> Any:
    owner = Owner(kind="ExtractionJob", namespace="media", name=name, uid="uid-1")
    child = Child(
        name=name,
        phase="Succeeded",
        result=builders.job_result(uri=uri, sha256=hashlib.sha256(AUDIO).hexdigest()),
        completion_time="2026-01-01T10:00:00Z",
    )
    (event,) = owed_events(Snapshot(owner, [child]))
    return event


def ej(output: dict[str, Any] | None = None) -> dict[str, Any]:
    if output is None:
        return builders.extraction_job("lecture-01")
    return builders.extraction_job("lecture-01", output=output)


def links(secrets: Secrets, obj: dict[str, Any] | None, **settings: Any) -> DownloadLinks:
    return DownloadLinks(
        secrets,  # type: ignore[arg-type]
        Settings(**settings),
        lambda ns, name: obj if obj is not None and (ns, name) == ("media", "lecture-01") else None,
    )


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    client = s3.client(s3_endpoint)
    client.create_bucket(Bucket="results")
    client.put_object(Bucket="results", Key="out/lecture-01.mp3", Body=AUDIO)
    return s3_endpoint


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
    return body


CREDS = {k: v for k, v in s3.S3_ENV.items() if k.startswith("AWS_") and "REGION" not in k}


def test_default_destination_signed_with_the_operators_secret(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)  # only the Secret's credentials exist
    secrets = Secrets({"s3": CREDS})
    make = links(
        secrets,
        ej(),
        default_destination={"s3": {"bucket": "results", "prefix": "out/"}},
        s3_endpoint=bucket,
        s3_credentials_secret="s3",
        download_url_seconds=120,
    )
    url = asyncio.run(make(completed("s3://results/out/lecture-01.mp3")))
    assert url is not None
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["120"]
    assert fetch(url) == AUDIO
    assert secrets.reads == [("media", "s3")]


def test_the_destinations_own_endpoint_and_secret_win(bucket: str) -> None:
    secrets = Secrets({"own": CREDS, "operator": {"AWS_ACCESS_KEY_ID": "x"}})
    dest = {"s3": {"bucket": "results", "endpoint": bucket, "credentialsSecret": {"name": "own"}}}
    make = links(
        secrets,
        ej({"destination": dest}),
        s3_endpoint="http://127.0.0.1:1",
        s3_credentials_secret="operator",
    )
    url = asyncio.run(make(completed("s3://results/out/lecture-01.mp3")))
    assert url is not None and url.startswith(bucket)
    assert fetch(url) == AUDIO
    assert secrets.reads == [("media", "own")]


def test_no_link_for_other_results_or_an_unknown_job() -> None:
    secrets = Secrets({})
    make = links(secrets, ej({"destination": {"volume": {"claimName": "out"}}}))
    assert asyncio.run(make(completed("volume://out/lecture-01.mp3"))) is None
    assert asyncio.run(make(completed("s3://results/x.mp3", name="gone"))) is None
    assert secrets.reads == []


def test_a_secret_without_the_keys_is_a_clear_error(bucket: str) -> None:
    secrets = Secrets({"s3": {"AWS_ACCESS_KEY_ID": "only-the-id"}})
    dest = {"s3": {"bucket": "results", "endpoint": bucket, "credentialsSecret": {"name": "s3"}}}
    make = links(secrets, ej({"destination": dest}))
    with pytest.raises(ValueError, match="Secret s3 has no key AWS_SECRET_ACCESS_KEY"):
        asyncio.run(make(completed("s3://results/out/lecture-01.mp3")))
