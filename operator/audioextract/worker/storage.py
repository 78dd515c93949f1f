"""Volumes and S3: the claim-name-to-directory map and boto3 clients (guarded, per side)."""

import os
import socket
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from audioextract.api.constants import ErrorCode
from audioextract.urlguard import BlockedAddressError, GuardPolicy, resolve_all
from audioextract.worker.errors import WorkerError

DEFAULT_REGION = "us-east-1"


class VolumeMap:
    """PersistentVolumeClaim names to local directories: explicit entries, else ROOT/NAME."""

    def __init__(self, root: Path, explicit: dict[str, Path] | None = None) -> None:
        self.root = root
        self.explicit = dict(explicit or {})

    def directory(self, claim: str) -> Path:
        """The local directory where a claim is mounted."""
        return self.explicit.get(claim, self.root / claim)

    def resolve(
        self, claim: str, relative: str | None, missing: ErrorCode, escape: ErrorCode
    ) -> Path:
        """A path inside a claim's mount.

        Raises ``missing`` if the claim is not mounted, ``escape`` if a symlink or '..'
        leads outside it.
        """
        base = self.directory(claim)
        if not base.is_dir():
            raise WorkerError(missing, f"volume {claim!r} is not mounted")
        try:
            real_base = base.resolve()
            target = (base / (relative or "")).resolve()
        except (OSError, ValueError) as exc:
            # A name too long for the file system, a NUL byte, a symlink loop.
            raise WorkerError(escape, f"path {relative!r} in volume {claim!r}: {exc}") from exc
        if target != real_base and real_base not in target.parents:
            raise WorkerError(escape, f"path {relative!r} escapes volume {claim!r}")
        return target


def parse_s3_url(url: str) -> tuple[str, str]:
    """Bucket and key of ``s3://bucket/key``."""
    parts = urlsplit(url)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key:
        raise WorkerError(ErrorCode.INVALID_SPEC, "source.url: expected s3://bucket/key")
    return parts.netloc, key


class Side(StrEnum):
    """Whose credentials an S3 client carries: the source's or the destination's."""

    SOURCE = "SOURCE"
    DESTINATION = "DESTINATION"


CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def credentials_for(side: Side, env: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The access key of one side, or None (unsigned requests).

    ``AUDIOEXTRACT_<SIDE>_AWS_*`` (what the operator sets from the side's Secret) when
    present, else the plain ``AWS_*`` variables (one set for both sides: the local
    runner's case). Never the other side's, never a shared file, a container or
    instance metadata endpoint: credentials are passed to boto3 explicitly, so its
    default provider chain is not consulted at all.
    """
    env = os.environ if env is None else env
    for prefix in (f"AUDIOEXTRACT_{side}_", ""):
        key_id = env.get(f"{prefix}AWS_ACCESS_KEY_ID", "")
        secret = env.get(f"{prefix}AWS_SECRET_ACCESS_KEY", "")
        if key_id and secret:
            creds = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
            token = env.get(f"{prefix}AWS_SESSION_TOKEN", "")
            if token:
                creds["aws_session_token"] = token
            return creds
    return None


def _pinned_connection(base: type, policy: GuardPolicy) -> type:
    """A botocore connection class that connects only to an address the guard approved.

    Each new connection resolves its host once with :func:`audioextract.urlguard.resolve_all`,
    which checks every answer, and connects to exactly that address; the host name
    stays the connection's ``host``, so TLS (SNI and certificate checks) and the signed
    Host header use it. A DNS answer that changes between the check and the connect
    cannot redirect a signed request.
    """
    from urllib3.exceptions import NewConnectionError
    from urllib3.util import connection

    def _new_conn(self: Any) -> socket.socket:
        try:
            addresses = resolve_all(self.host, self.port, policy)
        except BlockedAddressError as exc:
            # Not a urllib3 error: botocore must not retry it as a network failure.
            raise GuardRefusalError(f"{self.host}: blocked by the URL guard: {exc}") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"{exc}") from exc
        error: OSError | None = None
        for address in addresses:  # all checked; the first that answers
            try:
                sock: socket.socket = connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:
                error = exc
                continue
            return sock
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")

    return type(f"Pinned{base.__name__}", (base,), {"_new_conn": _new_conn})


class GuardRefusalError(Exception):
    """An S3 connection the URL guard refused (raised inside botocore, unwrapped by callers)."""


def guard_refusal(exc: BaseException) -> GuardRefusalError | None:
    """The GuardRefusalError behind a boto3 exception, if that is what it was."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, GuardRefusalError):
            return seen
        nested = getattr(seen, "kwargs", {}).get("error")
        seen = nested if isinstance(nested, BaseException) else (seen.__cause__ or seen.__context__)
    return None


def s3_client(
    endpoint: str | None,
    region: str | None,
    side: Side,
    policy: GuardPolicy | None = None,
    ca_file: str | None = None,
) -> Any:
    """A boto3 S3 client with exactly ``side``'s credentials, its connections pinned by the guard.

    ``policy`` defaults to the worker's guard policy from the environment.
    """
    if policy is None:
        policy = GuardPolicy.from_env()
    import boto3  # imported here: only S3 jobs pay for it
    import botocore.awsrequest
    from botocore import UNSIGNED
    from botocore.config import Config

    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
    region = (
        region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or DEFAULT_REGION
    )
    creds = credentials_for(side)
    # Path-style addressing: S3-compatible stores rarely have per-bucket DNS names.
    config = Config(
        signature_version="s3v4" if creds else UNSIGNED,
        s3={"addressing_style": "path" if endpoint else "auto"},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        # No HTTP(S)_PROXY from the environment: the guard must see the real host.
        proxies={},
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        config=config,
        verify=ca_file or None,
        **(creds or {}),
    )
    session = client._endpoint.http_session
    pools = session._pool_classes_by_scheme
    if set(pools) != {"http", "https"}:  # fail closed if botocore changes its layout
        raise RuntimeError("unexpected botocore connection pools: cannot pin S3 connections")
    pools["http"] = type(
        "PinnedHTTPConnectionPool",
        (botocore.awsrequest.AWSHTTPConnectionPool,),
        {"ConnectionCls": _pinned_connection(botocore.awsrequest.AWSHTTPConnection, policy)},
    )
    pools["https"] = type(
        "PinnedHTTPSConnectionPool",
        (botocore.awsrequest.AWSHTTPSConnectionPool,),
        {"ConnectionCls": _pinned_connection(botocore.awsrequest.AWSHTTPSConnection, policy)},
    )
    return client
