"""``recon``: the command line for people (support, ops, developers). One module per subject; each
builds what it runs on through :mod:`ops.cli.bootstrap`, and none imports another's commands."""

from __future__ import annotations

import typer

from ops.cli import (
                  console_accounts,
                  db,
                  dlq,
                  events,
                  inbox,
                  orders,
                  orgs,
                  processes,
                  recheck,
                  review,
                  settlements,
                  stats,
)

app = typer.Typer(help="gateway-recon: payment callbacks, reconciliation and exactly-once crediting.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(db.app, name="db")
app.add_typer(orgs.app, name="org")
app.add_typer(orders.app, name="order")
app.add_typer(inbox.app, name="inbox")
app.add_typer(dlq.app, name="dlq")
app.add_typer(events.app, name="events")
app.add_typer(review.app, name="review")
app.add_typer(console_accounts.app, name="console")
app.add_typer(settlements.app, name="settlements")
app.command("recheck")(recheck.recheck)
app.command("stats")(stats.stats)
app.command("web")(processes.web)
app.command("scheduler")(processes.scheduler)
app.command("simulator", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    processes.simulator)
app.command("demo")(processes.demo)

__all__ = ["app"]
