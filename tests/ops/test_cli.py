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
    assert [a.action for a in actions(deps)] == ["review_refund", "refund"]  # the decision starts the refund
    assert "refund 1 of" in out


def test_stats_counts_orders_by_state(deps, org, simulator):
    new_order(deps)
    assert json.loads(recon("stats"))["orders_by_state"] == {"created": 1}


def paid(deps, simulator, org="org-in"):
    from worker.services.poll import reconcile_order

    order = new_order(deps, org)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    return order_row(deps, order.id)


def recon_fails(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"}, obj=RUNNING["runtime"])
    assert result.exit_code == 1, result.output
    return result.output


def test_order_refund_refunds_once_and_order_show_prints_refunds_disputes_and_the_ledger(deps, org, simulator, web):
    from worker.services.inbox import process_inbox_event

    order = paid(deps, simulator)
    half = order.amount_minor // 2
    args = ("order", "refund", order.id, "--amount", str(half), "--reason", "ticket 4711: unused", "--by", "sam")
    out = recon(*args)
    assert f"{order.id}: refund 1 of 590,000 INR processed" in out and "origin support" in out
    assert "the same request as before" in recon(*args)
    assert balance(deps) == 2_500 and [a.action for a in actions(deps)] == ["refund"]
    dispute = simulator.sim.open_dispute(order.granted_payment_id, amount=half, respond_in_s=3_600)
    assert simulator.sim.wait_for_webhooks()
    for row in inbox_rows(deps, status="pending"):
        process_inbox_event(row.id, deps=deps)
    assert balance(deps) == 0  # the dispute's credits are held at onset
    out = recon("order", "show", order.id)
    assert "Refunds" in out and "rfnd_" in out and "ticket 4711: unused" in out
    assert "Disputes" in out and dispute["id"] in out and "open" in out and "chargeback" in out
    assert "reversal" in out and "-2,500" in out and "refund 1 590,000 INR (support)" in out
    shown = json.loads(recon("order", "show", order.id, "--json"))
    assert [(e["entry"], e["kind"], e["credits"]) for e in shown["ledger"]] == [
        ("grant", "credits", 5_000), ("reversal", "refund", -2_500), ("reversal", "dispute", -2_500)]
    assert (shown["disputes"][0]["state"], shown["disputes"][0]["held"]) == ("open", True)


def test_order_refund_explains_each_refusal_and_exits_non_zero(deps, org, simulator):
    unpaid = new_order(deps)
    out = recon_fails("order", "refund", unpaid.id, "--reason", "ticket 1", "--by", "sam")
    assert "refund refused (order_not_paid)" in out and "never paid" in out
    order = paid(deps, simulator)
    out = recon_fails("order", "refund", order.id, "--reason", "  ", "--by", "sam")
    assert "refund refused (reason_required)" in out and "--reason" in out
    out = recon_fails("order", "refund", order.id, "--amount", str(10**9), "--reason", "ticket 2", "--by", "sam")
    assert "refund refused (above_captured)" in out and "left to refund" in out
    out = recon_fails("order", "refund", order.id, "--key", "short", "--reason", "ticket 3", "--by", "sam")
    assert "refund refused (bad_idempotency_key)" in out
    with deps.sessions() as session:
        from db.models import Organisation

        session.get(Organisation, "org-in").credit_balance -= 4_000  # the customer used credits
        session.commit()
    out = recon_fails("order", "refund", order.id, "--reason", "ticket 4", "--by", "sam")
    assert "refund refused (credits_spent)" in out and "--override-spent" in out
    assert "refund 1 of" in recon("order", "refund", order.id, "--override-spent", "--reason", "ticket 4: goodwill",
                                  "--by", "sam")
    assert balance(deps) == 0 and [a.action for a in actions(deps)] == ["refund"]
    missing = runner.invoke(app, ["order", "refund", order.id, "--by", "sam"], obj=RUNNING["runtime"])
    assert missing.exit_code == 2 and "--reason" in missing.output  # a usage error


def test_order_refund_the_gateway_fails_says_so_and_exits_non_zero(deps, org, simulator):
    order = paid(deps, simulator)
    simulator.sim.refund_behaviour(fail_next=1)
    out = recon_fails("order", "refund", order.id, "--reason", "ticket 5", "--by", "sam")
    assert "failed" in out and "the gateway did not refund" in out
    assert balance(deps) == 5_000


def test_order_chargeback_records_a_payglocal_chargeback_once(deps, org, simulator):
    order = paid(deps, simulator, "org-us")
    args = ("order", "chargeback", order.id, "--reason", "GCC case 981", "--by", "sam")
    out = recon(*args)
    assert "chargeback chargeback_" in out and "15,000 USD lost" in out
    assert "recorded before: nothing changed" in recon(*args)
    assert balance(deps, "org-us") == 0 and [a.action for a in actions(deps)] == ["chargeback"]
    shown = json.loads(recon("order", "show", order.id, "--json"))
    assert [(d["state"], d["source"], d["phase"]) for d in shown["disputes"]] == [("lost", "support", "chargeback")]
    out = recon_fails("order", "chargeback", new_order(deps, "org-us").id, "--reason", "GCC 2", "--by", "sam")
    assert "chargeback refused (order_not_paid)" in out
