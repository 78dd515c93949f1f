"""One job end to end: open the source, probe, plan, (measure,) encode, measure, deliver."""

import contextlib
import hashlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audioextract.api.constants import ErrorCode, Format
from audioextract.api.status import JobResult
from audioextract.api.task import Task
from audioextract.urlguard import BlockedAddressError, check_url
from audioextract.worker import limits, process
from audioextract.worker.command import (
    DEMUXERS,
    AudioInfo,
    InputSpec,
    build_command,
    build_measure_command,
    loudness_targets,
    loudnorm_filter,
    output_filename,
    parse_ebur128,
    plan_encode,
)
from audioextract.worker.destinations import check_destination, deliver
from audioextract.worker.errors import WorkerError
from audioextract.worker.log import JsonLogger, ProgressReporter, redact_url
from audioextract.worker.net import NetConfig, open_get, status_error
from audioextract.worker.proxy import GuardProxy
from audioextract.worker.settings import WorkerSettings
from audioextract.worker.storage import Side, VolumeMap, parse_s3_url, s3_client

PRESIGN_SECONDS = 3600
RW_TIMEOUT_MARGIN = 10.0


@dataclass
class Source:
    """Where ffmpeg reads the source, and the proxy behind it for URL sources."""

    url: str
    options: dict[str, Any]
    shown: str
    proxy: GuardProxy | None = None


@dataclass
class Context:
    """What every step needs."""

    task: Task
    settings: WorkerSettings
    volumes: VolumeMap
    log: JsonLogger
    deadline: float
    workdir: Path

    @property
    def net(self) -> NetConfig:
        """Outbound HTTP settings."""
        s = self.settings
        return NetConfig(
            policy=s.policy, timeout=s.rw_timeout, max_redirects=s.max_redirects, ca_file=s.ca_file
        )


def execute(
    task: Task, settings: WorkerSettings, volumes: VolumeMap, log: JsonLogger, deadline: float
) -> JobResult:
    """Produce the task's audio file at its destination and describe it."""
    settings.temp_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="audioextract-", dir=settings.temp_dir))
    ctx = Context(task, settings, volumes, log, deadline, workdir)
    try:
        assert task.output.destination is not None
        check_destination(task.output.destination, volumes, ctx.net)
        with open_source(ctx) as source:
            info, duration = probe_source(ctx, source)
            local = encode(ctx, source, info, duration)
        return finish(ctx, local)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def open_source(ctx: Context) -> Iterator[Source]:
    """The source as an ffmpeg input; URL sources go through a guard proxy."""
    src = ctx.task.source
    if src.volume is not None:
        path = ctx.volumes.resolve(
            src.volume.claim_name,
            src.volume.path,
            ErrorCode.SOURCE_NOT_FOUND,
            ErrorCode.SOURCE_FORBIDDEN,
        )
        shown = f"volume://{src.volume.claim_name}/{src.volume.path}"
        if not path.is_file():
            raise WorkerError(ErrorCode.SOURCE_NOT_FOUND, f"{shown}: no such file")
        size = path.stat().st_size
        if size > ctx.settings.max_input_bytes:
            raise WorkerError(
                ErrorCode.INPUT_TOO_LARGE,
                f"source is {size} bytes; the limit is {ctx.settings.max_input_bytes} bytes",
            )
        yield Source(url=f"file:{path}", options=_file_options(), shown=shown)
        return
    assert src.url is not None
    if src.url.startswith("s3://"):
        bucket, key = parse_s3_url(src.url)
        s3 = src.s3
        client = s3_client(
            s3.endpoint if s3 else None,
            s3.region if s3 else None,
            Side.SOURCE,
            ctx.settings.policy,
            ctx.settings.ca_file,
        )
        url = presign_get(client, bucket, key)
        shown = src.url
    else:
        url, shown = src.url, redact_url(src.url)
    try:
        # Refuse a blocked host before anything connects; the proxy checks every hop again.
        check_url(url, ctx.settings.policy)
    except BlockedAddressError as exc:
        raise WorkerError(
            ErrorCode.SOURCE_FORBIDDEN, f"{shown}: blocked by the URL guard: {exc}"
        ) from exc
    except OSError as exc:
        raise WorkerError(ErrorCode.SOURCE_UNREACHABLE, f"{shown}: {exc}") from exc
    with GuardProxy(url, ctx.net, ctx.settings.max_input_bytes) as proxy:
        options = {
            "protocol_whitelist": "http,tcp",
            "format_whitelist": DEMUXERS,
            # Longer than the proxy's own upstream timeout, so that the proxy, which
            # knows why, reports a stalled source rather than ffmpeg.
            "rw_timeout": int((ctx.settings.rw_timeout + RW_TIMEOUT_MARGIN) * 1e6),
            # The proxy follows (and checks) redirects; ffmpeg must not.
            "max_redirects": 0,
        }
        yield Source(url=proxy.local_url, options=options, shown=shown, proxy=proxy)


