"""``make demo``, the money in the bank (issue 16): a day's settlements, with one row of each bucket.

Razorpay settles the day's captured payments (the simulator, with fees and tax, refunds netted) and announces
it with ``settlement.processed``, which makes a worker pull the day's recon rows and match them. The day is
arranged so every bucket gets a row: a payment credited here, one credited but left out of the settlement,
one settled for a different amount, one whose webhooks were lost (settled, not credited: it is rechecked), a
refund made here, a dashboard refund we never heard of, and a payment that is not ours. PayGlocal's day comes
as its dashboard's CSV export, imported. The settlement report is printed at the end.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ops.embedded import Embedded
from worker.domain.money import format_major

CREDITS = 2_000


def _order(env: Embedded, org: str, admin: str) -> dict:
    return env.http.post("/orders", json={"organisation_id": org, "requested_by": admin, "plan": "payg",
                                          "refund_policy_accepted": True, "credits": CREDITS}).json()


def _paid(env: Embedded, org: str, admin: str, *, webhooks: bool = True) -> dict:
    order = _order(env, org, admin)
    paid = env.simulator.pay(order["gateway_order_id"], "success", deliver_webhooks=webhooks)
    env.drain()
    return {**order, "payment_id": paid["razorpay_payment_id"]}


def run_settlement_cases(env: Embedded, console: Console, *, org: str, admin: str, us_org: str, us_admin: str) -> bool:
    from worker.services import settlement_import, settlement_match, settlement_pull, settlement_report

    credited, missing, wrong = (_paid(env, org, admin) for _ in range(3))
    refunded, unseen_refund = _paid(env, org, admin), _paid(env, org, admin)
    lost_webhooks = _paid(env, org, admin, webhooks=False)  # charged; we have not heard yet
    env.http.post(f"/orders/{refunded['order_id']}/refunds", json={"reason": "customer asked",
                                                                  "requested_by": "support:demo"})
    env.drain()
    hook = env.simulator.set_knobs()["webhook_url"]
    env.simulator.set_knobs(webhook_url=None)  # a refund made in Razorpay's dashboard whose webhooks never come
    env.simulator.dashboard_refund(unseen_refund["payment_id"])
    env.simulator.wait_for_webhooks()
    env.simulator.set_knobs(webhook_url=hook)
    env.simulator.settlement_faults(skip_payment_ids=[missing["payment_id"]],
                                    amount_delta={wrong["payment_id"]: -500}, unknown_rows=1)
    send_recheck, asked = env.deps.recheck_now, []
    env.deps.recheck_now = asked.append  # held back until the report is printed, so the demo can show the row
    env.simulator.settle("razorpay", everything=True)  # settlement.processed → a worker pulls the day, matches
    env.drain()
    us_order = _order(env, us_org, us_admin)
    env.simulator.pay_payglocal(us_order["gateway_order_id"], "success")
    env.drain()
    env.simulator.settle("payglocal", everything=True)
    export = env.workdir / "payglocal-settlements.csv"
    export.write_text(env.simulator.payglocal_settlement_report())
    imported = settlement_import.import_report(export, "payglocal", deps=env.deps, imported_by="finance:demo")
    settlement_pull.pull_due(deps=env.deps)
    asked += settlement_match.match(deps=env.deps, recheck=None).rechecks
    env.deps.recheck_now = send_recheck
    today = env.deps.clock.now().date()
    found = settlement_report.report(deps=env.deps, start=today, end=today)  # before the recheck
    before = found.buckets
    for order_id in asked:  # what the match asked for: a support-priority recheck of each order
        send_recheck(order_id)
    env.drain()

    expected = {"settled_credited": credited["payment_id"], "credited_not_settled": missing["payment_id"],
                "amount_mismatch": wrong["payment_id"], "settled_not_credited": lost_webhooks["payment_id"],
                "deduction_reversed": refunded["order_id"], "deduction_not_reversed": unseen_refund["order_id"],
                "unmatched": None}
    table = Table(title=f"Settlements of {today}: one row of each bucket (PayGlocal: {imported.rows} rows imported "
                        f"from {export.name})")
    for column in ("bucket", "rows", "e.g.", "expected", ""):
        table.add_column(column)
    ok = True
    for bucket, wanted in expected.items():
        rows = before.get(bucket, [])
        names = {r.get("entity_id") or r.get("payment_id") for r in rows} | {r.get("order_id") for r in rows}
        hit = bool(rows) and (wanted is None or wanted in names)
        ok &= hit
        example = next((r for r in rows if wanted in (r.get("entity_id"), r.get("payment_id"), r.get("order_id"))),
                       rows[0] if rows else {})
        table.add_row(bucket, str(len(rows)), f"{example.get('entity_id') or example.get('payment_id') or '-'} "
                      f"({example.get('order_id') or 'not ours'})", wanted or "a stranger's payment",
                      "[green]ok[/]" if hit else "[red]DIFFERS[/]")
    console.print(table)
    totals = Table(title="Settlement report: totals per day and currency (`recon settlements report`)")
    for column in ("day", "gateway", "currency", "gross", "fees (tax incl.)", "tax", "refunds", "disputes", "net"):
        totals.add_column(column)
    for t in found.totals:
        totals.add_row(t.day, t.gateway, t.currency, *(format_major(v, t.currency) for v in (
            t.gross_minor, t.fees_minor, t.tax_minor, t.refunds_minor, t.disputes_minor, t.net_minor)))
    console.print(totals)
    settlement_match.match(deps=env.deps)
    after = settlement_report.report(deps=env.deps, start=today, end=today).buckets
    rechecked = lost_webhooks["payment_id"] in {r["entity_id"] for r in after["settled_credited"]}
    ok &= rechecked and lost_webhooks["order_id"] in asked
    console.print("Settled but not credited → rechecked automatically → now settled and credited: "
                  + ("[green]ok[/]" if rechecked else "[red]DIFFERS[/]"))
    return ok
