"""The Procfile's processes under honcho, on Postgres + Redis + the simulator, scraped by Debian's Prometheus
while traffic of every kind runs through them (payments on both gateways, lost and forged webhooks, a late
authorisation, rate limits and an open circuit, a dead letter, refunds processed, failed and in flight,
disputes won and pending, a credit shortfall, order events delivered and dead, a settlement with faults, a
status nobody documented). Afterwards, through Prometheus's HTTP API and over the scraped data only:

- every dashboard panel's expression parses, reads scraped samples and returns series;
- every alerting rule, evaluated by Prometheus itself (``rule_files``), is healthy; each alert's expression
  parses and reads scraped samples, its signal (the expression without its final threshold) returns series,
  and the alerts this traffic is made to trip are pending or firing;
- every metric ops relies on was seen non-zero on ``/metrics``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text

from ops.demo_receiver import DemoReceiver
from tests.ops.prometheus import GRAFANA_VARIABLES, PrometheusServer, QueryError, grafana_expr
from tests.ops.test_dashboard import DASHBOARD, all_panels
from tests.runtime import NAMESPACE, REDIS_URL
from tests.support import AUTH, GATEWAY_ORGS

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "alerts" / "recon-rules.yml"
SECRET = "whsec_" + base64.b64encode(b"e2e-prometheus-billing-secret!!!").decode()
SCRAPE_S = 1

#: Every metric the Operations issue names, and whether it must be non-zero after the run.
MUST_BE_NON_ZERO = [
    "recon_webhooks_received_total", "recon_orders", "recon_pending_orders", "recon_order_time_to_paid_seconds_count",
    "recon_credits_granted_total", "recon_orders_abandoned_total", "recon_orders_late_paid_total",
    "recon_gateway_requests_total", "recon_gateway_request_duration_seconds_count", "recon_gateway_rate_limited_total",
    "recon_gateway_circuit_open_total", "recon_dead_letters", "recon_messages_dead_lettered_total",
    "recon_last_successful_sweep_timestamp_seconds", "recon_sweep_rounds_total", "recon_orders_needs_review_total",
]
#: Reported per queue, zero when the workers keep up (they do, here).
MUST_BE_PRESENT = ["recon_queue_depth", "recon_queue_oldest_message_age_seconds", "recon_inbox_pending"]
#: The alerts this traffic trips (pending or firing: their ``for`` is longer than the run). The others wait
#: for hours or days to pass (a stuck order, a refund two days in flight, a sweep five minutes late, a backlog):
#: their signal is checked instead.
MUST_TRIP = {
    "WebhookSignatureFailuresSpike", "GatewayErrorRate", "GatewayCircuitOpen", "DeadLetters", "OrdersNeedReview",
    "GatewayRateLimited", "GatewayUnknownStatus", "DisputeResponseDueSoon", "RefundFailed", "CreditShortfall",
    "WebhooksSilent", "EventDeliveriesDead", "CreditedNotSettled", "SettlementMismatch",
}
#: An alert expression's last comparison against a number: what is left is the signal it thresholds.
THRESHOLD = re.compile(r"\s*(?:>=|<=|==|!=|>|<)\s*[\d.\s*+-]+$")


def kill_leftovers(namespace: str) -> None:
    """honcho starts each process in a group of its own: stop any whose environment carries our namespace."""
    marker = f"RECON_BROKER_NAMESPACE={namespace}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def samples(text_: str, name: str) -> list[float]:
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.M)
    return [float(value) for _, value in pattern.findall(text_)]


def stack_env(simulator, pg_url: str, port: int, namespace: str, metrics_dir: Path, endpoints: list[dict]) -> dict:
    web = f"http://127.0.0.1:{port}"
    keys = simulator.sim.payglocal.adapter_kwargs()
    return {**os.environ, "PORT": str(port), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "RECON_DATABASE_URL": pg_url,
            "RECON_BROKER_URL": REDIS_URL, "RECON_BROKER_NAMESPACE": namespace,
            "RECON_API_TOKENS": json.dumps({"tests": AUTH["Authorization"][7:]}),
            "RECON_RAZORPAY_BASE_URL": simulator.base_url, "RECON_RAZORPAY_KEY_ID": simulator.config.key_id,
            "RECON_RAZORPAY_KEY_SECRET": simulator.config.key_secret,
            "RECON_RAZORPAY_WEBHOOK_SECRET": simulator.config.webhook_secret,
            "RECON_PAYGLOCAL_BASE_URL": simulator.base_url, "RECON_PAYGLOCAL_MERCHANT_ID": keys["merchant_id"],
            "RECON_PAYGLOCAL_PRIVATE_KEY_PEM": keys["private_key_pem"],
            "RECON_PAYGLOCAL_PRIVATE_KID": keys["private_kid"],
            "RECON_PAYGLOCAL_PUBLIC_KEYS": json.dumps(keys["payglocal_public_keys"]),
            "RECON_PAYGLOCAL_PUBLIC_KID": keys["payglocal_public_kid"],
            "RECON_PAYGLOCAL_CALLBACK_URL": f"{web}/webhooks/payglocal",
            "RECON_SWEEP_INTERVAL_S": "0.5", "RECON_ABANDON_AFTER_S": "6", "RECON_CHECK_BACKOFF_S": "[1]",
            "RECON_CLOSED_CHECK_EVERY_S": "1", "RECON_MIN_POLL_INTERVAL_S": '{"razorpay": 0, "payglocal": 0}',
            "RECON_BREAKER_FAIL_MAX": "2", "RECON_BREAKER_RESET_S": "60",
            "RECON_GATEWAY_RATE_PER_S": '{"razorpay": 4, "payglocal": 20}',
            # order events: one endpoint that takes them, one that is down for good (dead at the first failure)
            "RECON_EVENT_ENDPOINTS": json.dumps(endpoints), "RECON_EVENT_MAX_ATTEMPTS": "1",
            # a credited payment missing from the settlement is overdue at once
            "RECON_SETTLEMENT_EXPECTED_S": '{"razorpay": 0, "payglocal": 0}', "RECON_SETTLEMENT_SLACK_S": "0"}


def prometheus_config(port: int) -> str:
    return yaml.safe_dump({
        "global": {"scrape_interval": f"{SCRAPE_S}s", "scrape_timeout": f"{SCRAPE_S}s",
                   "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "gateway-recon", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    })


@pytest.mark.e2e
@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_procfile_stack_and_every_panel_and_alert_evaluates(
        deps, org, simulator, pg_url, redis_client, tmp_path):
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    namespace = f"{NAMESPACE}-honcho-{uuid.uuid4().hex[:6]}"
    billing, broken = DemoReceiver(SECRET), DemoReceiver(SECRET)
    broken.down = True
    endpoints = [{"name": "billing", "url": billing.url, "secrets": [SECRET]},
                 {"name": "broken", "url": broken.url, "secrets": [SECRET]}]
    (tmp_path / "metrics").mkdir()
    env = stack_env(simulator, pg_url, port, namespace, tmp_path / "metrics", endpoints)
    honcho = subprocess.Popen([str(Path(sys.executable).parent / "honcho"), "start", "-f", "Procfile"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    simulator.sim.set_knobs(webhook_url=f"{web}/webhooks/razorpay")
    (tmp_path / "prometheus").mkdir()
    try:
        with httpx.Client(base_url=web, headers=AUTH, timeout=20) as client:
            wait_until_ready(client, honcho)
            with PrometheusServer(tmp_path / "prometheus", prometheus_config(port)) as prometheus:
                wait_for(lambda: prometheus.query("up == 1")["result"], "Prometheus's first scrape")  # counters at 0
                seen = drive_traffic(client, simulator, redis_client, namespace, pg_url)
                text_ = scrape_until_complete(client, seen, deadline=time.monotonic() + 90)
                tripped = wait_for_alerts(prometheus, deadline=time.monotonic() + 60)
                problems = dashboard_problems(prometheus) + rule_problems(prometheus, tripped)
        missing = [name for name in MUST_BE_NON_ZERO if name not in seen]
        absent = [name for name in MUST_BE_PRESENT if not samples(text_, name)]
        assert (problems, missing, absent) == ([], [], []), "\n".join(problems) + f"\n{missing} {absent}"
        assert billing.events and broken.refused == 0  # events reached the billing backend, verified
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
        kill_leftovers(namespace)
        billing.shutdown()
        broken.shutdown()
        for key in redis_client.scan_iter(match=f"{namespace}*", count=500):
            redis_client.delete(key)


def wait_until_ready(client: httpx.Client, honcho: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert honcho.poll() is None, honcho.stdout.read().decode()[-3000:]
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the web process did not become ready"
        time.sleep(0.3)


# -- traffic --------------------------------------------------------------------------------------------
def order(client, gateway: str) -> dict:
    g = GATEWAY_ORGS[gateway]
    response = client.post("/orders", json={"organisation_id": g.org, "requested_by": g.admin, "plan": "payg",
                                            "credits": 1_000, "refund_policy_accepted": True})
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_state(client, order_id: str, state: str) -> None:
    wait_for(lambda: client.get(f"/orders/{order_id}").json()["state"] == state, f"{order_id} to become {state}")


def paid(client, simulator, gateway: str = "razorpay", *, webhooks: bool = True) -> dict:
    """An order paid and credited (by its webhook or callback, or by the sweep when those are lost)."""
    created = order(client, gateway)
    payment = simulator.sim.pay(created["gateway_order_id"], "success", deliver_webhooks=webhooks)
    wait_for_state(client, created["order_id"], "paid")
    return {**created, "payment_id": GATEWAY_ORGS[gateway].payment_id(payment)}


def dead_letter(redis_client, namespace: str) -> None:
    """A message that breaks the contract, pushed as another language would."""
    redis_id = str(uuid.uuid4())
    message = {"queue_name": "recon_priority", "actor_name": "recheck_order", "args": [],
               "kwargs": {"order_id": "ord_x", "who": "breaks the contract"}, "options": {"redis_message_id": redis_id},
               "message_id": str(uuid.uuid4()), "message_timestamp": int(time.time() * 1000)}
    redis_client.hset(f"{namespace}:recon_priority.msgs", redis_id, json.dumps(message))
    redis_client.rpush(f"{namespace}:recon_priority", redis_id)


def refund(client, order_id: str) -> None:
    response = client.post(f"/orders/{order_id}/refunds", json={"reason": "customer asked",
                                                                "requested_by": "support:e2e"})
    assert response.status_code in (200, 201, 202), response.text


def drive_traffic(client, simulator, redis_client, namespace: str, pg_url: str) -> set[str]:
    """Traffic of every kind; returns the metrics already seen non-zero on the way. The gateway faults come
    last: the circuit they open stays open for a minute."""
    payments(client, simulator, redis_client, namespace)
    seen = non_zero(client.get("/metrics").text)  # pending orders by age, while they are open
    money(client, simulator, pg_url)
    settlements(client, simulator)
    return seen | gateway_faults(client, simulator)


def payments(client, simulator, redis_client, namespace: str) -> None:
    for gateway in ("razorpay", "payglocal"):
        paid(client, simulator, gateway)
        simulator.sim.pay(order(client, gateway)["gateway_order_id"], "close_window")
    for _ in range(3):  # PayGlocal's callbacks lost: credited by the sweep, more than by callbacks (silent)
        paid(client, simulator, "payglocal", webhooks=False)
    late_order = order(client, "razorpay")
    late = simulator.sim.pay(late_order["gateway_order_id"], "timeout")
    simulator.sim.pay(order(client, "razorpay")["gateway_order_id"], "success", amount_minor=1)  # -> needs_review
    for n in range(12):  # forged: far more than a fifth of the signed input
        client.post("/webhooks/razorpay", content=b'{"event":"payment.captured"}',
                    headers={"X-Razorpay-Signature": "0" * 64, "X-Razorpay-Event-Id": f"evt_forged{n}",
                             "Content-Type": "application/json"})
    dead_letter(redis_client, namespace)
    odd = order(client, "razorpay")  # the bank never answers; then the gateway answers a status nobody documented
    simulator.sim.answer_status(simulator.sim.pay(odd["gateway_order_id"], "no_response")["id"], "on_hold")
    wait_for_state(client, late_order["order_id"], "abandoned")  # the window closed; the sweep abandoned it
    simulator.sim.late_authorize(late["id"])
    wait_for_state(client, late_order["order_id"], "paid")
    burst = [order(client, "razorpay")["order_id"] for _ in range(3)]
    for order_id in burst * 3:  # more than 4/s: our own rate limit refuses some
        client.post(f"/orders/{order_id}/recheck", json={"requested_by": "load", "wait": False})
    for _ in range(4):  # checked every second by the sweep
        order(client, "razorpay")


def money(client, simulator, pg_url: str) -> None:
    """Refunds processed, failed and in flight; a dispute won, one open with its deadline near, on credits
    already spent (a shortfall)."""
    processed, failed, in_flight, won, pending = (paid(client, simulator) for _ in range(5))
    refund(client, processed["order_id"])
    simulator.sim.refund_behaviour(fail_next=1)
    refund(client, failed["order_id"])
    simulator.sim.refund_behaviour(processed_after_s=30 * 86_400)
    refund(client, in_flight["order_id"])
    simulator.sim.refund_behaviour(processed_after_s=0)
    dispute = simulator.sim.open_dispute(won["payment_id"], respond_in_s=3 * 86_400)
    wait_for(lambda: client.get(f"/orders/{won['order_id']}").json()["disputes"], "the dispute to arrive")
    simulator.sim.move_dispute(dispute["id"], status="won")
    wait_for(lambda: [d["state"] for d in client.get(f"/orders/{won['order_id']}").json()["disputes"]] == ["won"],
             "the dispute to be won (its credits restored)")
    engine = create_engine(pg_url)
    with engine.begin() as connection:  # the organisation spent its credits (in the product, not here)
        connection.execute(text("UPDATE organisations SET credit_balance = 0 WHERE id = :org"),
                           {"org": GATEWAY_ORGS["razorpay"].org})
    engine.dispose()
    simulator.sim.open_dispute(pending["payment_id"], respond_in_s=3_600)
    wait_for(lambda: client.get(f"/orders/{pending['order_id']}").json()["disputes"], "the dispute to arrive")


def settlements(client, simulator) -> None:
    """Today's settlement, announced by ``settlement.processed``: one payment left out, one short, a stranger's."""
    left_out, short = paid(client, simulator), paid(client, simulator)
    simulator.sim.set_settlement_faults(skip_payment_ids=[left_out["payment_id"]],
                                        amount_delta={short["payment_id"]: -500}, unknown_rows=1)
    simulator.sim.settle("razorpay", everything=True)


def gateway_faults(client, simulator) -> set[str]:
    """429s from the gateway, then 5xx until the circuit opens (it stays open for a minute) and while support
    rechecks (no circuit at support priority): far more than a tenth of the gateway's answers are errors."""
    rechecked = [order(client, "razorpay")["order_id"] for _ in range(4)]
    simulator.sim.set_knobs(rate_limit_rate=1.0)
    time.sleep(2)
    simulator.sim.set_knobs(rate_limit_rate=0.0, error_rate=1.0)
    seen: set[str] = set()
    deadline = time.monotonic() + 45
    while "recon_gateway_circuit_open_total" not in seen and time.monotonic() < deadline:
        time.sleep(1)
        seen |= non_zero(client.get("/metrics").text)
    for order_id in rechecked * 2:  # each answered 5xx (and retried) in a worker
        client.post(f"/orders/{order_id}/recheck", json={"requested_by": "support:e2e", "wait": False})
    time.sleep(4)  # our own limit lets 4 requests a second through
    simulator.sim.set_knobs(error_rate=0.0)
    return seen


