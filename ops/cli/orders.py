"""``recon order``: one order's story, and support's refunds and recorded chargebacks."""

from __future__ import annotations

import json
from typing import NoReturn

import typer
from rich.table import Table

from ops.cli import bootstrap
from ops.cli.common import console
from worker.services.disputes import record_chargeback
from worker.services.refunds import RefundRefused, RefundRequest, request_refund
from worker.services.views import order_detail, timeline_rows

#: What to do about each refusal (``RefundRefused.code``), after the service's own message.
REFUSAL_HINTS = {
    "reason_required": "give the customer's case with --reason (it is audited)",
    "order_not_paid": "the order was never paid: there is no money to give back",
    "unknown_payment": "that payment is not one of this order's (see `recon order show ORDER_ID`)",
    "not_captured": "the payment was only authorised: the gateway releases it by itself, nothing to refund",
    "above_captured": "more than is left to refund: see the earlier refunds in `recon order show ORDER_ID`, "
                      "or leave out --amount to refund what is left",
    "credits_spent": "the customer already spent some of these credits: refund less (--amount), or pass "
                     "--override-spent and say why in --reason",
    "bad_idempotency_key": "--key must be 10-40 characters of A-Z a-z 0-9 _ -",
    "idempotency_key_reused": "--key was used for a different refund: repeat that request exactly, or use a new key",
}

app = typer.Typer(help="Orders.", no_args_is_help=True)


@app.command("show")
def order_show(ctx: typer.Context, order_id: str,
               as_json: bool = typer.Option(False, "--json", help="Print JSON instead.")) -> None:
    """An order's timeline: events, gateway checks, state changes, ledger entries, refunds and disputes."""
    detail = order_detail(order_id, deps=bootstrap.runtime(ctx).deps)
    if as_json:
        typer.echo(json.dumps(detail, indent=2))
        return
    console.print(f"[bold]{detail['order_id']}[/] {detail['plan']} {detail['credits']:,} credits, "
                  f"{detail['amount_minor']:,} {detail['currency']} (minor units) via {detail['gateway']} "
                  f"{detail['gateway_order_id']}: [bold]{detail['state']}[/] ({detail['state_reason'] or '-'})")
    timeline = Table("at", "what", "detail", title="Timeline")
    for at, what, more in timeline_rows(detail):
        timeline.add_row(at, what, more)
    console.print(timeline)
    payments = Table("payment", "status", "amount", "failure", "flag", title="Gateway payments")
    for p in detail["payments"]:
        payments.add_row(p["payment_id"], p["status"], f"{p['amount_minor']:,} {p['currency']}",
                         p["failure_kind"] or "", p["flag_reason"] or "")
    console.print(payments)
    ledger = Table("entry", "kind", "credits", "shortfall", "payment", "amount", "at", title="Ledger")
    for entry in detail["ledger"]:
        ledger.add_row(entry["entry"], entry["kind"], f"{entry['credits']:+,}", f"{entry['shortfall']:,}",
                       entry["payment_id"], f"{entry['amount_minor']:,} {entry['currency']}", entry["at"] or "")
    console.print(ledger)
    if detail["refunds"]:
        refunds = Table("id", "state", "amount", "payment", "gateway id", "origin", "by", "reason", title="Refunds")
        for r in detail["refunds"]:
            state = r["state"] + (f" ({r['failure_reason']})" if r["failure_reason"] else "")
            refunds.add_row(str(r["refund_id"]), state, f"{r['amount_minor']:,} {r['currency']}"
                            + (" full" if r["full"] else ""), r["payment_id"], r["gateway_refund_id"] or "-",
                            r["origin"] + (" override-spent" if r["override_spent"] else ""), r["requested_by"] or "",
                            r["reason"] or "")
        console.print(refunds)
    if detail["disputes"]:
        disputes = Table("dispute", "state", "phase", "amount", "respond by", "held", "source", title="Disputes")
        for d in detail["disputes"]:
            disputes.add_row(d["dispute_id"], d["state"], d["phase"] or "", f"{d['amount_minor']:,} {d['currency']}",
                             d["respond_by"] or "-", "yes" if d["held"] else "no", d["source"])
        console.print(disputes)


@app.command("refund")
def order_refund(ctx: typer.Context, order_id: str,
                 reason: str = typer.Option(..., help="Mandatory: why (audited)."),
                 by: str = typer.Option(..., "--by", help="Who asks (audited)."),
                 amount: int = typer.Option(None, min=1, help="Minor units (paise, cents); default: all that is left."),
                 override_spent: bool = typer.Option(False, "--override-spent",
                                                     help="Refund credits the customer already spent (say why)."),
                 key: str = typer.Option(None, help="Idempotency key: the same key repeats the same refund."),
                 payment: str = typer.Option(None, help="The gateway payment to refund (a second payment on the "
                                                        "order); default: the credited one.")) -> None:
    """Refund a paid order fully or partly at its gateway; credits are taken back once it is processed."""
    request = RefundRequest(amount, reason, by, payment_id=payment, idempotency_key=key, override_spent=override_spent)
    try:
        done = request_refund(order_id, request, deps=bootstrap.runtime(ctx).deps)
    except RefundRefused as exc:
        _refused("refund", exc)
    note = " (the same request as before: nothing new was started)" if done.repeated else ""
    console.print(f"{order_id}: refund {done.refund_id} of {done.amount_minor:,} {done.currency} {done.state}"
                  f" (gateway id {done.gateway_refund_id or '-'}, origin {done.origin}){note}")
    if done.state == "failed":
        typer.echo(f"the gateway did not refund: {done.failure_reason or 'no reason given'}", err=True)
        raise typer.Exit(1)


@app.command("chargeback")
def order_chargeback(ctx: typer.Context, order_id: str,
                     reason: str = typer.Option(..., help="Mandatory: the case (audited)."),
                     by: str = typer.Option(..., "--by", help="Who records it (audited)."),
                     amount: int = typer.Option(None, min=1, help="Minor units; default: the whole order.")) -> None:
    """Record a chargeback the gateway cannot report (PayGlocal): its credits are reversed like a lost dispute."""
    try:
        done = record_chargeback(order_id, amount_minor=amount, reason=reason, requested_by=by,
                                 deps=bootstrap.runtime(ctx).deps)
    except RefundRefused as exc:
        _refused("chargeback", exc)
    note = " (recorded before: nothing changed)" if done.repeated else ""
    console.print(f"{order_id}: chargeback {done.dispute_id} of {done.amount_minor:,} {done.currency} {done.state}"
                  f"{note}")


def _refused(what: str, exc: RefundRefused) -> NoReturn:
    hint = REFUSAL_HINTS.get(exc.code)
    typer.echo(f"{what} refused ({exc.code}): {exc.message}" + (f"\n{hint}" if hint else ""), err=True)
    raise typer.Exit(1)
