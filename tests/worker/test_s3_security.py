"""S3 for sources and destinations: each side signs with its own key, connections are
pinned to the address the guard checked, the destination is checked before any download."""

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audioextract.urlguard import GuardPolicy, parse_networks
from audioextract.worker.storage import GuardRefusalError, Side, guard_refusal, s3_client
from tests.support import s3
from tests.support.http_server import MediaServer, serve_tls
from tests.worker.conftest import RunWorker, media

SOURCE_KEYS = {
    "AUDIOEXTRACT_SOURCE_AWS_ACCESS_KEY_ID": "SOURCEKEYID",
    "AUDIOEXTRACT_SOURCE_AWS_SECRET_ACCESS_KEY": "source-secret",
}
DESTINATION_KEYS = {
    "AUDIOEXTRACT_DESTINATION_AWS_ACCESS_KEY_ID": "DESTKEYID",
    "AUDIOEXTRACT_DESTINATION_AWS_SECRET_ACCESS_KEY": "dest-secret",
    "AUDIOEXTRACT_DESTINATION_AWS_SESSION_TOKEN": "dest-session-token",
}
# run_worker sets the plain AWS_* test keys; these tests are about their absence.
NO_PLAIN_KEYS = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""}


@pytest.fixture
def buckets(
    s3_endpoint: str, media_files: dict[str, Path]
) -> Iterator[tuple[str, list[s3.SignedRequest]]]:
    client = s3.client(s3_endpoint)
    for bucket in ("raw", "audio"):
        client.create_bucket(Bucket=bucket)
    client.upload_file(str(media_files["av.mp4"]), "raw", "in/av.mp4")
    with s3.recording_proxy(s3_endpoint) as (endpoint, records):
        yield endpoint, records
    for bucket in ("raw", "audio"):
        for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
        client.delete_bucket(Bucket=bucket)


def _task(endpoint: str) -> tuple[dict[str, Any], dict[str, Any]]:
    source = {"url": "s3://raw/in/av.mp4", "s3": {"endpoint": endpoint}}
    output = {
        "format": "mp3",
        "destination": {"s3": {"bucket": "audio", "prefix": "out/", "endpoint": endpoint}},
    }
    return source, output


def test_each_side_signs_with_its_own_key(
    run_worker: RunWorker, buckets: tuple[str, list[s3.SignedRequest]]
) -> None:
    endpoint, records = buckets
    source, output = _task(endpoint)
    run = run_worker(source, output, env={**NO_PLAIN_KEYS, **SOURCE_KEYS, **DESTINATION_KEYS})
    assert run.returncode == 0, run.stderr
    reads = [r for r in records if r.path.startswith("/raw/")]
    writes = [r for r in records if r.path.startswith("/audio/")]
    assert reads and writes
    assert {(r.key_id, r.session_token) for r in reads} == {("SOURCEKEYID", None)}
    assert {(r.key_id, r.session_token) for r in writes} == {("DESTKEYID", "dest-session-token")}
    for secret in ("source-secret", "dest-secret", "dest-session-token"):
        assert secret not in run.stderr and secret not in run.raw


def test_a_side_without_keys_is_unsigned_never_the_other_sides(
    run_worker: RunWorker, buckets: tuple[str, list[s3.SignedRequest]]
) -> None:
    endpoint, records = buckets
    source, output = _task(endpoint)
    run = run_worker(source, output, env={**NO_PLAIN_KEYS, **DESTINATION_KEYS})
    # The bucket is private: unsigned, the read is refused; the destination's key,
    # which could read it, is not borrowed.
    assert (run.returncode, run.error["code"]) == (12, "SourceForbidden"), run.stderr
    reads = [r for r in records if r.path.startswith("/raw/")]
    assert reads and all(r.key_id is None and r.session_token is None for r in reads)
    assert not any(r.path.startswith("/audio/") for r in records)


def test_blocked_destination_is_refused_before_the_source_is_read(
    run_worker: RunWorker, media_server: MediaServer
) -> None:
    before = len(media_server.requests)
    run = run_worker(
        {"url": media_server.url("range/av.mp4")},
        {"destination": {"s3": {"bucket": "audio", "endpoint": "http://169.254.169.254"}}},
    )
    assert (run.returncode, run.error["code"]) == (10, "InvalidSpec"), run.stderr
    assert "169.254.169.254" in run.error["message"]
    assert len(media_server.requests) == before, "nothing may be downloaded first"


