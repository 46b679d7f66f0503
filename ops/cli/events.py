"""``recon events``: order events out to the billing backend: the delivery log, dead deliveries, replay."""

from __future__ import annotations

import typer
from rich.table import Table

from ops.cli import bootstrap
from ops.cli.common import console
from worker.services import deliveries

app = typer.Typer(help="Order events delivered to the billing backend (Standard Webhooks).", no_args_is_help=True)


@app.command("list")
def events_list(ctx: typer.Context, order: str = typer.Option(None, "--order", help="One order's deliveries."),
                state: str = typer.Option(None, "--state", help="pending, delivered or dead."),
                endpoint: str = typer.Option(None, "--endpoint"), limit: int = typer.Option(100)) -> None:
    """Deliveries, newest first, with their attempts and the endpoint's last answer."""
    rows = deliveries.list_deliveries(deps=bootstrap.runtime(ctx).deps, order_id=order, state=state,
                                      endpoint=endpoint, limit=limit)
    table = Table("delivery", "endpoint", "order", "seq", "event", "type", "state", "attempts", "last answer",
                  "next attempt", title=f"{len(rows)} deliveries")
    for row in rows:
        answer = str(row.last_status or "") + (f" {row.last_error[:40]}" if row.last_error else "")
        table.add_row(str(row.delivery_id), row.endpoint, row.order_id, str(row.sequence), row.event_id, row.type,
                      row.state, str(row.attempts), answer,
                      row.next_attempt_at.isoformat(timespec="seconds") if row.next_attempt_at else "")
    console.print(table)


@app.command("dead")
def events_dead(ctx: typer.Context, limit: int = typer.Option(100)) -> None:
    """Deliveries whose attempts are spent; each holds its order's later events back until replayed."""
    events_list(ctx, order=None, state="dead", endpoint=None, limit=limit)


@app.command("replay")
def events_replay(ctx: typer.Context,
                  delivery_ids: list[int] = typer.Argument(None, help="Delivery ids (see `recon events list`)."),
                  order: str = typer.Option(None, "--order", help="Every dead delivery of one order."),
                  all_dead: bool = typer.Option(False, "--all-dead", help="Every dead delivery."),
                  again: bool = typer.Option(False, "--again", help="Delivered ones too (the same webhook-id)."),
                  by: str = typer.Option(..., "--by"), reason: str = typer.Option(...)) -> None:
    """Send deliveries again now, audited."""
    if not (delivery_ids or order or all_dead):
        raise typer.BadParameter("name delivery ids, --order or --all-dead")
    runtime = bootstrap.runtime(ctx)
    orders = deliveries.replay_audited(deps=runtime.deps, send=runtime.actors.deliver_events.send, requested_by=by,
                                       reason=reason, delivery_ids=delivery_ids or None, order_id=order, again=again)
    console.print(f"{len(orders)} order(s) queued for delivery")
