"""The metric names a PromQL expression reads, and the PromQL of our rules and dashboard.

A small tokenizer, not a full parser (promtool checks the syntax): it drops string
literals, label matchers, range and subquery brackets, grouping clauses and function
calls, and keeps the identifiers left, which are metric names.
"""

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_FILES = REPO / "charts" / "audio-extract-operator" / "files"
RULES = CHART_FILES / "prometheus-rules.yaml"
DASHBOARD = CHART_FILES / "dashboard.json"

KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
        "start",
        "end",
    }
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's variables, replaced by values PromQL accepts.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "6h",
    '"$namespace"': '".*"',
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_NUMBER_SUFFIX = re.compile(r"\d[\w.]*")


def metric_names(expr: str) -> set[str]:
    """Every metric name that ``expr`` selects."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("", text)
    text = _BRACKETS.sub("", text)
    text = _GROUPING.sub("", text)
    text = _NUMBER_SUFFIX.sub("0", text)  # 1e3, 0.25, durations outside brackets
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, as Prometheus would get it."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def rule_expressions(path: Path = RULES) -> dict[str, str]:
    """Alert (or record) name -> expression, from a Prometheus rules file."""
    doc = yaml.safe_load(path.read_text())
    return {
        rule.get("alert") or rule["record"]: rule["expr"]
        for group in doc["groups"]
        for rule in group["rules"]
    }


def dashboard_panels(path: Path = DASHBOARD) -> list[dict[str, Any]]:
    """Every panel of a Grafana dashboard, rows' nested panels included."""
    doc = json.loads(path.read_text())
    out = []
    for panel in doc["panels"]:
        out.append(panel)
        out.extend(panel.get("panels") or [])
    return out


def dashboard_expressions(path: Path = DASHBOARD) -> dict[str, str]:
    """ "<panel title> <refId>" -> PromQL (Grafana variables replaced), for every query."""
    return {
        f"{panel['title']} {target['refId']}": grafana_to_promql(target["expr"])
        for panel in dashboard_panels(path)
        for target in panel.get("targets") or []
    }


def referenced_names() -> dict[str, set[str]]:
    """Metric name -> where the rules and the dashboard read it."""
    uses: dict[str, set[str]] = {}
    for where, expr in {**rule_expressions(), **dashboard_expressions()}.items():
        for name in metric_names(expr):
            uses.setdefault(name, set()).add(where)
    return uses


def sample_names(exposition: str) -> set[str]:
    """Every sample name in a scrape (``x_total``, ``x_bucket``, ``x_sum``, ... as sent)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def missing_from(exposition: str) -> dict[str, set[str]]:
    """Metric names the rules or the dashboard read that the scrape does not have."""
    have = sample_names(exposition)
    return {name: uses for name, uses in referenced_names().items() if name not in have}