def wait_for(what, message: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"timed out waiting for {message}"
        time.sleep(0.3)


def non_zero(text_: str) -> set[str]:
    return {name for name in MUST_BE_NON_ZERO if any(v > 0 for v in samples(text_, name))}


def scrape_until_complete(client, seen: set[str], *, deadline: float) -> str:
    while True:
        text_ = client.get("/metrics").text
        seen |= non_zero(text_)
        if seen >= set(MUST_BE_NON_ZERO) or time.monotonic() > deadline:
            return text_
        time.sleep(1)


# -- what Prometheus makes of it ------------------------------------------------------------------------
def wait_for_alerts(prometheus: PrometheusServer, *, deadline: float) -> set[str]:
    """The alerts Prometheus's own rule evaluation has pending or firing, once every one expected is (or at the
    deadline)."""
    while True:
        tripped = {alert["labels"]["alertname"] for alert in prometheus.api("alerts")["alerts"]
                   if alert["state"] in ("pending", "firing")}
        if tripped >= MUST_TRIP or time.monotonic() > deadline:
            return tripped
        time.sleep(SCRAPE_S)


def expression_problems(prometheus: PrometheusServer, what: str, expr: str) -> list[str]:
    """It parses, it reads scraped samples, it returns series."""
    try:
        found = prometheus.query(expr)
    except QueryError as exc:
        return [f"{what}: Prometheus refuses {expr!r}: {exc}"]
    problems = [] if found["samples"] else [f"{what}: reads no scraped sample: {expr!r}"]
    return problems + ([] if found["result"] else [f"{what}: returns no series: {expr!r}"])


def dashboard_problems(prometheus: PrometheusServer) -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {**GRAFANA_VARIABLES, "__range": "15m"}  # the run's length, as the time picker would say
    targets = [(panel.get("title"), target["expr"]) for panel in all_panels(dashboard)
               for target in panel.get("targets", []) if target.get("expr")]
    assert len(targets) > 40, "the dashboard lost its panels"
    return [problem for title, expr in targets
            for problem in expression_problems(prometheus, f"panel {title!r}", grafana_expr(expr, variables))]


def rule_problems(prometheus: PrometheusServer, tripped: set[str]) -> list[str]:
    groups = prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    declared = [rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    problems = [] if sorted(r["name"] for r in rules) == sorted(declared) else [
        f"Prometheus loaded {sorted(r['name'] for r in rules)}, the file declares {sorted(declared)}"]
    for rule in rules:
        name, expr = rule["name"], rule["query"]
        if rule["health"] != "ok":
            problems.append(f"alert {name}: Prometheus evaluates it as {rule['health']}: {rule.get('lastError')}")
        problems += [p for p in expression_problems(prometheus, f"alert {name}", expr)  # parses, reads samples
                     if "returns no series" not in p]
        signal_ = THRESHOLD.sub("", expr.strip())
        if name not in MUST_TRIP:
            problems += [p for p in expression_problems(prometheus, f"alert {name}'s signal", signal_)
                         if "returns no series" in p]
    queries = {rule["name"]: rule["query"] for rule in rules}
    problems += [f"alert {name} did not trip although the traffic is made to trip it; its parts now: "
                 f"{parts(prometheus, queries[name])}" for name in sorted(MUST_TRIP - tripped)]
    return problems


def parts(prometheus: PrometheusServer, expr: str) -> dict[str, list]:
    """What each selector of ``expr`` returns now (``{metric}`` → values): why an alert did not trip."""
    selectors = set(re.findall(r"recon_[a-z_]+(?:\{[^}]*\})?", expr))
    return {selector: [(series["metric"], series["value"][1]) for series in prometheus.query(selector)["result"]]
            for selector in sorted(selectors)}
