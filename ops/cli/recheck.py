"""``recon recheck``: re-query the gateway for one order or many (or compare only), audited."""

from __future__ import annotations

import json

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ops.cli import bootstrap
from ops.cli.common import console, parse_duration
from worker.services.recheck import recheck_order
from worker.services.support import audit, select_orders
from worker.services.support import dry_run as compare


def recheck(ctx: typer.Context, order_ids: list[str] = typer.Argument(None, help="Order ids."),
            by: str = typer.Option(..., "--by", help="Who asks (audited)."),
            reason: str = typer.Option(None, help="Why (audited)."),
            state: str = typer.Option(None, help="Also every order in this state (bulk)."),
            older_than: str = typer.Option(None, help="With --state: created longer ago than this (e.g. 2h)."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Compare with the gateway; change nothing.")) -> None:
    """Re-query the gateway now and finalise or mark failed; waits and prints each outcome."""
    deps = bootstrap.runtime(ctx).deps
    order_ids = list(order_ids or [])
    if state:
        order_ids += select_orders(deps=deps, state=state, older_than=parse_duration(older_than or "0s"))
    if not order_ids:
        console.print("no orders to recheck")
        return
    outcomes: dict[str, int] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=len(order_ids) == 1) as progress:
        task = progress.add_task("rechecking" if not dry_run else "comparing", total=len(order_ids))
        for order_id in order_ids:
            try:
                if dry_run:
                    found = compare(order_id, deps=deps)
                    audit("recheck_dry_run", deps=deps, requested_by=by, reason=reason, outcome=found,
                          order_id=order_id)
                    progress.console.print(json.dumps(found), soft_wrap=True)
                    key = f"would be {found['would_become']}"
                else:
                    outcome = recheck_order(order_id, by, reason=reason, deps=deps)
                    progress.console.print(f"{order_id}: {outcome.from_state} -> {outcome.state} ({outcome.reason})")
                    key = outcome.state
            except Exception as exc:  # noqa: BLE001  (one order's error is reported, the batch goes on)
                progress.console.print(f"{order_id}: error {type(exc).__name__}: {exc}")
                key = "error"
            outcomes[key] = outcomes.get(key, 0) + 1
            progress.advance(task)
    summary = Table("outcome", "orders", title=f"{len(order_ids)} orders")
    for key, count in sorted(outcomes.items()):
        summary.add_row(key, str(count))
    console.print(summary)
