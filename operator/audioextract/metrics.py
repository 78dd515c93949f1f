"""Every Prometheus metric of the project, its name as a constant, and the HTTP endpoint.

:func:`register` creates all metrics on one registry; the process-wide instance is
:data:`METRICS` on :data:`REGISTRY` (the client library's default registry, which
also has the process_* and python_* collectors). Labels are bounded: phases, outcomes, error codes,
output formats, webhook event types, controller names. Never a Batch, job or object
name, never a URL (docs/metrics.md).

Call sites are small and local: the ExtractionJob status writer calls
:func:`job_status_written`, webhook delivery calls :func:`webhook_delivery`, the
reconcile loop calls :func:`phase_counts` and :func:`reconcile_error`. The local runner
calls the same functions and writes the domain family to a file for node exporter's
textfile collector (:func:`write_textfile`).

:class:`MetricsServer` serves ``/metrics``, ``/healthz`` and ``/readyz`` on the
operator's event loop.
"""

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import prometheus_client
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from audioextract import __version__
from audioextract.api.constants import (
    BATCH_KIND,
    JOB_KIND,
    BatchPhase,
    ErrorCode,
    Format,
    JobPhase,
    WebhookEvent,
)
from audioextract.api.status import ExtractionJobStatus
from audioextract.atomic import write_atomically
from audioextract.reconcile.conditions import RECONCILING, TRUE, find_condition

log = logging.getLogger(__name__)

# -- names: the domain family ------------------------------------------------------------
DOMAIN_PREFIX = "audioextract_"
JOBS_FINISHED_TOTAL = "audioextract_jobs_finished_total"
JOB_DURATION_SECONDS = "audioextract_job_duration_seconds"
JOB_QUEUE_WAIT_SECONDS = "audioextract_job_queue_wait_seconds"
JOBS = "audioextract_jobs"
BATCHES = "audioextract_batches"
MEDIA_SECONDS_TOTAL = "audioextract_media_seconds_total"
OUTPUT_BYTES_TOTAL = "audioextract_output_bytes_total"
STREAM_COPIES_TOTAL = "audioextract_stream_copies_total"
WEBHOOK_DELIVERIES_TOTAL = "audioextract_webhook_deliveries_total"
WEBHOOK_DELIVERY_DURATION_SECONDS = "audioextract_webhook_delivery_duration_seconds"
AUDIOEXTRACT_RECONCILE_ERRORS_TOTAL = "audioextract_reconcile_errors_total"

# -- names: the operator process ---------------------------------------------------------
LEADER = "audioextract_leader"
BUILD_INFO = "audioextract_build_info"

# -- label values ------------------------------------------------------------------------
OUTCOME_SUCCEEDED = "succeeded"
OUTCOME_FAILED = "failed"
NO_ERROR = ""  # error_code of a succeeded job: the label exists on every series
# Webhook outcomes: audioextract.webhooks.delivery.Verdict's values (a test keeps them equal).
DELIVERY_OUTCOMES = ("delivered", "retrying", "failed")
# Reconcile error kinds: an object kind, admission (across objects) or the loop itself.
KIND_ADMISSION = "admission"
KIND_LOOP = "loop"
RECONCILE_KINDS = (BATCH_KIND, JOB_KIND, KIND_ADMISSION, KIND_LOOP)

# Buckets: a job runs seconds (a clip) to hours (a film); a queue wait is ~0 when there
# is capacity and minutes to hours behind max_concurrent_jobs; a webhook answers in ms.
JOB_DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
QUEUE_WAIT_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
WEBHOOK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30)

