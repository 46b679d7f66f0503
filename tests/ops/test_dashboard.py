"""The Grafana dashboard: valid structure, and every query uses only metrics the service exposes."""

from __future__ import annotations

import copy
import json

import pytest

from tests.ops.promql import ROOT, defined_metric_names, metric_names

DASHBOARD = ROOT / "ops" / "dashboards" / "gateway-recon.json"
PANEL_TYPES = {"row", "timeseries", "stat", "bargauge"}
DATASOURCE_REF = "${datasource}"
#: What the dashboard must show (the Operations issue's list).
REQUIRED_METRICS = {
    "recon_orders", "recon_pending_orders", "recon_order_time_to_paid_seconds_bucket", "recon_credits_granted_total",
    "recon_orders_abandoned_total", "recon_orders_late_paid_total", "recon_webhooks_received_total",
    "recon_gateway_requests_total", "recon_gateway_request_duration_seconds_bucket",
    "recon_gateway_rate_limited_total", "recon_gateway_circuit_open_total", "recon_queue_depth",
    "recon_queue_oldest_message_age_seconds", "recon_dead_letters", "recon_last_successful_sweep_timestamp_seconds",
    "recon_inbox_pending",
}


def all_panels(dashboard: dict) -> list[dict]:
    """Top-level panels plus the panels inside collapsed rows."""
    panels = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []) if panel.get("type") == "row" else [])
    return panels


def _overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def _uses_datasource_variable(ref) -> bool:
    return isinstance(ref, dict) and ref.get("uid") == DATASOURCE_REF and ref.get("type", "prometheus") == "prometheus"


def dashboard_problems(dashboard: dict, known_metrics: set[str]) -> list[str]:
    problems: list[str] = []
    if dashboard.get("schemaVersion") != 39:
        problems.append(f"schemaVersion is {dashboard.get('schemaVersion')!r}, not 39")
    if dashboard.get("uid") != "gateway-recon":
        problems.append(f"uid is {dashboard.get('uid')!r}")
    if not dashboard.get("title"):
        problems.append("no title")

    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    source = variables.get("datasource")
    if not source or source.get("type") != "datasource" or source.get("query") != "prometheus":
        problems.append("no `datasource` variable of type datasource for prometheus")
    gateway = variables.get("gateway")
    query = (gateway or {}).get("query")
    query = query.get("query") if isinstance(query, dict) else query
    if not gateway or gateway.get("type") != "query" or (query or "").replace(" ", "") != "label_values(recon_orders,gateway)":
        problems.append("no `gateway` variable from label_values(recon_orders, gateway)")
    elif not _uses_datasource_variable(gateway.get("datasource")):
        problems.append("the gateway variable does not use the datasource variable")

    seen_ids: set = set()
    placed: list[tuple[str, dict]] = []
    used: set[str] = set()
    for panel in all_panels(dashboard):
        title = panel.get("title") or ""
        name = f"panel {panel.get('id')!r} ({title or 'untitled'})"
        if not isinstance(panel.get("id"), int) or panel["id"] in seen_ids:
            problems.append(f"{name}: id missing, not an integer or not unique")
        seen_ids.add(panel.get("id"))
        if not title.strip():
            problems.append(f"{name}: no title")
        if panel.get("type") not in PANEL_TYPES:
            problems.append(f"{name}: type {panel.get('type')!r} not in {sorted(PANEL_TYPES)}")
        grid = panel.get("gridPos") or {}
        if not all(isinstance(grid.get(key), int) for key in ("h", "w", "x", "y")):
            problems.append(f"{name}: gridPos needs integer h, w, x, y")
        elif grid["x"] < 0 or grid["y"] < 0 or grid["w"] < 1 or grid["h"] < 1 or grid["x"] + grid["w"] > 24:
            problems.append(f"{name}: gridPos {grid} outside the 24 columns")
        else:
            problems.extend(f"{name}: overlaps {other}" for other, box in placed if _overlap(grid, box))
            placed.append((name, grid))
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{name}: no targets")
        if len({t.get("refId") for t in targets}) != len(targets):
            problems.append(f"{name}: refIds missing or repeated")
        for target in targets:
            expr = (target.get("expr") or "").strip()
            if not expr:
                problems.append(f"{name}: target {target.get('refId')!r} has no expr")
                continue
            if not (_uses_datasource_variable(target.get("datasource")) or _uses_datasource_variable(panel.get("datasource"))):
                problems.append(f"{name}: target {target.get('refId')!r} does not use ${{datasource}}")
            try:
                names = metric_names(expr)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
                continue
            if not names:
                problems.append(f"{name}: no metric in {expr!r}")
            problems.extend(f"{name}: unknown metric {metric!r} in {expr!r}" for metric in sorted(names - known_metrics))
            used |= names
    missing = REQUIRED_METRICS - used
    if missing:
        problems.append(f"no panel shows {sorted(missing)}")
    return problems


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def known() -> set[str]:
    return defined_metric_names()


