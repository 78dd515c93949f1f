"""One job end to end: open the source, probe, plan, (measure,) encode, measure, deliver."""

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audioextract.api.constants import ErrorCode, Format
from audioextract.api.spec import Loudness
from audioextract.api.status import JobResult, LoudnessResult
from audioextract.api.task import Task
from audioextract.api.validation import output_filename
from audioextract.urlguard import BlockedAddressError, check_url
from audioextract.worker import limits, loudness, process
from audioextract.worker.command import (
    DEMUXERS,
    RAW_STREAM_DEMUXERS,
    AudioInfo,
    EncodePlan,
    InputSpec,
    build_command,
    build_measure_command,
    loudness_targets,
    muxer_tags,
    parse_ebur128,
    plan_encode,
)
from audioextract.worker.destinations import already_there, check_destination, deliver
from audioextract.worker.errors import WorkerError
from audioextract.worker.log import JsonLogger, ProgressReporter, redact_url
from audioextract.worker.loudness import Measurement
from audioextract.worker.netconfig import NetConfig
from audioextract.worker.result import (
    ESTIMATED_DURATION_FORMATS,
    as_float,
    as_int,
    declared_duration,
    output_facts,
    sha256_file,
)
from audioextract.worker.settings import WorkerSettings
from audioextract.worker.storage import Side, VolumeMap, parse_s3_url, s3_client
from audioextract.worker.tagging import write_mp4_freeform
from audioextract.worker.truncation import check_complete, check_trim

if TYPE_CHECKING:
    # Imported where URL sources are handled: a task between volumes never needs
    # http.client, ssl or http.server, whose imports are a tenth of the start-up.
    from audioextract.worker.proxy import GuardProxy

PRESIGN_SECONDS = 3600
RW_TIMEOUT_MARGIN = 10.0


@dataclass
class Source:
    """Where ffmpeg reads the source, and the proxy behind it for URL sources."""

    url: str
    options: dict[str, Any]
    shown: str
    proxy: "GuardProxy | None" = None


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
            encoded = encode(ctx, source, info, duration)
        return finish(ctx, encoded)
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
    from audioextract.worker.proxy import GuardProxy

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
    # The audio track's own duration (MP4 track, Matroska's per-track DURATION tag),
    # else the container's, which is the longest of its tracks.
    own = _float(stream.get("duration")) or _tag_seconds(stream.get("tags", {}).get("DURATION"))
    duration = own or _float(data.get("format", {}).get("duration"))
    others = [s for s in data.get("streams", []) if s is not stream]
    if duration is not None and duration > ctx.settings.max_media_seconds:
        raise WorkerError(
            ErrorCode.INPUT_TOO_LARGE,
            f"source is {duration:.0f} s long; the limit is {ctx.settings.max_media_seconds:.0f} s",
        )
    bits = _int(stream.get("bits_per_raw_sample")) or _int(stream.get("bits_per_sample")) or None
    layout = stream.get("channel_layout")
    info = AudioInfo(
        codec=str(stream.get("codec_name") or "unknown"),
        sample_rate=_int(stream.get("sample_rate")) or 0,
        channels=_int(stream.get("channels")) or 0,
        bit_rate=_int(stream.get("bit_rate")) or None,
        bits=bits,
        duration=duration,
        layout=str(layout) if layout else None,
        # Raw streams estimate from the bitrate; a container's duration may be a
        # longer video's: neither can prove a truncation of the audio.
        duration_estimated=bool(set(container.split(",")) & RAW_STREAM_DEMUXERS)
        or (own is None and bool(others)),
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
        layout=info.layout,
        durationSeconds=duration,
        container=data.get("format", {}).get("format_name"),
    )
    return info, duration


def _index_first(ctx: Context, source: Source) -> bool:
    """Whether an MP4/MOV has its index (moov) before its media data (mdat): faststart."""
    assert source.proxy is not None
    from audioextract.worker.net import open_get

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
    from audioextract.worker.net import open_get, status_error

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


@dataclass
class Encoded:
    """The encoded file in the temp dir and what is known about it so far."""

    path: Path
    plan: EncodePlan
    # What the output holds by decoding it (normalize, or a container that estimates).
    decoded_seconds: float | None = None
    loudness: LoudnessResult | None = None


@dataclass
class FfmpegRun:
    """One ffmpeg run: how it ended and how far it got (seconds of output)."""

    returncode: int
    stderr: str
    seconds: float | None


