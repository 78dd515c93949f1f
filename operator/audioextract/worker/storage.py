"""Volumes and S3: the claim-name-to-directory map and boto3 clients."""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from audioextract.api.constants import ErrorCode
from audioextract.worker.errors import WorkerError

DEFAULT_REGION = "us-east-1"
# Validity of the presigned downloadUrl in job.completed webhooks (DESIGN §5).
DOWNLOAD_URL_SECONDS = 3600


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
            raise WorkerError(
                missing, f"volume {claim!r} is not mounted (expected a directory at {base})"
            )
        real_base = base.resolve()
        target = (base / (relative or "")).resolve()
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


def s3_client(
    endpoint: str | None, region: str | None, credentials: Mapping[str, str] | None = None
) -> Any:
    """A boto3 S3 client.

    ``credentials`` holds ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and optionally
    ``AWS_SESSION_TOKEN`` (a Secret's keys); without it boto3 finds its own (environment,
    web identity, instance role).
    """
    import boto3  # imported here: only S3 jobs pay for it
    from botocore.config import Config

    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
    region = (
        region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or DEFAULT_REGION
    )
    # Path-style addressing: S3-compatible stores rarely have per-bucket DNS names.
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint else "auto"},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    keys: dict[str, str] = {}
    if credentials is not None:
        keys = {
            "aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
        }
        if credentials.get("AWS_SESSION_TOKEN"):
            keys["aws_session_token"] = credentials["AWS_SESSION_TOKEN"]
    return boto3.client("s3", endpoint_url=endpoint, region_name=region, config=config, **keys)


def download_url(
    uri: str,
    endpoint: str | None,
    region: str | None,
    seconds: int = DOWNLOAD_URL_SECONDS,
    credentials: Mapping[str, str] | None = None,
) -> str | None:
    """A presigned GET URL for a result at ``s3://bucket/key``; None for any other URI.

    The operator and the local runner add it to ``job.completed`` webhooks as
    ``downloadUrl``; it is sent, never stored. Signing is local computation: no request
    to the store.
    """
    if not uri.startswith("s3://"):
        return None
    bucket, key = parse_s3_url(uri)
    client = s3_client(endpoint, region, credentials)
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
    )
    return url
