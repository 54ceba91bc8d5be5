"""The Grafana dashboard under deploy/ queries only metrics the farm exports,
and docs/operations.md describes every one of them."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("prometheus_client")

from conftest import PROJECT_ROOT
from generals_rl.metrics import METRICS

DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "generals-rl-farm.json"
SERIES_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
NAME = re.compile(r"\bgenerals_rl_[a-z0-9_]+")


def family(series: str) -> str:
    """The metric a series name belongs to (``x_total`` -> ``x``, ``x_bucket`` -> ``x``)."""
    for suffix in SERIES_SUFFIXES:
        if series.endswith(suffix) and series[: -len(suffix)] in METRICS:
            return series[: -len(suffix)]
    return series


def queried_series(dashboard: dict) -> set[str]:
    names = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names |= set(NAME.findall(target["expr"]))
    return names


def test_the_dashboard_queries_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    series = queried_series(dashboard)
    assert series, "the dashboard queries nothing"
    unknown = sorted(s for s in series if family(s) not in METRICS)
    assert not unknown, f"the dashboard queries metrics the farm does not export: {unknown}"
    kinds = {family(s): s for s in series}
    for name, series_name in kinds.items():
        kind = METRICS[name][0]
        if series_name.endswith("_total"):
            assert kind == "counter", series_name
        if series_name.endswith(("_bucket", "_count", "_sum")):
            assert kind == "histogram", series_name
    # Every metric but the per-component health is on a panel of its own or shared.
    assert set(METRICS) - set(kinds) == set()


def test_the_dashboard_check_can_fail():
    assert family("generals_rl_experiences_collected_total") == "generals_rl_experiences_collected"
    bogus = {"panels": [{"targets": [{"expr": "rate(generals_rl_made_up_total[1m])"}]}]}
    assert [s for s in queried_series(bogus) if family(s) not in METRICS] == [
        "generals_rl_made_up_total"
    ]


def test_operations_doc_lists_every_metric():
    text = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    missing = [name for name in METRICS if f"`{name}" not in text]
    assert not missing, f"docs/operations.md does not describe {missing}"
