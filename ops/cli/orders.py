"""``recon order``: one order's story."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from ops.cli import bootstrap
from ops.cli.common import console
from worker.services.views import order_detail

app = typer.Typer(help="Orders.", no_args_is_help=True)


@app.command("show")
def order_show(ctx: typer.Context, order_id: str,
               as_json: bool = typer.Option(False, "--json", help="Print JSON instead.")) -> None:
    """An order's timeline: events, gateway checks, state changes and ledger entries."""
    detail = order_detail(order_id, deps=bootstrap.runtime(ctx).deps)
    if as_json:
        typer.echo(json.dumps(detail, indent=2))
        return
    console.print(f"[bold]{detail['order_id']}[/] {detail['plan']} {detail['credits']:,} credits, "
                  f"{detail['amount_minor']:,} {detail['currency']} (minor units) via {detail['gateway']} "
                  f"{detail['gateway_order_id']}: [bold]{detail['state']}[/] ({detail['state_reason'] or '-'})")
    timeline = Table("at", "what", "detail", title="Timeline")
    rows = [(e["received_at"], f"{e['kind']} {e['event_type'] or ''}", f"{e['status']}: {e['reason'] or ''}")
            for e in detail["events"]]
    rows += [(t["at"], f"state {t['from']} → {t['to']}", f"{t['reason']} (by {t['source']})")
             for t in detail["transitions"]]
    for at, what, more in sorted(rows):
        timeline.add_row(at, what, more)
    console.print(timeline)
    payments = Table("payment", "status", "amount", "failure", "flag", title="Gateway payments")
    for p in detail["payments"]:
        payments.add_row(p["payment_id"], p["status"], f"{p['amount_minor']:,} {p['currency']}",
                         p["failure_kind"] or "", p["flag_reason"] or "")
    console.print(payments)
    ledger = Table("kind", "credits", "payment", "amount", title="Ledger")
    for entry in detail["ledger"]:
        ledger.add_row(entry["kind"], f"{entry['credits']:,}", entry["payment_id"],
                       f"{entry['amount_minor']:,} {entry['currency']}")
    console.print(ledger)
