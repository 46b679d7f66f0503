"""The Procfile's processes under honcho, on Postgres + Redis + the simulator, with traffic of every
kind: afterwards /metrics shows a non-zero value for every metric ops relies on."""

from __future__ import annotations

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

from tests.runtime import NAMESPACE, REDIS_URL
from tests.support import AUTH, GATEWAY_ORGS

ROOT = Path(__file__).resolve().parents[2]

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


def samples(text: str, name: str) -> list[float]:
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.M)
    return [float(value) for _, value in pattern.findall(text)]


@pytest.mark.e2e
@pytest.mark.slow
def test_every_metric_is_non_zero_after_traffic_through_the_procfile_processes(deps, org, simulator, pg_url,
                                                                                redis_client, tmp_path):
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    keys = simulator.sim.payglocal.adapter_kwargs()
    namespace = f"{NAMESPACE}-honcho-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PORT": str(port), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "RECON_DATABASE_URL": pg_url,
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
           "RECON_GATEWAY_RATE_PER_S": '{"razorpay": 4, "payglocal": 20}'}
    honcho = subprocess.Popen([str(Path(sys.executable).parent / "honcho"), "start", "-f", "Procfile"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    simulator.sim.set_knobs(webhook_url=f"{web}/webhooks/razorpay")
    try:
        with httpx.Client(base_url=web, headers=AUTH, timeout=20) as client:
            deadline = time.monotonic() + 60
            while True:
                assert honcho.poll() is None, honcho.stdout.read().decode()[-3000:]
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the web process did not become ready"
                time.sleep(0.3)
            seen = drive_traffic(client, simulator, redis_client, namespace)
            text = scrape_until_complete(client, seen, deadline=time.monotonic() + 90)
        missing = [name for name in MUST_BE_NON_ZERO if name not in seen]
        absent = [name for name in MUST_BE_PRESENT if not samples(text, name)]
        assert (missing, absent) == ([], []), f"{missing} {absent}"
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
        kill_leftovers(namespace)
        for key in redis_client.scan_iter(match=f"{namespace}*", count=500):
            redis_client.delete(key)


def order(client, gateway: str) -> dict:
    g = GATEWAY_ORGS[gateway]
    response = client.post("/orders", json={"organisation_id": g.org, "requested_by": g.admin, "plan": "payg",
                                            "credits": 1_000, "refund_policy_accepted": True})
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_state(client, order_id: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/orders/{order_id}").json()["state"] != state:
        assert time.monotonic() < deadline, f"{order_id} never became {state}"
        time.sleep(0.3)


def dead_letter(redis_client, namespace: str) -> None:
    """A message that breaks the contract, pushed as another language would."""
    redis_id = str(uuid.uuid4())
    message = {"queue_name": "recon_priority", "actor_name": "recheck_order", "args": [],
               "kwargs": {"order_id": "ord_x", "who": "breaks the contract"}, "options": {"redis_message_id": redis_id},
               "message_id": str(uuid.uuid4()), "message_timestamp": int(time.time() * 1000)}
    redis_client.hset(f"{namespace}:recon_priority.msgs", redis_id, json.dumps(message))
    redis_client.rpush(f"{namespace}:recon_priority", redis_id)


def drive_traffic(client, simulator, redis_client, namespace: str) -> set[str]:
    """Traffic of every kind; returns the metrics already seen non-zero on the way."""
    for gateway in ("razorpay", "payglocal"):
        paid = simulator.sim.pay(order(client, gateway)["gateway_order_id"], "success")
        _payment_id, _signature = GATEWAY_ORGS[gateway].callback(paid)
        simulator.sim.pay(order(client, gateway)["gateway_order_id"], "close_window")
    late_order = order(client, "razorpay")
    late = simulator.sim.pay(late_order["gateway_order_id"], "timeout")
    simulator.sim.pay(order(client, "razorpay")["gateway_order_id"], "success", amount_minor=1)  # -> needs_review
    client.post("/webhooks/razorpay", content=b'{"event":"payment.captured"}',
                headers={"X-Razorpay-Signature": "0" * 64, "X-Razorpay-Event-Id": "evt_forged",
                         "Content-Type": "application/json"})
    dead_letter(redis_client, namespace)
    wait_for_state(client, late_order["order_id"], "abandoned")  # the window closed; the sweep abandoned it
    simulator.sim.late_authorize(late["id"])
    burst = [order(client, "razorpay")["order_id"] for _ in range(3)]
    for order_id in burst * 3:  # more than 4/s: our own rate limit refuses some
        client.post(f"/orders/{order_id}/recheck", json={"requested_by": "load", "wait": False})
    open_orders = [order(client, "razorpay") for _ in range(4)]  # checked every second by the sweep
    seen = non_zero(client.get("/metrics").text)  # pending orders by age, while they are open
    simulator.sim.set_knobs(rate_limit_rate=1.0)
    time.sleep(2)
    simulator.sim.set_knobs(rate_limit_rate=0.0, error_rate=1.0)  # 5xx: the breaker opens for sweeps
    deadline = time.monotonic() + 45
    while "recon_gateway_circuit_open_total" not in seen and time.monotonic() < deadline:
        time.sleep(1)
        seen |= non_zero(client.get("/metrics").text)
    simulator.sim.set_knobs(error_rate=0.0)
    assert open_orders
    return seen


def non_zero(text: str) -> set[str]:
    return {name for name in MUST_BE_NON_ZERO if any(v > 0 for v in samples(text, name))}


def scrape_until_complete(client, seen: set[str], *, deadline: float) -> str:
    while True:
        text = client.get("/metrics").text
        seen |= non_zero(text)
        if seen >= set(MUST_BE_NON_ZERO) or time.monotonic() > deadline:
            return text
        time.sleep(1)
