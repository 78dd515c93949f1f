"""Delivering the finished file: a volume directory, an S3 bucket or a presigned PUT URL.

Each is atomic from a reader's point of view: a volume gets a hidden temporary name
in the target directory and a rename; S3 shows an object only once its (multipart)
upload completes; a PUT is a single request with Content-Length, which the server
either stores whole or rejects.
"""

import contextlib
import os
import secrets
import shutil
from pathlib import Path

from audioextract.api.constants import ErrorCode, Format
from audioextract.api.spec import Destination
from audioextract.urlguard import BlockedAddressError, check_url
from audioextract.worker.errors import WorkerError
from audioextract.worker.log import JsonLogger, redact_url
from audioextract.worker.netconfig import NetConfig
from audioextract.worker.storage import GuardRefusalError, Side, VolumeMap, guard_refusal, s3_client

CONTENT_TYPES: dict[Format, str] = {
    Format.MP3: "audio/mpeg",
    Format.AAC: "audio/aac",
    Format.M4A: "audio/mp4",
    Format.FLAC: "audio/flac",
    Format.WAV: "audio/wav",
    Format.OPUS: "audio/ogg",
    Format.OGG: "audio/ogg",
    Format.ALAC: "audio/mp4",
}
MULTIPART_THRESHOLD = 64 * 1024 * 1024


def deliver(
    path: Path,
    dest: Destination,
    filename: str,
    fmt: Format,
    volumes: VolumeMap,
    net: NetConfig,
    log: JsonLogger,
) -> str:
    """Put the file at its destination; returns the result's uri (no secrets in it)."""
    if dest.volume is not None:
        uri = to_volume(path, volumes, dest.volume.claim_name, dest.volume.path, filename)
    elif dest.s3 is not None:
        uri = to_s3(path, dest, filename, fmt, net)
    else:
        assert dest.url is not None
        uri = to_url(path, dest.url, fmt, net)
    log.info("delivered", uri=uri, sizeBytes=path.stat().st_size)
    return uri


def to_volume(
    path: Path, volumes: VolumeMap, claim: str, directory: str | None, filename: str
) -> str:
    """Copy into the claim's directory under a hidden name, fsync, then rename into place."""
    target_dir = volumes.resolve(
        claim, directory, ErrorCode.OUTPUT_WRITE_FAILED, ErrorCode.INVALID_SPEC
    )
    # Not derived from the file name: a name near the 255-byte limit must still fit.
    partial = target_dir / f".partial-{secrets.token_hex(8)}"
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as src, partial.open("wb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(target_dir / filename)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise WorkerError(
            ErrorCode.OUTPUT_WRITE_FAILED,
            f"writing to volume {claim!r} failed: {exc.strerror or exc}",
        ) from exc
    rel = "/".join(p for p in ((directory or "").strip("/"), filename) if p)
    return f"volume://{claim}/{rel}"


def to_s3(path: Path, dest: Destination, filename: str, fmt: Format, net: NetConfig) -> str:
    """Upload with boto3 (multipart above 64 MiB); the object appears only when complete."""
    from boto3.exceptions import Boto3Error
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = dest.s3
    assert s3 is not None
    prefix = s3.prefix or ""
    key = f"{prefix}{filename}"
    client = s3_client(s3.endpoint, s3.region, Side.DESTINATION, net.policy, net.ca_file)
    try:
        client.upload_file(
            str(path),
            s3.bucket,
            key,
            ExtraArgs={"ContentType": CONTENT_TYPES[fmt]},
            Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, use_threads=False),
        )
    except (Boto3Error, BotoCoreError, ClientError, OSError, GuardRefusalError) as exc:
        refusal = guard_refusal(exc)
        if refusal is not None:
            raise WorkerError(ErrorCode.INVALID_SPEC, f"destination: {refusal}") from exc
        raise WorkerError(
            ErrorCode.OUTPUT_WRITE_FAILED,
            f"upload to s3://{s3.bucket}/{key} failed: {_boto_reason(exc)}",
        ) from exc
    return f"s3://{s3.bucket}/{key}"