def run_ffmpeg(
    ctx: Context,
    source: Source | None,
    args: list[str],
    step: str,
    total: float | None,
    bounds: limits.Limits | None = None,
    output: Path | None = None,
) -> FfmpegRun:
    """Run ffmpeg with progress and the decode/output limits; the proxy's error wins.

    The guard proxy's error is read whatever ffmpeg's exit code: ffmpeg exits 0 on an
    early end of input, so a dropped connection or the size limit reached while
    streaming would otherwise pass for a short source. The limits are checked before
    the exit status too: hitting a cap ends ffmpeg normally, and a bomb that also
    breaks the encoder is still a bomb.
    """
    reporter = _progress(ctx, step, total)
    decoded = limits.DecodedTime(reporter.update)
    seen: list[bool] = []

    def on_progress(pos: float, speed: str | None, end: bool) -> None:
        seen[:] = [True]
        decoded(pos, speed, end)

    if bounds is not None:
        args = bounds.apply(args, output_size=output is not None)
    done = process.run(args, ctx.deadline, on_progress=on_progress)
    if source is not None and source.proxy is not None and source.proxy.error is not None:
        raise source.proxy.error
    if bounds is not None:
        bounds.check_decoded(decoded.seconds)
        if output is not None:
            bounds.check_output(output)
    return FfmpegRun(done.returncode, done.stderr, decoded.seconds if seen else None)


def encode(ctx: Context, source: Source, info: AudioInfo, duration: float | None) -> Encoded:
    """Run ffmpeg into a file in the temp dir (twice or more when normalising)."""
    output = ctx.task.output
    plan = plan_encode(output, info)
    for note in plan.notes:
        ctx.log.info("note", message=note)
    start = output.start_seconds or None
    length = output.duration_seconds or None
    check_trim(start, duration)
    inp = InputSpec(source.url, source.options, ctx.task.source.audio_track or 0, start, length)
    expected = _expected_duration(duration, start, length)
    encoded = Encoded(ctx.workdir / ("out" + plan.spec.extension), plan)
    if not output.normalize:
        _encode_pass(ctx, source, inp, info, encoded, None, expected, start)
        return encoded
    targets = loudness_targets(output)
    measured, measured_seconds = _measure(ctx, source, inp, plan, expected)
    check_complete(source.shown, info, measured_seconds, expected, start)
    reason = loudness.unmeasurable(measured, measured_seconds)
    if reason is not None:
        ctx.log.warning("normalize-skipped", reason=reason)
        _encode_pass(ctx, source, inp, info, encoded, None, expected, start)
        encoded.loudness = loudness.result(targets, measured, None, None, reason)
        return encoded
    assert measured is not None
    ctx.log.info(
        "measured",
        integratedLufs=measured.integrated,
        truePeakDb=measured.true_peak,
        lra=measured.lra,
    )
    encoded.loudness = _normalise(ctx, source, inp, info, encoded, targets, measured, expected)
    return encoded


def _normalise(
    ctx: Context,
    source: Source,
    inp: InputSpec,
    info: AudioInfo,
    encoded: Encoded,
    targets: Loudness,
    measured: Measurement,
    expected: float | None,
) -> LoudnessResult:
    """Encode with the planned gain; measure the output; correct and encode again if off."""
    plan = encoded.plan
    rate = plan.sample_rate or info.sample_rate
    gain = loudness.plan_gain(targets, measured, lossy=plan.lossy)
    out: Measurement | None = None
    for attempt in range(1, loudness.MAX_PASSES + 1):
        audio_filter = loudness.gain_filter(gain, rate)
        _encode_pass(ctx, source, inp, info, encoded, audio_filter, expected, None)
        out, encoded.decoded_seconds = decode_output(ctx, encoded.path, measure=True)
        if out is None:
            break
        ctx.log.info(
            "loudness-pass",
            attempt=attempt,
            method=gain.method,
            gainDb=round(gain.gain_db, 2),
            ceilingDb=None if gain.ceiling_db is None else round(gain.ceiling_db, 2),
            integratedLufs=out.integrated,
            truePeakDb=out.true_peak,
        )
        if loudness.on_target(targets, out) or attempt == loudness.MAX_PASSES:
            break
        gain = loudness.correct(gain, targets, measured, out)
    return loudness.result(targets, measured, out, gain)


