"""Volumes and S3: the claim-name-to-directory map and boto3 clients."""

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from audioextract.api.constants import ErrorCode
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


def s3_client(endpoint: str | None, region: str | None) -> Any:
    """A boto3 S3 client; credentials come from the environment (AWS_ACCESS_KEY_ID, ...)."""
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
    return boto3.client("s3", endpoint_url=endpoint, region_name=region, config=config)
