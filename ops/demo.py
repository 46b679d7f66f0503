"""``make demo``: every case of the top-up flow, end to end on the embedded set-up, as a table.

Each case drives the customer through the simulator, lets webhooks, callbacks, sweeps and
support rechecks do their work through the production code, then checks the order against
what the product doc promises. The exit status is non-zero if any case differs.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from ops.demo_events import run_event_cases
from ops.demo_money import run_money_cases
from ops.demo_settlements import run_settlement_cases
from ops.embedded import CONSOLE_NAME, CONSOLE_PASSWORD, Embedded, start_embedded

ORG, ADMIN, OPERATOR = "acme-in", "asha-admin", "omar-operator"
US_ORG, US_ADMIN = "acme-us", "uma-admin"
ADMINS = {ORG: ADMIN, US_ORG: US_ADMIN}
ABANDON_AFTER_S = 3


@dataclass
class Case:
    title: str
    outcome: str | None  #: the customer's action in the simulator; None for rejected requests
    expect_state: str
    expect_credits: int = 0
    plan: str = "payg"
    credits: int = 5_000
    webhooks: bool = True
    callback: bool = False
    knobs: dict = field(default_factory=dict)
    body: dict = field(default_factory=dict)  #: overrides of the order request
    amount_delta: int = 0  #: the customer pays this much more than asked
    then: str | None = None  #: "recheck" or "late_authorize" after the window closes
    org: str = ORG  #: acme-in pays through Razorpay (India), acme-us through PayGlocal
    order_id: str | None = None
    payment_id: str | None = None
    note: str = ""


CASES = [
    Case("Paid by card (callback + webhooks)", "success", "paid", 5_000, callback=True),
    Case("Card declined", "decline", "failed", then="recheck"),
    Case("Closed the window before paying", "close_window", "abandoned"),
    Case("Charged, webhook lost, found by Recheck", "success", "paid", 5_000, webhooks=False, then="recheck"),
    Case("Gateway error mid-flow", "gateway_error", "abandoned"),
    Case("Webhooks duplicated x3 and shuffled", "success", "paid", 3_000, credits=3_000,
         knobs={"webhook_duplicates": 3, "shuffle_webhooks": True}),
    Case("Bank timeout, abandoned, authorised late: we capture", "timeout", "paid", 2_000, credits=2_000,
         then="late_authorize"),
    Case("Pro subscription", "success", "paid", 0, plan="pro", credits=0),
    Case("Custom payment (no credits)", "success", "paid", 0, plan="custom", credits=0,
         body={"custom_amount_minor": 150_000}),
    Case("Paid a different amount", "success", "needs_review", 0, amount_delta=100),
    Case("PayGlocal: paid, browser callback", "success", "paid", 4_000, credits=4_000, callback=True, org=US_ORG),
    Case("PayGlocal: issuer declined", "decline", "failed", org=US_ORG, then="recheck"),
    Case("PayGlocal: closed the hosted page", "close_window", "abandoned", org=US_ORG),
    Case("PayGlocal: conditional decline, paid late", "timeout", "paid", 1_500, credits=1_500, org=US_ORG,
         then="late_authorize"),
    Case("Below the 1,000-credit minimum", None, "rejected: below_minimum", credits=999),
    Case("Enterprise plan", None, "rejected: enterprise_not_purchasable", plan="enterprise"),
    Case("An operator tries to pay", None, "rejected: not_admin", body={"requested_by": OPERATOR}),
    Case("Refund policy not accepted", None, "rejected: refund_policy_not_accepted",
         body={"refund_policy_accepted": False}),
]


def _start(env: Embedded, case: Case) -> None:
    response = env.http.post("/orders", json={
        "organisation_id": case.org, "requested_by": ADMINS[case.org], "plan": case.plan,
        "refund_policy_accepted": True, "credits": case.credits or None, **case.body})
    if case.outcome is None:
        body = response.json()
        case.note = f"HTTP {response.status_code}: {body.get('message')}"
        case.order_id = "—"
        case.payment_id = f"rejected: {body.get('error')}"
        return
    order = response.json()
    case.order_id = order["order_id"]
    env.simulator.set_knobs(**{"webhook_duplicates": 1, "shuffle_webhooks": False, **case.knobs})
    paid = env.simulator.pay(order["gateway_order_id"], case.outcome, deliver_webhooks=case.webhooks,
                                 amount_minor=order["amount_minor"] + case.amount_delta if case.amount_delta else None)
    case.payment_id = paid.get("razorpay_payment_id") or paid.get("id") or paid.get("gid")
    if case.callback:  # the checkout handler's answer, forwarded by the billing backend
        payment_id, signature = ((paid["razorpay_payment_id"], paid["razorpay_signature"]) if "gid" not in paid
                                 else (paid["gid"], paid["x-gl-token"]))
        env.http.post(f"/orders/{case.order_id}/verify", json={"payment_id": payment_id, "signature": signature})
    env.drain()


def _forged_webhook(env: Embedded) -> str:
    response = env.http.post("/webhooks/razorpay", content=b'{"event":"payment.captured"}',
                             headers={"X-Razorpay-Signature": "0" * 64, "X-Razorpay-Event-Id": "evt_forged"})
    return f"HTTP {response.status_code}, stored as inbox #{response.json()['inbox_id']}: {response.json()['reason']}"


def _sweep(env: Embedded) -> int:
    """One round of the scheduler's sweep: every order due for a check is checked at the gateway."""
    from worker.scheduler import sweep_round

    result = sweep_round(deps=env.deps, leader=env.deps.coordination.leader_lock("scheduler", ttl_s=10),
                         actors=env.actors)
    env.drain()
    return result.orders