def presign_get(client: Any, bucket: str, key: str) -> str:
    """A presigned GET URL for an S3 object; missing credentials are SourceForbidden."""
    from botocore.exceptions import BotoCoreError

    try:
        url: str = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGN_SECONDS
        )
    except BotoCoreError as exc:
        raise WorkerError(
            ErrorCode.SOURCE_FORBIDDEN, f"s3://{bucket}/{key}: cannot sign the request: {exc}"
        ) from exc
    return url


def _file_options() -> dict[str, Any]:
    return {"protocol_whitelist": "file", "format_whitelist": DEMUXERS}


def _source_failure(
    source: Source, returncode: int, stderr: str, default: ErrorCode
) -> WorkerError:
    if source.proxy is not None and source.proxy.error is not None:
        return source.proxy.error
    reason = process.describe_failure(returncode, stderr)
    return WorkerError(default, f"{source.shown}: {reason}")


def probe_source(ctx: Context, source: Source) -> tuple[AudioInfo, float | None]:
    """Ffprobe the source: fail fast on missing, forbidden, silent or undecodable input."""
    data, stderr = process.ffprobe_json(source.url, source.options, ctx.deadline)
    if (
        data is None
        and source.proxy is not None
        and source.proxy.error is None
        and not source.proxy.range_supported
    ):
        # Typically an MP4/MOV whose index sits at the end, from a server without
        # Range support: it cannot be streamed, but it can be read from a local copy.
        _download(ctx, source)
        data, stderr = process.ffprobe_json(source.url, source.options, ctx.deadline)
    if data is None:
        raise _source_failure(source, 1, stderr, ErrorCode.DECODE_FAILED)
    container = str(data.get("format", {}).get("format_name", ""))
    streamed_mov = (
        source.proxy is not None
        and not source.proxy.range_supported
        and "mov" in container.split(",")
    )
    # ffprobe can read through to an index at the end, but ffmpeg then cannot go
    # back to the media data without Range requests.
    if streamed_mov and not _index_first(ctx, source):
        _download(ctx, source)
        data, stderr = process.ffprobe_json(source.url, source.options, ctx.deadline)
        if data is None:
            raise _source_failure(source, 1, stderr, ErrorCode.DECODE_FAILED)
    streams = [s for s in data.get("streams", []) if s.get("codec_type") == "audio"]
    track = ctx.task.source.audio_track or 0
    if not streams:
        raise WorkerError(
            ErrorCode.NO_AUDIO_STREAM, f"{source.shown}: the source has no audio stream"
        )
    if track >= len(streams):
        raise WorkerError(
            ErrorCode.NO_AUDIO_STREAM,
            f"{source.shown}: audioTrack {track} requested "
            f"but the source has {len(streams)} audio stream(s)",
        )
    stream = streams[track]
    duration = _float(stream.get("duration")) or _float(data.get("format", {}).get("duration"))
    if duration is not None and duration > ctx.settings.max_media_seconds:
        raise WorkerError(
            ErrorCode.INPUT_TOO_LARGE,
            f"source is {duration:.0f} s long; the limit is {ctx.settings.max_media_seconds:.0f} s",
        )
    bits = _int(stream.get("bits_per_raw_sample")) or _int(stream.get("bits_per_sample")) or None
    info = AudioInfo(
        codec=str(stream.get("codec_name") or "unknown"),
        sample_rate=_int(stream.get("sample_rate")) or 0,
        channels=_int(stream.get("channels")) or 0,
        bit_rate=_int(stream.get("bit_rate")) or None,
        bits=bits,
        duration=duration,
    )
    if info.sample_rate <= 0 or info.channels <= 0 or info.codec == "unknown":
        raise WorkerError(
            ErrorCode.DECODE_FAILED, f"{source.shown}: the audio stream cannot be decoded"
        )
    ctx.log.info(
        "probed",
        source=source.shown,
        codec=info.codec,
        sampleRate=info.sample_rate,
        channels=info.channels,
        durationSeconds=duration,
        container=data.get("format", {}).get("format_name"),
    )
    return info, duration


