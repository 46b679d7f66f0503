"""``recon review``: orders waiting for a review decision."""

from __future__ import annotations

import typer

from ops.cli import bootstrap
from ops.cli.common import console
from worker.services.review import resolve_review

app = typer.Typer(help="Orders waiting for a review decision.", no_args_is_help=True)


@app.command("resolve")
def review_resolve(ctx: typer.Context, order_id: str, decision: str = typer.Option(..., help="credit | close | refund"),
                   reason: str = typer.Option(..., help="Mandatory: why (audited)."),
                   by: str = typer.Option(..., "--by")) -> None:
    """Resolve an order in needs_review: credit it, close it without credit, or refund the money we hold."""
    done = resolve_review(order_id, decision, reason=reason, requested_by=by, deps=bootstrap.runtime(ctx).deps)
    console.print(f"{order_id}: {decision} -> {done.state}" + (" (credited)" if done.granted else ""))
    for refund in done.refunds:
        console.print(f"  refund {refund.refund_id} of {refund.amount_minor:,} {refund.currency}: {refund.state}"
                      + (f" ({refund.failure_reason})" if refund.failure_reason else ""))