def test_defined_metric_names(known):
    assert {"recon_webhooks_received_total", "recon_gateway_request_duration_seconds_bucket",
            "recon_order_time_to_paid_seconds_count", "recon_orders", "recon_queue_depth",
            "recon_last_successful_sweep_timestamp_seconds"} <= known
    assert "recon_webhooks_received" not in known  # counters are exposed as _total only


def test_dashboard_is_valid(dashboard, known):
    assert dashboard_problems(dashboard, known) == []


def test_time_to_paid_shows_p50_and_p99(dashboard):
    exprs = [t["expr"] for p in all_panels(dashboard) for t in p.get("targets", [])
             if "recon_order_time_to_paid_seconds_bucket" in t.get("expr", "")]
    assert any(e.startswith("histogram_quantile(0.5,") for e in exprs)
    assert any(e.startswith("histogram_quantile(0.99,") for e in exprs)


def test_panel_titles_are_unique(dashboard):
    titles = [p["title"] for p in all_panels(dashboard) if p.get("type") != "row"]
    assert len(titles) == len(set(titles))


@pytest.mark.parametrize("breakage, expected", [
    (lambda d: d["panels"][2].update(id=d["panels"][1]["id"]), "not unique"),
    (lambda d: d["panels"][2]["gridPos"].update(x=20, w=8), "outside the 24 columns"),
    (lambda d: d["panels"][2]["gridPos"].update(y=d["panels"][1]["gridPos"]["y"], x=d["panels"][1]["gridPos"]["x"]),
     "overlaps"),
    (lambda d: d["panels"][2].update(title=""), "no title"),
    (lambda d: d["panels"][2].update(targets=[]), "no targets"),
    (lambda d: d["panels"][2]["targets"][0].update(expr=""), "has no expr"),
    (lambda d: d["panels"][2]["targets"][0].update(expr="sum(recon_orders_total)"), "unknown metric 'recon_orders_total'"),
    (lambda d: d["panels"][2]["targets"][0].update(expr="sum(rate(recon_gateway_request_duration_seconds[5m]))"),
     "unknown metric"),
    (lambda d: d["panels"][2]["targets"][0].update(expr="sum(rat(recon_dead_letters[5m]))"), "unknown PromQL function"),
    (lambda d: d["templating"]["list"].pop(0), "no `datasource` variable"),
    (lambda d: d["templating"]["list"].pop(1), "no `gateway` variable"),
    (lambda d: d.update(schemaVersion=27), "schemaVersion"),
])
def test_validator_reports_breakage(dashboard, known, breakage, expected):
    broken = copy.deepcopy(dashboard)
    assert broken["panels"][0]["type"] == "row" and broken["panels"][2]["type"] != "row"
    breakage(broken)
    problems = dashboard_problems(broken, known)
    assert any(expected in problem for problem in problems), problems