def _index_first(ctx: Context, source: Source) -> bool:
    """Whether an MP4/MOV has its index (moov) before its media data (mdat): faststart."""
    assert source.proxy is not None
    conn, resp, _ = open_get(source.proxy.upstream_url(), ctx.net)
    try:
        head = resp.read(64 * 1024) if resp.status < 300 else b""
    except OSError:
        return False
    finally:
        conn.close()
    return mp4_index_first(head)


def mp4_index_first(head: bytes) -> bool:
    """Walk top-level MP4 boxes in ``head``: True when moov comes before mdat."""
    offset = 0
    while offset + 8 <= len(head):
        size = int.from_bytes(head[offset : offset + 4], "big")
        kind = head[offset + 4 : offset + 8]
        if kind == b"moov":
            return True
        if kind == b"mdat":
            return False
        if size == 1 and offset + 16 <= len(head):
            size = int.from_bytes(head[offset + 8 : offset + 16], "big")
        if size < 8:
            return False
        offset += size
    return False


def _download(ctx: Context, source: Source) -> None:
    """Copy a URL source into the temp dir within the size limit; switch ffmpeg to it."""
    assert source.proxy is not None
    ctx.log.info(
        "download-fallback",
        source=source.shown,
        reason="source cannot be streamed without Range support",
    )
    path = ctx.workdir / "source"
    conn, resp, final = open_get(source.proxy.upstream_url(), ctx.net)
    try:
        error = status_error(resp.status, final)
        if error is not None:
            raise error
        written = 0
        with path.open("wb") as out:
            while chunk := resp.read1(1024 * 1024):
                written += len(chunk)
                if written > ctx.settings.max_input_bytes:
                    raise WorkerError(
                        ErrorCode.INPUT_TOO_LARGE,
                        f"source exceeds the limit of {ctx.settings.max_input_bytes} bytes",
                    )
                out.write(chunk)
                if time.monotonic() > ctx.deadline:
                    raise WorkerError(
                        ErrorCode.TIMEOUT, "the task's time limit (timeoutSeconds) was reached"
                    )
    except OSError as exc:
        raise WorkerError(
            ErrorCode.SOURCE_UNREACHABLE, f"{source.shown}: download failed: {exc}"
        ) from exc
    finally:
        conn.close()
    source.url = f"file:{path}"
    source.options = _file_options()


def _progress(ctx: Context, step: str, total: float | None) -> ProgressReporter:
    return ProgressReporter(ctx.log, step, total, ctx.settings.progress_interval)


def encode(
    ctx: Context, source: Source, info: AudioInfo, duration: float | None
) -> tuple[Path, bool]:
    """Run ffmpeg into a file in the temp dir; returns it and whether audio was copied."""
    output = ctx.task.output
    plan = plan_encode(output, info)
    for note in plan.notes:
        ctx.log.info("note", message=note)
    start = output.start_seconds or None
    length = output.duration_seconds or None
    inp = InputSpec(source.url, source.options, ctx.task.source.audio_track or 0, start, length)
    expected = _expected_duration(duration, start, length)
    audio_filter = None
    if output.normalize:
        measured = _measure(ctx, source, inp, expected)
        if measured is None:
            ctx.log.warning("normalize-skipped", reason="the source is silent; no gain applied")
        else:
            audio_filter = loudnorm_filter(loudness_targets(output), measured)
            ctx.log.info(
                "measured",
                integratedLufs=measured.integrated,
                truePeakDb=measured.true_peak,
                lra=measured.lra,
            )
    path = ctx.workdir / ("out" + plan.spec.extension)
    bounds = limits.for_encode(
        ctx.settings.max_media_seconds, ctx.settings.max_output_bytes, plan, info, output.bitrate
    )
    args = bounds.apply(
        build_command(inp, plan, str(path), audio_filter=audio_filter, tags=output.tags)
    )
    ctx.log.info(
        "encode-start",
        format=plan.format,
        codec=plan.codec,
        streamCopy=plan.stream_copy,
        options={k: str(v) for k, v in plan.options.items()},
    )
    reporter = _progress(ctx, "encode", expected)
    decoded = limits.DecodedTime(reporter.update)
    done = process.run(args, ctx.deadline, on_progress=decoded)
    upstream = source.proxy.error if source.proxy is not None else None
    if upstream is not None and (
        done.returncode != 0 or upstream.code == ErrorCode.INPUT_TOO_LARGE
    ):
        raise upstream
    # Checked before the exit status: hitting a cap ends ffmpeg normally, and a bomb
    # that also breaks the encoder is still a bomb.
    bounds.check_decoded(decoded.seconds)
    bounds.check_output(path)
    if done.returncode != 0:
        reason = process.describe_failure(done.returncode, done.stderr)
        code = ErrorCode.DECODE_FAILED if _decode_problem(done.stderr) else ErrorCode.ENCODE_FAILED
        raise WorkerError(code, f"ffmpeg failed: {reason}")
    if not path.is_file() or path.stat().st_size == 0:
        raise WorkerError(ErrorCode.DECODE_FAILED, f"{source.shown}: no audio could be decoded")
    return path, plan.stream_copy