def _bring_forward_closed_orders(env: Embedded) -> None:
    """Fast-forward: make the abandoned orders' next low-frequency check due now."""
    from sqlalchemy import update

    from db.models import Order

    with env.deps.sessions.begin() as session:
        session.execute(update(Order).where(Order.state.in_(("abandoned", "failed")), Order.next_check_at.is_not(None))
                        .values(next_check_at=env.deps.clock.now()))


def run_demo(*, keep_db: bool = False, keep_running: bool = False) -> int:
    console = Console()
    with ExitStack() as stack:
        env = start_embedded(stack, abandon_after_s=ABANDON_AFTER_S)
        console.print(f"[bold]gateway-recon demo[/]: simulator {env.simulator.base_url}, API {env.web_url}, "
                      f"SQLite + in-process broker in {env.workdir}")
        ok = run_cases(env, console)
        if keep_running:
            console.print(f"\n[bold]Support console[/]: {env.web_url}/console/ (sign in as "
                          f"[bold]{CONSOLE_NAME}[/], password [bold]{CONSOLE_PASSWORD}[/]). Ctrl-C stops the demo.")
            _wait_for_interrupt()
        if keep_db:
            console.print(f"database kept at {env.workdir}")
            input("press Enter to delete it ...")
    return 0 if ok else 1


def run_cases(env: Embedded, console: Console) -> bool:
    """Every case, on a fresh embedded stack: top-ups, money after the credit, order events; True if all match."""
    from worker.services.organisations import add_member, create_organisation

    create_organisation(ORG, "Acme Photo (India)", "IN", deps=env.deps)
    add_member(ADMIN, ORG, "asha@acme.example", "admin", deps=env.deps)
    add_member(OPERATOR, ORG, "omar@acme.example", "operator", deps=env.deps)
    create_organisation(US_ORG, "Acme Photo (US)", "US", deps=env.deps)
    add_member(US_ADMIN, US_ORG, "uma@acme.example", "admin", deps=env.deps)
    for case in CASES:
        _start(env, case)
    forged = _forged_webhook(env)
    console.print(f"waiting {ABANDON_AFTER_S}s for the payment window to close ...")
    time.sleep(ABANDON_AFTER_S + 0.5)
    swept = _finish_cases(env)
    console.print(f"the scheduler's sweep checked {swept} open orders at the gateway")
    ok = _report(console, env, forged)
    ok &= run_money_cases(env, console, org=ORG, admin=ADMIN)
    ok &= _balances(console, env)
    ok &= run_event_cases(env, console, org=ORG)
    ok &= run_settlement_cases(env, console, org=ORG, admin=ADMIN, us_org=US_ORG, us_admin=US_ADMIN)
    return ok


def _wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _finish_cases(env: Embedded) -> int:
    from worker.services.recheck import recheck_order

    for case in CASES:
        if case.then == "recheck":
            recheck_order(case.order_id, "support:demo", reason="customer asked", deps=env.deps)
    swept = _sweep(env)
    for case in CASES:
        if case.then == "late_authorize":
            env.simulator.late_authorize(case.payment_id)
    env.drain()
    _bring_forward_closed_orders(env)  # PayGlocal has no webhook for a late success: its next check finds it
    gap = max(env.deps.settings.min_poll_interval_s.values())
    print(f"waiting {gap}s: PayGlocal allows one status poll per transaction every {gap}s ...")
    time.sleep(gap)
    swept += _sweep(env)
    return swept


def _report(console: Console, env: Embedded, forged: str) -> bool:
    from worker.services.organisations import balance
    from worker.services.views import ledger_total, order_detail

    paid = Table(title="Top-ups: what happened to each order")
    for column in ("case", "gateway", "order", "state", "reason", "credits", "expected", ""):
        paid.add_column(column)
    refused = Table(title="Refused purchases (nothing stored, nothing charged)")
    for column in ("case", "answer", ""):
        refused.add_column(column)
    all_ok, totals = True, {ORG: 0, US_ORG: 0}
    for case in CASES:
        if case.outcome is None:
            ok = case.payment_id == case.expect_state
            refused.add_row(case.title, case.note, _mark(ok))
        else:
            detail = order_detail(case.order_id, deps=env.deps)
            granted = sum(entry["credits"] for entry in detail["ledger"])
            ok = detail["state"] == case.expect_state and granted == case.expect_credits
            totals[case.org] += granted
            paid.add_row(case.title, detail["gateway"], case.order_id, detail["state"], detail["state_reason"] or "",
                         f"{granted:,}", f"{case.expect_state} / {case.expect_credits:,}", _mark(ok))
        all_ok &= ok
    console.print(paid)
    console.print(refused)
    console.print(f"Forged webhook: {forged}")
    for org, expected in totals.items():
        held, ledger = balance(org, deps=env.deps), ledger_total(org, deps=env.deps)
        all_ok &= held == ledger == expected
        console.print(f"Balance of {org} after the top-ups: {held:,} credits; ledger sum {ledger:,}; expected "
                      f"{expected:,} " + _mark(held == ledger == expected))
    console.print(f"Logs (JSON lines): {env.workdir / 'recon.log'}")
    return all_ok


def _balances(console: Console, env: Embedded) -> bool:
    """After the refunds and disputes too, every balance is still its ledger's sum."""
    from worker.services.organisations import balance
    from worker.services.views import ledger_total

    ok = True
    for org in (ORG, US_ORG):
        held, ledger = balance(org, deps=env.deps), ledger_total(org, deps=env.deps)
        ok &= held == ledger
        console.print(f"Balance of {org} at the end: {held:,} credits; ledger sum {ledger:,} " + _mark(held == ledger))
    return ok


def _mark(ok: bool) -> str:
    return "[green]ok[/]" if ok else "[red]DIFFERS[/]"
