"""Messages survive a worker's ``kill -9``: what a dead worker had fetched and not acknowledged is delivered again.

Two windows are hit. "Died before any write":

A payment is captured at the gateway and its webhooks are lost; the gateway is made slow (20 s per answer) and a
message about the order is sent to a ``dramatiq worker.main:start`` subprocess. While that message waits on the
gateway, the worker's whole process group is killed with SIGKILL; a fresh worker starts and the gateway is fast
again. Nothing else (no scheduler, no webhook) can pay the order: only the redelivered message can. The broker
redelivers once the dead process's heartbeat is older than RECON_BROKER_HEARTBEAT_TIMEOUT_MS (15 s) and a
maintenance roll (RECON_BROKER_MAINTENANCE_CHANCE, 5 % of broker calls) hits that queue: ~15-30 s expected.

"Died after commit, before ack": the test worker also loads ``tests.e2e.hold_before_ack``, a middleware that,
while a marker file exists, holds a message that has finished (its actor returned, its transaction committed)
in ``after_process_message``, before the worker acknowledges it. The worker is killed there; the message is
redelivered to a fresh worker and must be harmless: still one ledger row, the balance unchanged, the inbox row
processed, nothing dead-lettered.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker

from tests.conftest import REDIS_URL
from tests.support import balance, inbox_rows, ledger_count, new_order, order_row

ROOT = Path(__file__).resolve().parents[2]
DRAMATIQ = str(Path(sys.executable).with_name("dramatiq"))
#: Generous, so that a slow machine does not make this a timing test: redelivery takes ~15-30 s.
REDELIVERED_WITHIN_S = 180  # a bound on waiting for the effect, not a performance goal


#: The test-only middleware module (see its docstring); loaded by the worker's command line, nowhere else.
HOLD_MODULE = "tests.e2e.hold_before_ack"


def start_worker(env: dict[str, str], log: Path, *modules: str) -> subprocess.Popen:
    """``dramatiq worker.main:start [modules]`` in its own process group (``kill -9`` of the group reaches the forked
    child)."""
    with log.open("ab") as out:
        return subprocess.Popen([DRAMATIQ, "worker.main:start", *modules, "--processes", "1", "--threads", "2"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def unacked(client, namespace: str, queue: str) -> int:
    """Messages fetched by some worker process and not acknowledged yet (dramatiq's per-process ack sets)."""
    return sum(client.scard(key) for key in client.scan_iter(match=f"{namespace}:__acks__.*.{queue}"))


def in_broker(client, namespace: str, queue: str) -> int:
    """Messages the broker still holds for ``queue``: queued, in flight or waiting for a retry."""
    return client.hlen(f"{namespace}:{queue}.msgs") + client.hlen(f"{namespace}:{queue}.DQ.msgs")


@pytest.fixture
def crash_env(pg_url, simulator, redis_client, tmp_path):
    """The worker subprocesses' environment: this run's database, the simulator, a namespace of their own."""
    namespace = f"recon-crash-{uuid.uuid4().hex[:8]}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECON_")}
    env.update({"RECON_DATABASE_URL": pg_url, "RECON_BROKER_URL": REDIS_URL, "RECON_BROKER_NAMESPACE": namespace,
                "RECON_RAZORPAY_BASE_URL": simulator.base_url, "RECON_RAZORPAY_KEY_ID": simulator.config.key_id,
                "RECON_RAZORPAY_KEY_SECRET": simulator.config.key_secret,
                "RECON_RAZORPAY_WEBHOOK_SECRET": simulator.config.webhook_secret, "RECON_LOG_JSON": "true"})
    yield env
    for key in redis_client.scan_iter(match=f"{namespace}*", count=500):
        redis_client.delete(key)