def _encode_pass(
    ctx: Context,
    source: Source,
    inp: InputSpec,
    info: AudioInfo,
    encoded: Encoded,
    audio_filter: str | None,
    expected: float | None,
    start: float | None,
) -> None:
    plan = encoded.plan
    args = build_command(
        inp, plan, str(encoded.path), audio_filter=audio_filter, tags=ctx.task.output.tags
    )
    ctx.log.info(
        "encode-start",
        format=plan.format,
        codec=plan.codec,
        streamCopy=plan.stream_copy,
        layout=plan.layout,
        options={k: str(v) for k, v in plan.options.items()},
    )
    bounds = limits.for_encode(
        ctx.settings.max_media_seconds,
        ctx.settings.max_output_bytes,
        plan,
        info,
        ctx.task.output.bitrate,
    )
    done = run_ffmpeg(ctx, source, args, "encode", expected, bounds, encoded.path)
    if done.returncode != 0:
        reason = process.describe_failure(done.returncode, done.stderr)
        code = ErrorCode.DECODE_FAILED if _decode_problem(done.stderr) else ErrorCode.ENCODE_FAILED
        raise WorkerError(code, f"ffmpeg failed: {reason}")
    path = encoded.path
    if not path.is_file() or path.stat().st_size == 0:
        check_complete(source.shown, info, 0.0, expected, start)
        raise WorkerError(ErrorCode.DECODE_FAILED, f"{source.shown}: no audio could be decoded")
    check_complete(source.shown, info, done.seconds, expected, start)


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


def _measure(
    ctx: Context, source: Source, inp: InputSpec, plan: EncodePlan, expected: float | None
) -> tuple[Measurement | None, float | None]:
    """First pass: ebur128 over what will be encoded (trimmed, layout converted)."""
    done = run_ffmpeg(
        ctx,
        source,
        build_measure_command(inp, audio_filter=plan.filters()),
        "measure",
        expected,
        limits.Limits(ctx.settings.max_media_seconds, 0),
    )
    if done.returncode != 0:
        raise _source_failure(source, done.returncode, done.stderr, ErrorCode.DECODE_FAILED)
    return parse_ebur128(done.stderr), done.seconds


def decode_output(
    ctx: Context, path: Path, *, measure: bool
) -> tuple[Measurement | None, float | None]:
    """Decode the output: its real duration, and its loudness when ``measure``."""
    inp = InputSpec(f"file:{path}", {"protocol_whitelist": "file"})
    done = run_ffmpeg(ctx, None, build_measure_command(inp, loudness=measure), "verify", None)
    if done.returncode != 0:
        raise WorkerError(
            ErrorCode.ENCODE_FAILED,
            f"the output cannot be decoded: {process.describe_failure(done.returncode, done.stderr)}",
        )
    return (parse_ebur128(done.stderr) if measure else None), done.seconds


def finish(ctx: Context, encoded: Encoded) -> JobResult:
    """Describe the output (ffprobe, decoding where needed, sha256) and deliver it."""
    path, plan = encoded.path, encoded.plan
    output = ctx.task.output
    fmt = Format(output.format or Format.MP3)
    write_mp4_freeform(path, muxer_tags(fmt, output.tags or {}).freeform)
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
    if not any(s.get("codec_type") == "audio" for s in data.get("streams", [])):
        raise WorkerError(ErrorCode.ENCODE_FAILED, "the output has no audio stream")
    decoded = encoded.decoded_seconds
    if decoded is None and (fmt in ESTIMATED_DURATION_FORMATS or not declared_duration(data)):
        # No duration in the header (a stream-copied FLAC without a sample count) or
        # only an estimate (ADTS): decode the output to know.
        _, decoded = decode_output(ctx, path, measure=False)
    facts = output_facts(path, fmt, data, decoded)
    digest = hashing.result()
    size = path.stat().st_size
    filename = output_filename(output, ctx.task.name)
    assert output.destination is not None
    replaced = already_there(output.destination, filename, ctx.volumes, ctx.net)
    if replaced:
        ctx.log.warning(
            "overwrite",
            filename=filename,
            reason="an object of this name exists (an earlier attempt or run of this job): replaced",
        )
    uri = deliver(path, output.destination, filename, fmt, ctx.volumes, ctx.net, ctx.log)
    return JobResult(
        uri=uri,
        size_bytes=size,
        duration_seconds=facts.duration,
        format=str(output.format),
        codec=facts.codec,
        bitrate=facts.bitrate,
        sample_rate=facts.sample_rate,
        channels=facts.channels,
        channel_layout=facts.layout,
        sha256=digest,
        loudness_lufs=encoded.loudness.integrated_lufs if encoded.loudness else None,
        loudness=encoded.loudness,
        stream_copied=plan.stream_copy,
        replaced=replaced or None,
    )


def _tag_seconds(value: Any) -> float | None:
    """Matroska's DURATION tag (``00:00:04.000000000``) in seconds."""
    if not isinstance(value, str) or value.count(":") != 2:
        return None
    hours, minutes, seconds = value.split(":")
    try:
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


_int = as_int
_float = as_float


class _Hashing:
    """The sha256 of a file (as sha256_file), in a background thread; result() waits."""

    def __init__(self, path: Path) -> None:
        self._digest = ""
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            self._digest = sha256_file(path)
        except OSError as exc:
            self._error = exc

    def result(self) -> str:
        """The hex digest; raises the OSError that reading the file raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest
