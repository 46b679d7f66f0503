"""Every support command, run through the real CLI against Postgres, the simulator and Redis."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from db.models import SupportAction
from ops.cli import app
from tests.conftest import NAMESPACE
from tests.support import balance, inbox_rows, ledger_count, new_order, order_row

runner = CliRunner()
#: What the commands run on: the test's Deps with the run's broker and actors (an entry point builds its own).
RUNNING: dict[str, object] = {}


@pytest.fixture(autouse=True)
def _runtime(runtime):
    RUNNING["runtime"] = runtime
    yield
    RUNNING.clear()


def recon(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"}, obj=RUNNING["runtime"])
    assert result.exit_code == 0, result.output
    return result.output


def actions(deps) -> list[SupportAction]:
    with deps.sessions() as session:
        return list(session.execute(select(SupportAction).order_by(SupportAction.id)).scalars())


def test_order_show_prints_the_timeline_payments_and_ledger(deps, org, simulator):
    from worker.services.poll import reconcile_order

    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    out = recon("order", "show", order.id)
    assert "state created → paid" in out and "captured" in out and "5,000" in out
    assert json.loads(recon("order", "show", order.id, "--json"))["state"] == "paid"


def test_recheck_one_order_waits_and_prints_the_outcome_and_is_audited(deps, org, simulator):
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    out = recon("recheck", order.id, "--by", "support:ann", "--reason", "ticket 42")
    assert f"{order.id}: created -> paid (captured)" in out
    [action] = actions(deps)
    assert (action.action, action.requested_by, action.reason) == ("recheck", "support:ann", "ticket 42")


def test_dry_run_shows_what_the_gateway_says_and_changes_nothing(deps, org, simulator):
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    out = recon("recheck", order.id, "--dry-run", "--by", "support:ann")
    found = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert found["would_become"] == "paid" and found["would_grant"]["credits"] == 5_000
    assert found["gateway_payments"][0]["status"] == "captured"
    assert order_row(deps, order.id).state == "created" and balance(deps) == 0
    assert [a.action for a in actions(deps)] == ["recheck_dry_run"]


def test_bulk_recheck_of_old_pending_orders_shows_progress_and_a_summary(deps, org, simulator):
    from worker.clock import FrozenClock

    deps.clock = FrozenClock()
    orders = [new_order(deps, credits=1_000) for _ in range(4)]
    for order in orders[:3]:
        simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    deps.clock.advance(timedelta(hours=3))
    out = recon("recheck", "--state", "created", "--older-than", "2h", "--by", "support:bulk")
    assert "4/4" in out  # the progress bar's count
    assert "paid" in out and "│ 3 " in out.replace("3  ", "3 ")
    assert balance(deps) == 3_000


def test_inbox_replay_reprocesses_stored_webhooks_idempotently(deps, org, simulator, web, broker, worker):
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success")
    assert simulator.sim.wait_for_webhooks()
    for queue in ("recon_webhooks",):
        broker.join(queue, timeout=20_000)
    ids = [str(row.id) for row in inbox_rows(deps)]
    out = recon("inbox", "replay", *ids, "--by", "support:ann", "--reason", "secret was rotated")
    assert f"{len(ids)} stored webhooks re-enqueued" in out
    broker.join("recon_webhooks", timeout=20_000)
    assert ledger_count(deps) == 1 and {r.status for r in inbox_rows(deps)} == {"processed"}
    assert actions(deps)[-1].action == "inbox_replay"


def test_dlq_list_and_replay_bring_back_a_dead_message(deps, org, simulator, broker, worker, redis_client, actors):
    recheck_order = actors.recheck_order
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    recheck_order.send(order.id, "")  # breaks the contract: empty requested_by
    broker.join("recon_priority", timeout=20_000)
    out = recon("dlq", "list")
    assert "1 dead letters" in out and "recheck_order" in out
    namespace = NAMESPACE
    [raw] = redis_client.hvals(f"{namespace}:recon_priority.XQ.msgs")
    message_id = json.loads(raw)["message_id"]
    # the cause is "fixed" by hand here: the stored message gets a requested_by
    key = redis_client.hkeys(f"{namespace}:recon_priority.XQ.msgs")[0]
    fixed = json.loads(raw)
    fixed["args"][1] = "support:fixed"
    redis_client.hset(f"{namespace}:recon_priority.XQ.msgs", key, json.dumps(fixed))
    out = recon("dlq", "replay", message_id, "--by", "support:ann", "--reason", "requested_by was empty")
    assert "1 messages re-enqueued" in out
    broker.join("recon_priority", timeout=20_000)
    assert order_row(deps, order.id).state == "paid"
    assert redis_client.zcard(f"{namespace}:recon_priority.XQ") == 0


def test_review_resolve_needs_a_reason_and_closes_without_credit(deps, org, simulator):
    from worker.services.poll import reconcile_order

    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", currency="USD", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    assert order_row(deps, order.id).state == "needs_review"
    missing = runner.invoke(app, ["review", "resolve", order.id, "--decision", "close", "--by", "sam"])
    assert missing.exit_code != 0
    out = recon("review", "resolve", order.id, "--decision", "refund", "--reason", "paid in USD", "--by", "sam")
    assert "refund -> closed" in out
    assert balance(deps) == 0 and order_row(deps, order.id).state == "closed"
    assert actions(deps)[-1].action == "review_refund"


def test_stats_counts_orders_by_state(deps, org, simulator):
    new_order(deps)
    assert json.loads(recon("stats"))["orders_by_state"] == {"created": 1}
