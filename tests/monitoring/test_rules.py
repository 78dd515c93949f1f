"""The chart's alerts and dashboard: promtool on the rules, the dashboard's PromQL, names.

That the names are really exported is checked against a running operator in
tests/envtest/test_operator_metrics.py; here against the metrics module's own endpoint
after its call sites ran, so that a renamed metric fails fast without a control plane.
"""

import asyncio
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from audioextract import metrics
from audioextract.api.status import ExtractionJobStatus
from tests.support import promql
from tests.support.builders import job_result

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)"
)
RULES_TEST = Path(__file__).parent / "rules_test.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(promql.RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_promtool_unit_tests_of_every_alert_pass() -> None:
    done = promtool("test", "rules", str(RULES_TEST))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_cases_that_must_and_must_not_fire() -> None:
    alerts = set(promql.rule_expressions())
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test") or []:
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts - fires == set(), "alerts without a must-fire case"
    assert alerts - quiet == set(), "alerts without a must-not-fire case"
    assert (fires | quiet) <= alerts, "tests of alerts that do not exist"


def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    # The unit tests can fail: with the failure ratio threshold raised, the
    # must-fire case does not fire any more.
    rules = tmp_path / "rules.yaml"
    rules.write_text(promql.RULES.read_text().replace(") > 0.25", ") > 0.75"))
    tests = yaml.safe_load(RULES_TEST.read_text())
    tests["rule_files"] = [str(rules)]
    path = tmp_path / "rules_test.yaml"
    path.write_text(yaml.safe_dump(tests))
    done = promtool("test", "rules", str(path))
    assert done.returncode != 0
    assert "AudioExtractJobFailureRatioHigh" in done.stdout + done.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses each query as the expression of a recording rule.
    exprs = promql.dashboard_expressions()
    assert len(exprs) >= 15
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, expr in enumerate(exprs.values())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_is_importable_by_grafana() -> None:
    doc: dict[str, Any] = json.loads(promql.DASHBOARD.read_text())
    assert doc["uid"] == "audio-extract-operator" and doc["title"]
    assert {v["name"] for v in doc["templating"]["list"]} == {"datasource", "namespace"}
    panels = promql.dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    # Every audioextract_ metric the module defines is shown somewhere.
    shown = set(promql.referenced_names())
    for family in metrics.REGISTRY.collect():
        if not family.name.startswith(metrics.DOMAIN_PREFIX):
            continue  # process_*, python_*: two of them are shown, joined to our instances
        kinds = {"counter": ["_total"], "histogram": ["_bucket"]}.get(family.type, [""])
        assert any(family.name + k in shown for k in kinds), f"{family.name} not on the dashboard"


def test_metric_name_parser() -> None:
    expr = (
        'sum by (le, phase) (rate(a_bucket{x="b_c",y=~"$ns"}[5m] offset 1h))'
        " / on (job) group_left (pod) b_total and ignoring(x) c or vector(1) > bool 0.5e3"
        " unless absent(d:record) + histogram_quantile(0.9, e_bucket)"
    )
    assert promql.metric_names(expr) == {"a_bucket", "b_total", "c", "d:record", "e_bucket"}


def test_every_name_the_rules_and_dashboard_read_is_served(tmp_path: Path) -> None:
    # Exercise the call sites, then scrape the module's real HTTP endpoint.
    status = ExtractionJobStatus.model_validate(
        {
            "phase": "Succeeded",
            "startTime": "2026-01-01T10:00:30Z",
            "completionTime": "2026-01-01T10:01:30Z",
        }
    ).model_copy(update={"result": job_result(stream_copied=True)})
    metrics.job_status_written("Queued", status, "2026-01-01T10:00:00Z")
    metrics.webhook_delivery("job.completed", "delivered", 0.05)
    metrics.phase_counts(["Succeeded"], ["Succeeded"])
    metrics.leader_from(lambda: True)

    async def scrape() -> str:
        server = metrics.MetricsServer(
            "127.0.0.1", 0, live=lambda: {"ok": True}, ready=lambda: {"ok": True}
        )
        await server.start()
        try:
            url = f"http://127.0.0.1:{server.port}/metrics"
            return await asyncio.to_thread(
                lambda: urllib.request.urlopen(url, timeout=5).read().decode()
            )
        finally:
            await server.stop()

    body = asyncio.run(scrape())
    # The controller-runtime family has series only once the controller has run: the
    # envtest scrape of a running operator checks those names.
    missing = promql.missing_from(body)
    assert {n for n in missing if not n.startswith(("controller_runtime_", "workqueue_"))} == set()
    assert "audioextract_leader 1.0" in body


def test_exposition_passes_promtool_metric_lint(tmp_path: Path) -> None:
    # Naming and type conventions (counters end in _total, units in the name, ...),
    # for what /metrics serves and for the local runner's textfile alike.
    path = tmp_path / "audioextract.prom"
    metrics.write_textfile(path)
    for body in (metrics.exposition().decode(), path.read_text()):
        done = subprocess.run(
            ["promtool", "check", "metrics"], input=body, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