_STARTED = frozenset({JobPhase.RUNNING, JobPhase.SUCCEEDED, JobPhase.FAILED})
_TERMINAL = frozenset({JobPhase.SUCCEEDED, JobPhase.FAILED})
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Metrics:
    """All metric objects of one registry."""

    jobs_finished: Counter
    job_duration: Histogram
    job_queue_wait: Histogram
    jobs: Gauge
    batches: Gauge
    media_seconds: Counter
    output_bytes: Counter
    stream_copies: Counter
    webhook_deliveries: Counter
    webhook_delivery_duration: Histogram
    reconcile_errors: Counter
    leader: Gauge
    build_info: Gauge


def register(registry: CollectorRegistry) -> Metrics:
    """Create every metric on ``registry`` (the only place a metric is defined)."""
    m = Metrics(
        jobs_finished=Counter(
            JOBS_FINISHED_TOTAL,
            "ExtractionJobs that reached a final phase, by outcome and error code.",
            ["outcome", "error_code"],
            registry=registry,
        ),
        job_duration=Histogram(
            JOB_DURATION_SECONDS,
            "Run time of finished ExtractionJobs, from the start of the run (Job created, "
            "or admitted by Kueue) to completion.",
            ["outcome"],
            buckets=JOB_DURATION_BUCKETS,
            registry=registry,
        ),
        job_queue_wait=Histogram(
            JOB_QUEUE_WAIT_SECONDS,
            "Time from an ExtractionJob's creation (or re-queueing) to the start of its run "
            "(Job created, or admitted by Kueue).",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        ),
        jobs=Gauge(JOBS, "ExtractionJobs that exist now, by phase.", ["phase"], registry=registry),
        batches=Gauge(BATCHES, "Batches that exist now, by phase.", ["phase"], registry=registry),
        media_seconds=Counter(
            MEDIA_SECONDS_TOTAL,
            "Seconds of audio produced by succeeded jobs, by output format.",
            ["format"],
            registry=registry,
        ),
        output_bytes=Counter(
            OUTPUT_BYTES_TOTAL,
            "Bytes of audio files produced by succeeded jobs, by output format.",
            ["format"],
            registry=registry,
        ),
        stream_copies=Counter(
            STREAM_COPIES_TOTAL,
            "Succeeded jobs whose audio was copied without re-encoding, by output format.",
            ["format"],
            registry=registry,
        ),
        webhook_deliveries=Counter(
            WEBHOOK_DELIVERIES_TOTAL,
            "Webhook delivery attempts and settlements, by event type and outcome "
            "(delivered, retrying, failed: failed is final).",
            ["event", "outcome"],
            registry=registry,
        ),
        webhook_delivery_duration=Histogram(
            WEBHOOK_DELIVERY_DURATION_SECONDS,
            "Time from sending a webhook request to its answer (or timeout), by outcome.",
            ["outcome"],
            buckets=WEBHOOK_BUCKETS,
            registry=registry,
        ),
        reconcile_errors=Counter(
            AUDIOEXTRACT_RECONCILE_ERRORS_TOTAL,
            "Reconcile steps that failed and will be retried, by object kind.",
            ["kind"],
            registry=registry,
        ),
        leader=Gauge(
            LEADER,
            "1 while this instance holds the leader Lease (or runs standalone), else 0.",
            registry=registry,
        ),
        build_info=Gauge(
            BUILD_INFO,
            "Always 1; the version label says which build runs.",
            ["version"],
            registry=registry,
        ),
    )
    m.build_info.labels(version=__version__).set(1)
    _initialise(m)
    if registry is not prometheus_client.REGISTRY:
        # The process itself (process_*, python_*), as every exporter has them; the
        # client library's default registry has these collectors already.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return m


