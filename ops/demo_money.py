"""``make demo``, after the credit: refunds and disputes of paid orders, end to end (issue 14).

Each case pays an order through the simulator, then refunds or disputes it the way it happens in
production: support asks our API for a refund, the gateway answers and sends ``refund.*`` webhooks, a
chargeback arrives as ``payment.dispute.*``. The table shows the credits each order still grants (the
sum of its ledger entries) against what the money says it should.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from ops.embedded import Embedded

CREDITS = 5_000


@dataclass
class MoneyCase:
    title: str
    act: Callable[[Embedded, dict], None]  #: what happens after the order is paid (order view → None)
    expect_credits: int  #: what the order still grants afterwards
    expect: str  #: what the refunds / disputes should show, e.g. "refund processed"
    duplicate: bool = False  #: pay twice (a failed UPI payment that completes after the order was paid)


def _refund(amount_minor: int | None = None, reason: str = "customer asked") -> Callable[[Embedded, dict], None]:
    def act(env: Embedded, order: dict) -> None:
        body = {"reason": reason, "requested_by": "support:demo", **({"amount_minor": amount_minor(order)}
                                                                     if amount_minor else {})}
        response = env.http.post(f"/orders/{order['order_id']}/refunds", json=body)
        assert response.status_code in (200, 201), response.text
    return act


def _failing_refund(env: Embedded, order: dict) -> None:
    env.simulator.refund_behaviour(fail_next=1)
    _refund()(env, order)


def _dispute(outcome: str) -> Callable[[Embedded, dict], None]:
    def act(env: Embedded, order: dict) -> None:
        dispute = env.simulator.open_dispute(order["payment_id"], respond_in_s=3 * 86_400)
        env.drain()
        env.simulator.move_dispute(dispute["id"], status=outcome)
    return act


CASES = [
    MoneyCase("Support refunds a paid order in full", _refund(), 0, "refund processed"),
    MoneyCase("Partial refund of unspent credits (2,000 of 5,000)", _refund(lambda o: o["amount_minor"] * 2 // 5),
              3_000, "refund processed"),
    MoneyCase("A refund the gateway fails", _failing_refund, CREDITS, "refund failed"),
    MoneyCase("Chargeback, won: held at onset, restored", _dispute("won"), CREDITS, "dispute won"),
    MoneyCase("Chargeback, lost: the hold stays", _dispute("lost"), 0, "dispute lost"),
    MoneyCase("Second payment on a paid order: refunded automatically", lambda env, order: None, CREDITS,
              "refund processed", duplicate=True),
]


def _paid_order(env: Embedded, org: str, admin: str, *, duplicate: bool) -> dict:
    order = env.http.post("/orders", json={"organisation_id": org, "requested_by": admin, "plan": "payg",
                                           "refund_policy_accepted": True, "credits": CREDITS}).json()
    failed = env.simulator.pay(order["gateway_order_id"], "decline") if duplicate else None
    paid = env.simulator.pay(order["gateway_order_id"], "success")
    env.drain()
    if failed is not None:  # the declined UPI payment completes after all: a second capture on a paid order
        env.simulator.upi_retry(failed.get("razorpay_payment_id") or failed["id"])
        env.drain()
    return {**order, "payment_id": paid["razorpay_payment_id"]}


def run_money_cases(env: Embedded, console: Console, *, org: str, admin: str) -> bool:
    from worker.services.views import order_detail

    table = Table(title="After the credit: refunds and chargebacks (Razorpay)")
    for column in ("case", "order", "state", "refunds / disputes", "credits left", "expected", ""):
        table.add_column(column)
    all_ok = True
    for case in CASES:
        order = _paid_order(env, org, admin, duplicate=case.duplicate)
        case.act(env, order)
        env.drain()
        detail = order_detail(order["order_id"], deps=env.deps)
        left = sum(entry["credits"] for entry in detail["ledger"])
        seen = [f"refund {r['state']}" + (f" ({r['origin']})" if r["origin"] != "support" else "")
                for r in detail["refunds"]] + [f"dispute {d['state']}" for d in detail["disputes"]]
        ok = detail["state"] == "paid" and left == case.expect_credits and any(s.startswith(case.expect) for s in seen)
        all_ok &= ok
        table.add_row(case.title, order["order_id"], detail["state"], ", ".join(seen) or "-", f"{left:,}",
                      f"{case.expect} / {case.expect_credits:,}", "[green]ok[/]" if ok else "[red]DIFFERS[/]")
    console.print(table)
    return all_ok
