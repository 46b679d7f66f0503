"""Every counter an alert takes ``rate()`` or ``increase()`` of exists at zero from a process's start, for each
gateway: a series born at its first increment (already 1) shows no increase, so a burst of forged webhooks or
a circuit opening once right after a restart would alert nobody (found by the real Prometheus scraping the
Procfile stack: tests/e2e/test_procfile_prometheus.py)."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker import metrics

RULES = Path(__file__).resolve().parents[3] / "ops" / "alerts" / "recon-rules.yml"
#: Labelled by the request's endpoint template, known only once a request is made; every alert on it also asks
#: for at least 10 requests, so the first one being invisible to increase() does not decide it.
NOT_INITIALISED = {"recon_gateway_requests_total"}


def _exposed(gateway: str) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            labelled = gateway in (sample.labels.get("gateway"), sample.labels.get("endpoint"))
            if labelled and sample.name.endswith("_total"):
                found.setdefault(sample.name, []).append(sample.value)
    return found


def test_every_counter_an_alert_takes_the_increase_of_starts_at_zero_for_every_gateway():
    alerted = set(re.findall(r"(?:rate|increase)\((recon_[a-z_]+)", RULES.read_text())) - NOT_INITIALISED
    assert {"recon_webhooks_received_total", "recon_gateway_circuit_open_total", "recon_grants_total",
            "recon_credit_shortfall_total", "recon_refunds_total"} <= alerted
    metrics.initialise(["gw_fresh"], ["ep_fresh"])
    exposed = _exposed("gw_fresh")
    assert not alerted - set(exposed), f"not created at start: {sorted(alerted - set(exposed))}"
    assert all(value == 0 for name in alerted for value in exposed[name])
    assert len(exposed["recon_webhooks_received_total"]) == 8  # webhook and callback × every outcome
    assert set(_exposed("ep_fresh")) == {"recon_event_deliveries_total"}


def test_initialising_again_keeps_what_was_counted():
    metrics.initialise(["gw_counted"])
    metrics.CIRCUIT_OPEN.labels("gw_counted").inc(3)
    metrics.initialise(["gw_counted"])
    assert _exposed("gw_counted")["recon_gateway_circuit_open_total"] == [3]