def _initialise(m: Metrics) -> None:
    # Every bounded label combination exists from the start at 0: a counter series that
    # appears only with its first increment loses that increment to rate() and
    # increase(), and an alert on it would miss the first failure.
    for phase in JobPhase:
        m.jobs.labels(phase=str(phase))
    for batch_phase in BatchPhase:
        m.batches.labels(phase=str(batch_phase))
    m.jobs_finished.labels(outcome=OUTCOME_SUCCEEDED, error_code=NO_ERROR)
    for code in ErrorCode:
        m.jobs_finished.labels(outcome=OUTCOME_FAILED, error_code=str(code))
    for outcome in (OUTCOME_SUCCEEDED, OUTCOME_FAILED):
        m.job_duration.labels(outcome=outcome)
    for fmt in Format:
        for counter in (m.media_seconds, m.output_bytes, m.stream_copies):
            counter.labels(format=str(fmt))
    for delivery in DELIVERY_OUTCOMES:
        m.webhook_delivery_duration.labels(outcome=delivery)
        for event in WebhookEvent:
            m.webhook_deliveries.labels(event=str(event), outcome=delivery)
    for kind in RECONCILE_KINDS:
        m.reconcile_errors.labels(kind=kind)


# No ``*_created`` series: controller-runtime has none, and node exporter's textfile
# collector would only carry them as extra gauges.
disable_created_metrics()  # type: ignore[no-untyped-call]
# The client library's default registry: a metric defined anywhere in the process with
# prometheus_client's defaults is served too, so nothing can be left off /metrics.
REGISTRY: CollectorRegistry = prometheus_client.REGISTRY
METRICS = register(REGISTRY)


# -- call sites ---------------------------------------------------------------------------


