"""Prometheus metrics of the operator, as named module-level constants (DESIGN §6).

One registry for the whole process (prometheus_client's default), so whatever serves
``/metrics`` exports every family below.
"""

from prometheus_client import Counter, Gauge, Histogram

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