def test_unmounted_destination_volume_fails_before_decoding(run_worker: RunWorker) -> None:
    run = run_worker(media("av.mp4"), {"destination": {"volume": {"claimName": "nope"}}})
    assert (run.returncode, run.error["code"]) == (22, "OutputWriteFailed")
    assert not any(e["event"] in ("probed", "encode-start") for e in run.logs())


def test_rebinding_cannot_move_a_signed_request(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS that answers the allowed address, then a refused one, then the allowed one...

    (The rebinding name is ``localhost`` so that the S3 server reads requests as
    path-style; the answers come from the rebinding resolver, not from /etc/hosts.)

    The guard allows only 127.0.0.1; 127.0.0.2 plays the internal service. Each
    connection resolves once and connects to what it checked, so every request
    either reaches the allowed address or is refused: none reaches 127.0.0.2.
    """
    port = int(s3_endpoint.rsplit(":", 1)[1])
    with s3.recording_proxy(f"http://127.0.0.1:{port}", bind="127.0.0.2") as (internal, hits):
        internal_port = int(internal.rsplit(":", 1)[1])
        assert internal_port != port
        real = socket.getaddrinfo
        answers = iter(["127.0.0.1", "127.0.0.2"] * 50)

        given: list[str] = []

        def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "localhost":
                given.append(next(answers))
                return real(given[-1], *args, **kwargs)
            return real(host, *args, **kwargs)

        s3.client(s3_endpoint).create_bucket(Bucket="rebind")
        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        policy = GuardPolicy(allow_networks=parse_networks("127.0.0.1/32"))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
        client = s3_client(f"http://localhost:{port}", "us-east-1", Side.DESTINATION, policy)
        outcomes = []
        for i in range(6):
            try:
                client.put_object(Bucket="rebind", Key=f"k{i}", Body=b"x")
                outcomes.append("stored")
            except Exception as exc:
                refusal = guard_refusal(exc)
                assert refusal is not None, exc
                outcomes.append("refused")
            client.close()  # a fresh connection, and so a fresh resolution, each time
        assert hits == [], "a request reached the refused address"
        # The refused answer was handed out, and refused; botocore's retry then got a
        # fresh (allowed) answer, so the writes themselves went through.
        assert "127.0.0.2" in given
        assert outcomes and set(outcomes) <= {"stored", "refused"}


def test_refusal_is_unwrapped_from_botocore(s3_endpoint: str) -> None:
    policy = GuardPolicy()  # loopback refused
    client = s3_client(s3_endpoint, "us-east-1", Side.SOURCE, policy)
    with pytest.raises(Exception) as info:
        client.list_buckets()
    assert isinstance(guard_refusal(info.value), GuardRefusalError)


def _cert_for(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate naming only the DNS name ``name`` (no IP address)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize(("cert_name", "verified"), [("localhost", True), ("other.test", False)])
def test_pinned_tls_is_verified_against_the_host_name(
    tmp_path: Path, media_files: dict[str, Path], cert_name: str, verified: bool
) -> None:
    """The connection goes to the pinned 127.0.0.1, but TLS checks the name ``localhost``.

    The certificate names only ``localhost`` (no IP address), so a check against the
    pinned address would fail; one naming another host must fail.
    """
    from botocore.exceptions import SSLError

    cert, key = _cert_for(tmp_path / cert_name, cert_name)
    root = next(iter(media_files.values())).parent
    policy = GuardPolicy(allow_networks=parse_networks("127.0.0.0/8,::1/128"))
    with serve_tls(root, cert, key) as server:
        port = server.server_address[1]
        client = s3_client(f"https://localhost:{port}", "us-east-1", Side.SOURCE, policy, str(cert))
        if verified:
            # Path-style GET /range/av.mp4: the media server answers with the file.
            body = client.get_object(Bucket="range", Key="av.mp4")["Body"].read()
            assert body == media_files["av.mp4"].read_bytes()
        else:
            with pytest.raises(SSLError, match=r"doesn't match 'other\.test'"):
                client.get_object(Bucket="range", Key="av.mp4")
            assert not server.requests