def _parse_time(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        return datetime.strptime(ts, _TIME_FORMAT)
    except ValueError:
        return None


def _between(start: str | None, end: str | None) -> float | None:
    a, b = _parse_time(start), _parse_time(end)
    if a is None or b is None or b < a:
        return None
    return (b - a).total_seconds()


def _queued_since(status: ExtractionJobStatus, created: str | None) -> str | None:
    """When the current run was queued: creation, or for a re-run its re-queueing.

    A re-run (``retry-failed``, attempts > 1) was queued when Reconciling last turned
    True; measuring it from creation would count the earlier run and the time until
    someone asked for the retry as waiting.
    """
    if (status.attempts or 0) > 1:
        reconciling = find_condition(status.conditions, RECONCILING)
        if reconciling is not None and reconciling.status == TRUE:
            return reconciling.last_transition_time
    return created


def _phase(value: str | None) -> JobPhase | None:
    # A phase this version does not know (written by another one) counts as none:
    # counting must never break the status writer that calls it.
    try:
        return JobPhase(value) if value else None
    except ValueError:
        return None


def job_status_written(
    before: JobPhase | str | None,
    after: ExtractionJobStatus,
    created: str | None,
    metrics: Metrics = METRICS,
) -> None:
    """Count what a successfully written ExtractionJob status changed.

    ``before`` is the phase the object had, ``created`` its creationTimestamp. Entering
    a started phase observes the queue wait; entering a final phase counts the job,
    its run time and (on success) the media produced. Writing the same phase again
    counts nothing, so a re-written status is never counted twice by one process.
    """
    old, new = _phase(before), _phase(after.phase)
    if new is None or new == old:
        return
    if new in _STARTED and old not in _STARTED:
        wait = _between(_queued_since(after, created), after.start_time)
        if wait is not None:
            metrics.job_queue_wait.observe(wait)
    if new not in _TERMINAL:
        return
    outcome = OUTCOME_SUCCEEDED if new == JobPhase.SUCCEEDED else OUTCOME_FAILED
    code = str(after.error.code) if outcome == OUTCOME_FAILED and after.error else NO_ERROR
    metrics.jobs_finished.labels(outcome=outcome, error_code=code).inc()
    run = _between(after.start_time, after.completion_time)
    if run is not None:
        metrics.job_duration.labels(outcome=outcome).observe(run)
    result = after.result
    if outcome == OUTCOME_SUCCEEDED and result is not None:
        fmt = str(result.format)
        metrics.media_seconds.labels(format=fmt).inc(result.duration_seconds)
        metrics.output_bytes.labels(format=fmt).inc(result.size_bytes)
        if result.stream_copied:
            metrics.stream_copies.labels(format=fmt).inc()


def webhook_delivery(
    event_type: str, outcome: str, latency: float | None, metrics: Metrics = METRICS
) -> None:
    """Count one delivery outcome; ``latency`` is None when no request was sent."""
    metrics.webhook_deliveries.labels(event=event_type, outcome=outcome).inc()
    if latency is not None:
        metrics.webhook_delivery_duration.labels(outcome=outcome).observe(latency)


def reconcile_error(kind: str, metrics: Metrics = METRICS) -> None:
    """Count a failed reconcile step of an object of ``kind`` (it is retried)."""
    metrics.reconcile_errors.labels(kind=kind).inc()


def phase_counts(
    jobs: Iterable[str | None], batches: Iterable[str | None], metrics: Metrics = METRICS
) -> None:
    """Set the current-objects gauges from the phases of every object now observed.

    Phases not seen are set to 0 (a gauge must fall when its last object leaves); an
    object without a phase yet counts as Queued. Call with empty iterables when this
    instance stops observing (it lost the Lease), so two instances never both count.
    """
    _set_phases(metrics.jobs, [str(p) for p in JobPhase], jobs, JobPhase.QUEUED)
    _set_phases(metrics.batches, [str(p) for p in BatchPhase], batches, BatchPhase.QUEUED)


def _set_phases(gauge: Gauge, known: list[str], phases: Iterable[str | None], none: str) -> None:
    counts = dict.fromkeys(known, 0)
    for phase in phases:
        name = str(phase) if phase else none
        counts[name] = counts.get(name, 0) + 1
    for name, count in counts.items():
        gauge.labels(phase=name).set(count)


def leader_from(leading: Callable[[], bool], metrics: Metrics = METRICS) -> None:
    """Export ``leading()`` (holds the Lease, or runs standalone) as 1/0 at each scrape."""
    metrics.leader.set_function(lambda: 1.0 if leading() else 0.0)


# -- export ---------------------------------------------------------------------------------


def exposition(registry: CollectorRegistry = REGISTRY, domain_only: bool = False) -> bytes:
    """The registry in Prometheus' text format; ``domain_only`` keeps the audioextract_ family."""
    if not domain_only:
        return generate_latest(registry)
    names = {
        sample_name
        for family in registry.collect()
        if family.name.startswith(DOMAIN_PREFIX) and family.name not in (LEADER,)
        for sample_name in _sample_names(family.name, family.type)
    }
    return generate_latest(registry.restricted_registry(names))


def _sample_names(name: str, kind: str) -> list[str]:
    if kind == "counter":
        return [name + "_total"]
    if kind == "histogram":
        return [name + s for s in ("_bucket", "_sum", "_count")]
    return [name]


def write_textfile(path: Path, registry: CollectorRegistry = REGISTRY) -> None:
    """Write the domain family for node exporter's textfile collector, atomically.

    The collector reads ``*.prom`` files at any moment: write a temporary file in the
    same directory and rename it, so it never sees half a file.
    """
    # Readable by node exporter, which usually runs as another user.
    write_atomically(path, exposition(registry, domain_only=True), mode=0o644)


# -- HTTP endpoint ----------------------------------------------------------------------


Probe = Callable[[], Mapping[str, bool]]


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on the running event loop.

    ``live`` and ``ready`` return named checks; the endpoint answers 200 when all are
    true, else 503, with one ``[+]name`` or ``[-]name`` line per check (the
    kube-apiserver's format). The probes run on the event loop, so a blocked loop also
    fails them.
    """

    def __init__(
        self,
        host: str,
        port: int,
        live: Probe,
        ready: Probe,
        registry: CollectorRegistry = REGISTRY,
        refresh: Callable[[], None] | None = None,
    ) -> None:
        """Serve on ``host:port`` (port 0: any free port, see :attr:`port`).

        ``refresh`` runs before each scrape (gauges computed from the cache).
        """
        self.host, self.port = host, port
        self._refresh = refresh
        self._live, self._ready, self._registry = live, ready, registry
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and start serving; :attr:`port` is the bound port afterwards."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("metrics and probes on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _: web.Request) -> web.Response:
        if self._refresh is not None:
            self._refresh()
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        return _probe_response(self._live())

    async def _readyz(self, _: web.Request) -> web.Response:
        return _probe_response(self._ready())


def _probe_response(checks: Mapping[str, bool]) -> web.Response:
    lines = [
        f"[{'+' if ok else '-'}]{name} {'ok' if ok else 'failed'}" for name, ok in checks.items()
    ]
    healthy = all(checks.values())
    lines.append("ok" if healthy else "not ok")
    return web.Response(text="\n".join(lines) + "\n", status=200 if healthy else 503)


# -- controller-runtime family (defined on the default registry, served with the rest) ----
# -- controller-runtime family ---------------------------------------------------------
# Named and labelled as controller-runtime names them (pkg/internal/controller/metrics
# and pkg/metrics/workqueue.go), so existing controller dashboards and alerts fit:
# ``controller`` on the reconciler series, ``name`` on the work-queue series, both the
# controller's name ("batch", "extractionjob", "admission").

# Buckets of controller-runtime's reconcile_time_seconds and the work queue's durations.
_RECONCILE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7,
    0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0,
    10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0,
)  # fmt: skip
_QUEUE_BUCKETS = tuple(10.0**e for e in range(-8, 2))  # 10 ns .. 10 s, as client-go's

RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller and result.",
    ["controller", "result"],
)
RECONCILE_ERRORS_TOTAL = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller.",
    ["controller"],
)
RECONCILE_TIME_SECONDS = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller.",
    ["controller"],
    buckets=_RECONCILE_BUCKETS,
)
WORKQUEUE_DEPTH = Gauge("workqueue_depth", "Current depth of workqueue.", ["name"])
WORKQUEUE_ADDS_TOTAL = Counter(
    "workqueue_adds_total", "Total number of adds handled by workqueue.", ["name"]
)
WORKQUEUE_RETRIES_TOTAL = Counter(
    "workqueue_retries_total", "Total number of retries handled by workqueue.", ["name"]
)
WORKQUEUE_QUEUE_DURATION_SECONDS = Histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested.",
    ["name"],
    buckets=_QUEUE_BUCKETS,
)
WORKQUEUE_WORK_DURATION_SECONDS = Histogram(
    "workqueue_work_duration_seconds",
    "How long in seconds processing an item from workqueue takes.",
    ["name"],
    buckets=_QUEUE_BUCKETS,
)
WORKQUEUE_LONGEST_RUNNING_PROCESSOR_SECONDS = Gauge(
    "workqueue_longest_running_processor_seconds",
    "How many seconds has the longest running processor for workqueue been running.",
    ["name"],
)

# Reconcile results, as controller-runtime labels them.
RESULT_SUCCESS = "success"
RESULT_ERROR = "error"
RESULT_REQUEUE = "requeue"
RESULT_REQUEUE_AFTER = "requeue_after"

# As controller-runtime does at start: every controller's and queue's series exist at 0,
# so an error counter is there (and rate() sees the first error) before anything fails.
for _controller in ("batch", "extractionjob"):
    RECONCILE_ERRORS_TOTAL.labels(controller=_controller)
    for _result in (RESULT_SUCCESS, RESULT_ERROR, RESULT_REQUEUE, RESULT_REQUEUE_AFTER):
        RECONCILE_TOTAL.labels(controller=_controller, result=_result)
    WORKQUEUE_ADDS_TOTAL.labels(name=_controller)
    WORKQUEUE_RETRIES_TOTAL.labels(name=_controller)
    WORKQUEUE_DEPTH.labels(name=_controller)