def check_destination(dest: Destination, volumes: VolumeMap, net: NetConfig) -> None:
    """Refuse a destination that cannot work before anything is downloaded or decoded.

    A volume must be mounted and the directory inside it; an S3 endpoint or a PUT
    URL must resolve to addresses the URL guard allows (the upload itself connects
    through the guard again: this check is the early answer, not the protection).
    """
    if dest.volume is not None:
        volumes.resolve(
            dest.volume.claim_name,
            dest.volume.path,
            ErrorCode.OUTPUT_WRITE_FAILED,
            ErrorCode.INVALID_SPEC,
        )
        return
    url = dest.url if dest.url is not None else (dest.s3.endpoint if dest.s3 else None)
    url = url or os.environ.get("AWS_ENDPOINT_URL") or None
    if url is None:
        return
    shown = redact_url(url)
    try:
        check_url(url, net.policy)
    except BlockedAddressError as exc:
        raise WorkerError(
            ErrorCode.INVALID_SPEC, f"destination {shown}: blocked by the URL guard: {exc}"
        ) from exc
    except OSError as exc:
        raise WorkerError(ErrorCode.OUTPUT_WRITE_FAILED, f"destination {shown}: {exc}") from exc


def _boto_reason(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip()
    # boto3 wraps the service error's text (e.g. "(NoSuchBucket) ...") in its own message.
    text = str(exc)
    return (
        text[text.index("An error occurred") :]
        if "An error occurred" in text
        else type(exc).__name__
    )


def to_url(path: Path, url: str, fmt: Format, net: NetConfig) -> str:
    """One PUT with Content-Length to a presigned URL; redirects are not followed."""
    # Here, not at the top: a delivery to a volume or S3 never needs http.client.
    import http.client

    from audioextract.worker.net import connect, request_target

    shown = redact_url(url)
    try:
        conn = connect(url, net)
    except WorkerError as exc:
        code = (
            ErrorCode.INVALID_SPEC
            if exc.code == ErrorCode.SOURCE_FORBIDDEN
            else ErrorCode.OUTPUT_WRITE_FAILED
        )
        raise WorkerError(code, f"destination {shown}: {exc.message}") from exc
    size = path.stat().st_size
    try:
        with path.open("rb") as body:
            conn.request(
                "PUT",
                request_target(url),
                body=body,
                headers={"Content-Length": str(size), "Content-Type": CONTENT_TYPES[fmt]},
                encode_chunked=False,
            )
            resp = conn.getresponse()
            resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise WorkerError(ErrorCode.OUTPUT_WRITE_FAILED, f"PUT {shown} failed: {exc}") from exc
    finally:
        conn.close()
    if not 200 <= resp.status < 300:
        raise WorkerError(ErrorCode.OUTPUT_WRITE_FAILED, f"PUT {shown} answered HTTP {resp.status}")
    return shown


def already_there(
    dest: Destination, filename: str, volumes: VolumeMap, net: NetConfig
) -> bool | None:
    """Whether the object about to be written exists already; None when that cannot be known.

    A retry or re-run of a job rewrites its own object (deterministic names); the
    worker says so in its log and result rather than replacing it silently.
    A presigned PUT URL cannot be asked (it signs PUT only): None.
    """
    if dest.volume is not None:
        try:
            target_dir = volumes.resolve(
                dest.volume.claim_name,
                dest.volume.path,
                ErrorCode.OUTPUT_WRITE_FAILED,
                ErrorCode.INVALID_SPEC,
            )
        except WorkerError:
            return None  # delivery reports it
        return (target_dir / filename).is_file()
    if dest.s3 is not None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client = s3_client(
                dest.s3.endpoint, dest.s3.region, Side.DESTINATION, net.policy, net.ca_file
            )
            client.head_object(Bucket=dest.s3.bucket, Key=f"{dest.s3.prefix or ''}{filename}")
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            return False if code in ("404", "NoSuchKey", "NotFound") else None
        except (BotoCoreError, WorkerError, OSError):
            return None  # delivery reports it
        return True
    return None
