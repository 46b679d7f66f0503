"""The Grafana dashboard: valid structure, and every query is accepted by a real Prometheus and
returns data from the series the service exports (a misspelt metric selects nothing and fails)."""

from __future__ import annotations

import copy
import json

import pytest

from tests.ops.prometheus import ROOT, Prometheus, grafana_expr, require

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
    # money after the credit (issue 14)
    "recon_refunds_total", "recon_refunds_in_flight", "recon_refund_oldest_in_flight_seconds",
    "recon_credits_reversed_total", "recon_credits_restored_total", "recon_credit_shortfall_total",
    "recon_credit_shortfall_credits", "recon_disputes_total", "recon_disputes_open", "recon_dispute_respond_by_seconds",
    # grants by source and order events out (issue 15)
    "recon_grants_total", "recon_event_deliveries_total", "recon_event_deliveries_pending",
    "recon_event_deliveries_dead", "recon_event_delivery_lag_seconds",
    # settlements (issue 16)
    "recon_settlement_rows", "recon_settlement_credited_not_settled", "recon_settlement_last_received_age_seconds",
    "recon_settlement_last_settled_age_seconds",
}


def all_panels(dashboard: dict) -> list[dict]:
    """Top-level panels plus the panels inside collapsed rows."""
    panels = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []) if panel.get("type") == "row" else [])
    return panels


def _overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def _uses_datasource_variable(ref) -> bool:
    return isinstance(ref, dict) and ref.get("uid") == DATASOURCE_REF and ref.get("type", "prometheus") == "prometheus"


def dashboard_problems(dashboard: dict, prometheus: Prometheus) -> list[str]:
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
    if (not gateway or gateway.get("type") != "query"
            or (query or "").replace(" ", "") != "label_values(recon_orders,gateway)"):
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
            if not any(_uses_datasource_variable(ref) for ref in (target.get("datasource"), panel.get("datasource"))):
                problems.append(f"{name}: target {target.get('refId')!r} does not use ${{datasource}}")
            check = prometheus.check(grafana_expr(expr))
            problems.extend(f"{name}: {problem}" for problem in check.problems())
            used |= check.used
    missing = REQUIRED_METRICS - used
    if missing:
        problems.append(f"no panel shows {sorted(missing)}")
    return problems


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_exported_series_names(prometheus):
    names = set(prometheus.samples.series_names)
    assert {"recon_webhooks_received_total", "recon_gateway_request_duration_seconds_bucket",
            "recon_order_time_to_paid_seconds_count", "recon_orders", "recon_queue_depth",
            "recon_last_successful_sweep_timestamp_seconds", "recon_inbox_pending"} <= names
    assert "recon_webhooks_received" not in names  # counters are exposed as _total only
    assert names >= REQUIRED_METRICS


def test_dashboard_is_valid(dashboard, prometheus):
    assert dashboard_problems(dashboard, prometheus) == []


def test_grafana_variables_are_replaced_as_grafana_does():
    assert grafana_expr('rate(x{gateway=~"$gateway"}[$__rate_interval]) + y[${__range}]') == \
        'rate(x{gateway=~".*"}[2m]) + y[1h]'


def test_the_check_sees_which_series_an_expression_selects(prometheus):
    check = prometheus.check('sum by (gateway) (rate(recon_webhooks_received_total{outcome="accepted"}[5m])) '
                             '/ on () group_left max(recon_orders) > 0 or time() - recon_queue_depth offset 5m > 1e3')
    assert check.error is None and check.has_data
    assert check.used == {"recon_webhooks_received_total", "recon_orders", "recon_queue_depth"}
    assert prometheus.check('sum(recon_orders{state="no_such_state"}) or vector(0)').used == set()


def test_a_missing_prometheus_fails_and_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="make tools"):
        require("prometheus")


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
    (lambda d: d["panels"][2]["targets"][0].update(expr="sum(recon_orders_total)"), "selects no series"),
    (lambda d: d["panels"][2]["targets"][0].update(expr="sum(rate(recon_gateway_request_duration_seconds[5m]))"),
     "selects no series"),
    (lambda d: d["panels"][2]["targets"][0].update(expr='sum(recon_order{state="needs_review"}) or vector(0)'),
     "selects no series"),  # the fallback still returns data: the slots see that nothing was selected
    (lambda d: d["panels"][2]["targets"][0].update(expr="recon_orders / recon_pending_order"), "returns no data"),
    (lambda d: d["panels"][2]["targets"][0].update(expr="sum(rat(recon_dead_letters[5m]))"),
     'unknown function with name "rat"'),
    (lambda d: d["panels"][2]["targets"][0].update(expr="sum(recon_dead_letters[5m)"), "parse error"),
    (lambda d: d["templating"]["list"].pop(0), "no `datasource` variable"),
    (lambda d: d["templating"]["list"].pop(1), "no `gateway` variable"),
    (lambda d: d.update(schemaVersion=27), "schemaVersion"),
])
def test_validator_reports_breakage(dashboard, prometheus, breakage, expected):
    broken = copy.deepcopy(dashboard)
    assert broken["panels"][0]["type"] == "row" and broken["panels"][2]["type"] != "row"
    breakage(broken)
    problems = dashboard_problems(broken, prometheus)
    assert any(expected in problem for problem in problems), problems