def kill_mid_message_then_measure(deps, *, crash_env, redis_client, simulator, tmp_path, queue: str, actor: str,
                                  args: tuple, order_id: str) -> tuple[float, str]:
    """Send ``actor(*args)``, SIGKILL the worker while it waits on the slow gateway, start a fresh worker, and
    return the seconds from the kill until the order is paid (or the broker holds the message no more)."""
    namespace = crash_env["RECON_BROKER_NAMESPACE"]
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)
    broker.declare_queue(queue)
    simulator.sim.set_knobs(latency_ms=20_000)
    first = start_worker(crash_env, tmp_path / "worker-1.log")
    second = None
    try:
        broker.enqueue(dramatiq.Message(queue_name=queue, actor_name=actor, args=args, kwargs={}, options={}))
        deadline = time.monotonic() + 60
        while unacked(redis_client, namespace, queue) == 0:  # fetched by the worker, hence running
            assert first.poll() is None, (tmp_path / "worker-1.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the worker never fetched the message"
            time.sleep(0.1)
        time.sleep(2)  # well inside the gateway's 20 s answer
        kill_group(first)
        killed_at = time.monotonic()
        simulator.sim.set_knobs(latency_ms=0)
        second = start_worker(crash_env, tmp_path / "worker-2.log")
        while time.monotonic() - killed_at < REDELIVERED_WITHIN_S:
            state = order_row(deps, order_id).state
            if state == "paid" or in_broker(redis_client, namespace, queue) == 0:
                return time.monotonic() - killed_at, state
            assert second.poll() is None, (tmp_path / "worker-2.log").read_text()[-2000:]
            time.sleep(0.2)
        return time.monotonic() - killed_at, order_row(deps, order_id).state
    finally:
        simulator.sim.set_knobs(latency_ms=0)
        for process in (first, second):
            if process is not None:
                kill_group(process)
        broker.close()


def recheck_outcomes(deps, order_id: str) -> list[str]:
    from sqlalchemy import select

    from db.models import SupportAction

    with deps.sessions() as session:
        rows = session.execute(select(SupportAction.outcome).where(SupportAction.order_id == order_id)).scalars()
        return [outcome.get("reason", "?") for outcome in rows]


@pytest.mark.e2e
@pytest.mark.slow
def test_a_verify_payment_killed_mid_message_is_redelivered_and_credits_the_order_once(
        deps, org, simulator, crash_env, redis_client, tmp_path):
    order = new_order(deps)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    seconds, state = kill_mid_message_then_measure(
        deps, crash_env=crash_env, redis_client=redis_client, simulator=simulator, tmp_path=tmp_path,
        queue="recon_priority", actor="verify_payment",
        args=(order.id, paid["razorpay_payment_id"], paid["razorpay_signature"]), order_id=order.id)
    print(f"\nverify_payment: kill -9 -> redelivered -> order {state} after {seconds:.1f} s")
    assert state == "paid", f"not redelivered within {REDELIVERED_WITHIN_S} s"
    assert ledger_count(deps, order.id) == 1 and balance(deps) == 5_000


@pytest.mark.e2e
@pytest.mark.slow
def test_a_recheck_killed_mid_message_is_redelivered_and_credits_the_order_once(
        deps, org, simulator, crash_env, redis_client, tmp_path):
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    seconds, state = kill_mid_message_then_measure(
        deps, crash_env=crash_env, redis_client=redis_client, simulator=simulator, tmp_path=tmp_path,
        queue="recon_priority", actor="recheck_order", args=(order.id, "support:crash-test"), order_id=order.id)
    print(f"\nrecheck_order: kill -9 -> redelivered -> order {state} after {seconds:.1f} s; audited outcomes: "
          f"{recheck_outcomes(deps, order.id)}")
    assert state == "paid", f"the order is still {state} {seconds:.0f} s after the kill"
    assert ledger_count(deps, order.id) == 1 and balance(deps) == 5_000


def runs_of(journal: Path, message_id: str) -> list[dict]:
    """Each time a worker process finished ``message_id`` (written by the hold_before_ack middleware)."""
    if not journal.exists():
        return []
    return [run for run in map(json.loads, journal.read_text().splitlines()) if run["message_id"] == message_id]


def kill_after_commit_then_measure(deps, *, crash_env, redis_client, tmp_path, queue: str, actor: str, args: tuple,
                                   effect) -> dict:
    """Send ``actor(*args)``; once it has finished and committed (``effect()`` reads what it wrote) and before its
    ack, SIGKILL the worker; start a fresh one and wait until the message has run again there and is acknowledged.
    Returns the effect at the kill and after the redelivery, the seconds from the kill to the second run, and
    the runs."""
    namespace = crash_env["RECON_BROKER_NAMESPACE"]
    hold, journal = tmp_path / "hold", tmp_path / "journal.jsonl"
    reached = hold.with_name("hold.reached")
    env = {**crash_env, "CRASH_TEST_HOLD_FILE": str(hold), "CRASH_TEST_JOURNAL": str(journal)}
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)
    broker.declare_queue(queue)
    hold.touch()
    first = start_worker(env, tmp_path / "worker-1.log", HOLD_MODULE)
    second = None
    try:
        message = dramatiq.Message(queue_name=queue, actor_name=actor, args=args, kwargs={}, options={})
        broker.enqueue(message)
        deadline = time.monotonic() + 60
        while not reached.exists():  # the actor returned (committed); the worker holds the message before its ack
            assert first.poll() is None, (tmp_path / "worker-1.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the worker never finished the message"
            time.sleep(0.05)
        assert reached.read_text() == message.message_id
        at_kill = effect()
        held = unacked(redis_client, namespace, queue)
        kill_group(first)
        killed_at, killed_epoch = time.monotonic(), time.time()
        hold.unlink()
        second = start_worker(env, tmp_path / "worker-2.log", HOLD_MODULE)
        again_after = None
        while time.monotonic() - killed_at < REDELIVERED_WITHIN_S:
            runs = runs_of(journal, message.message_id)
            if again_after is None and len(runs) >= 2:
                again_after = runs[1]["at"] - killed_epoch
            if again_after is not None and in_broker(redis_client, namespace, queue) == 0:
                break  # run again and acknowledged
            assert second.poll() is None, (tmp_path / "worker-2.log").read_text()[-2000:]
            time.sleep(0.2)
        return {"at_kill": at_kill, "after": effect(), "unacked_at_kill": held, "seconds": again_after,
                "runs": runs_of(journal, message.message_id),
                "dead_letters": redis_client.zcard(f"{namespace}:{queue}.XQ"),
                "worker_2_log": (tmp_path / "worker-2.log").read_text()}
    finally:
        hold.unlink(missing_ok=True)
        for process in (first, second):
            if process is not None:
                kill_group(process)
        broker.close()


def committed_effect(deps, order_id: str, org: str = "org-in"):
    def effect() -> dict:
        return {"state": order_row(deps, order_id).state, "ledger": ledger_count(deps, order_id),
                "balance": balance(deps, org),
                "inbox": sorted((row.kind, row.status) for row in inbox_rows(deps, order_id=order_id))}
    return effect


def assert_redelivery_was_harmless(outcome: dict, what: str) -> None:
    runs = outcome["runs"]
    print(f"\n{what}: committed, kill -9 before the ack -> redelivered and run again after "
          f"{outcome['seconds']:.1f} s" if outcome["seconds"] is not None else f"\n{what}: not redelivered")
    assert outcome["at_kill"]["state"] == "paid" and outcome["at_kill"]["ledger"] == 1, outcome["at_kill"]
    assert outcome["unacked_at_kill"] == 1, "the message was acknowledged before the kill: the window was missed"
    assert outcome["seconds"] is not None and len(runs) == 2, f"not run again within {REDELIVERED_WITHIN_S} s: {runs}"
    assert runs[0]["pid"] != runs[1]["pid"] and not runs[1]["failed"], runs
    assert outcome["after"] == outcome["at_kill"], "the redelivery changed what the first run had committed"
    assert outcome["after"]["balance"] == 5_000
    assert all(status == "processed" for _, status in outcome["after"]["inbox"]), outcome["after"]
    assert outcome["dead_letters"] == 0 and "message_dead_lettered" not in outcome["worker_2_log"]


@pytest.mark.e2e
@pytest.mark.slow
def test_a_webhook_committed_then_killed_before_its_ack_is_redelivered_harmlessly(
        deps, org, simulator, crash_env, redis_client, tmp_path):
    from worker.services import intake

    order = new_order(deps)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    event = next(e for e in simulator.sim.webhook_events()
                 if e.event == "payment.captured" and paid["razorpay_payment_id"].encode() in e.body)
    stored = intake.store_webhook("razorpay", event.body, event.headers, deps=deps)  # as POST /webhooks/razorpay does
    assert stored.status == "accepted"
    outcome = kill_after_commit_then_measure(
        deps, crash_env=crash_env, redis_client=redis_client, tmp_path=tmp_path, queue="recon_webhooks",
        actor="process_inbox_event", args=(stored.inbox_id,), effect=committed_effect(deps, order.id))
    assert outcome["at_kill"]["inbox"] == [("webhook", "processed")]
    assert_redelivery_was_harmless(outcome, "process_inbox_event")


@pytest.mark.e2e
@pytest.mark.slow
def test_a_verify_payment_committed_then_killed_before_its_ack_is_redelivered_harmlessly(
        deps, org, simulator, crash_env, redis_client, tmp_path):
    order = new_order(deps)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    outcome = kill_after_commit_then_measure(
        deps, crash_env=crash_env, redis_client=redis_client, tmp_path=tmp_path, queue="recon_priority",
        actor="verify_payment", args=(order.id, paid["razorpay_payment_id"], paid["razorpay_signature"]),
        effect=committed_effect(deps, order.id))
    assert outcome["at_kill"]["inbox"] == [("callback", "processed")]
    assert_redelivery_was_harmless(outcome, "verify_payment")