def _decode_problem(stderr: str) -> bool:
    text = stderr.lower()
    return any(
        s in text
        for s in (
            "invalid data found",
            "error while decoding",
            "moov atom not found",
            "partial file",
        )
    )


def _expected_duration(
    duration: float | None, start: float | None, length: float | None
) -> float | None:
    if duration is None:
        return length
    remaining = max(0.0, duration - (start or 0.0))
    return min(remaining, length) if length else remaining


def _measure(ctx: Context, source: Source, inp: InputSpec, expected: float | None) -> Any:
    """First loudnorm pass: the ebur128 filter (much cheaper than loudnorm's own analysis)."""
    reporter = _progress(ctx, "measure", expected)
    decoded = limits.DecodedTime(reporter.update)
    bounds = limits.Limits(ctx.settings.max_media_seconds, 0)
    done = process.run(
        bounds.apply(build_measure_command(inp), output_size=False),
        ctx.deadline,
        on_progress=decoded,
    )
    bounds.check_decoded(decoded.seconds)
    if done.returncode != 0:
        raise _source_failure(source, done.returncode, done.stderr, ErrorCode.DECODE_FAILED)
    return parse_ebur128(done.stderr)


def finish(ctx: Context, local: tuple[Path, bool]) -> JobResult:
    """Describe the output (ffprobe, sha256, loudness) and deliver it."""
    path, copied = local
    output = ctx.task.output
    # The hash runs in a thread while ffprobe reads the output (hashlib releases the GIL).
    hashing = _Hashing(path)
    data, stderr = process.ffprobe_json(
        f"file:{path}", {"protocol_whitelist": "file"}, ctx.deadline
    )
    if data is None:
        raise WorkerError(
            ErrorCode.ENCODE_FAILED,
            f"the output cannot be read back: {process.describe_failure(1, stderr)}",
        )
    streams = [s for s in data.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise WorkerError(ErrorCode.ENCODE_FAILED, "the output has no audio stream")
    stream, fmt = streams[0], data.get("format", {})
    loudness = None
    if output.normalize:
        inp = InputSpec(f"file:{path}", {"protocol_whitelist": "file"})
        done = process.run(build_measure_command(inp, progress=False), ctx.deadline)
        measured = parse_ebur128(done.stderr) if done.returncode == 0 else None
        loudness = round(measured.integrated, 2) if measured else None
    sha256 = hashing.result()
    filename = output_filename(output, ctx.task.name)
    assert output.destination is not None
    uri = deliver(
        path,
        output.destination,
        filename,
        Format(output.format or Format.MP3),
        ctx.volumes,
        ctx.net,
        ctx.log,
    )
    bitrate = _int(stream.get("bit_rate")) or _int(fmt.get("bit_rate")) or None
    return JobResult(
        uri=uri,
        size_bytes=path.stat().st_size,
        duration_seconds=round(
            _float(stream.get("duration")) or _float(fmt.get("duration")) or 0.0, 3
        ),
        format=str(output.format),
        codec=str(stream.get("codec_name")),
        bitrate=bitrate,
        sample_rate=_int(stream.get("sample_rate")) or 0,
        channels=_int(stream.get("channels")) or 0,
        sha256=sha256,
        loudness_lufs=loudness,
        stream_copied=copied,
    )


class _Hashing:
    """The sha256 of a file, computed in a background thread; result() waits for it."""

    def __init__(self, path: Path) -> None:
        self._digest = hashlib.sha256()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(1024 * 1024):
                    self._digest.update(chunk)
        except OSError as exc:
            self._error = exc

    def result(self) -> str:
        """The hex digest; raises the OSError that reading the file raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result and result not in (float("inf"), float("-inf")) else None
