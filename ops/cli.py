"""``recon``: the command line for people (support, ops, developers)."""

from __future__ import annotations

import json
import os
import sys

import typer

from ops import cli_support

app = typer.Typer(help="gateway-recon: payment callbacks, reconciliation and exactly-once crediting.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
org_app = typer.Typer(help="Organisations and members.", no_args_is_help=True)
order_app = typer.Typer(help="Orders.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(org_app, name="org")
app.add_typer(order_app, name="order")
app.add_typer(cli_support.inbox_app, name="inbox")
app.add_typer(cli_support.dlq_app, name="dlq")
app.add_typer(cli_support.review_app, name="review")


def _deps():
    from worker.deps import get_deps
    from worker.logging import configure_logging
    from worker.settings import get_settings

    settings = get_settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    return get_deps()


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Alembic revision to upgrade to.")) -> None:
    """Apply the database migrations (RECON_DATABASE_URL)."""
    from db.migrate import upgrade
    from worker.settings import get_settings

    upgrade(get_settings().database_url, revision)
    typer.echo(f"database at revision {revision}")


@org_app.command("create")
def org_create(org_id: str, name: str = typer.Option(..., help="Display name."),
               region: str = typer.Option(..., help="Billing region, e.g. IN.")) -> None:
    """Create an organisation (balance 0, Pay as you go)."""
    from worker.services.organisations import create_organisation

    create_organisation(org_id, name, region, deps=_deps())
    typer.echo(f"organisation {org_id} created in {region}")


@org_app.command("add-member")
def org_add_member(org_id: str, member_id: str, email: str = typer.Option(...),
                   role: str = typer.Option("admin", help="admin (may pay) or operator (may not).")) -> None:
    """Add a member to an organisation."""
    from worker.services.organisations import add_member

    add_member(member_id, org_id, email, role, deps=_deps())
    typer.echo(f"{member_id} is now {role} of {org_id}")


@order_app.command("show")
def order_show(order_id: str, as_json: bool = typer.Option(False, "--json", help="Print JSON instead.")) -> None:
    """An order's timeline: events, gateway checks, state changes and ledger entries."""
    if as_json:
        from worker.services.views import order_detail

        typer.echo(json.dumps(order_detail(order_id, deps=_deps()), indent=2))
        return
    cli_support.show_order(order_id)


@app.command("recheck")
def recheck(order_ids: list[str] = typer.Argument(None, help="Order ids."),
            by: str = typer.Option(..., "--by", help="Who asks (audited)."),
            reason: str = typer.Option(None, help="Why (audited)."),
            state: str = typer.Option(None, help="Also every order in this state (bulk)."),
            older_than: str = typer.Option(None, help="With --state: created longer ago than this (e.g. 2h)."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Compare with the gateway; change nothing.")) -> None:
    """Re-query the gateway now and finalise or mark failed; waits and prints each outcome."""
    cli_support.recheck(order_ids or [], by=by, reason=reason, state=state, older_than=older_than, dry_run=dry_run)


@app.command("stats")
def stats() -> None:
    """Orders by state, inbox by status, credits granted, oldest open order."""
    cli_support.stats()


@app.command("web")
def web(host: str = "127.0.0.1", port: int = int(os.environ.get("PORT", "8000"))) -> None:
    """Serve the HTTP API (webhooks, orders, rechecks)."""
    import uvicorn

    _deps()
    uvicorn.run("ops.web:app", host=host, port=port, log_level="warning")


@app.command("scheduler")
def scheduler() -> None:
    """Run the periodic sweep: due orders are checked at the gateway, stale inbox rows re-enqueued."""
    from worker import actors  # noqa: F401  (the broker the sweep enqueues to)
    from worker.scheduler import run_scheduler

    run_scheduler(deps=_deps())


@app.command("simulator", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def simulator(ctx: typer.Context) -> None:
    """Run the gateway simulator (flags: see `recon simulator --help-sim`)."""
    from gateways.simulator.server import main as sim_main, parse_args

    args = ["--help"] if "--help-sim" in ctx.args else ctx.args
    sim_main(**parse_args(args))


@app.command("demo")
def demo(keep_db: bool = typer.Option(False, help="Keep the SQLite file afterwards.")) -> None:
    """Run every case of the top-up flow end to end on the embedded set-up and print what happened."""
    from ops.demo import run_demo

    sys.exit(run_demo(keep_db=keep_db))


if __name__ == "__main__":
    app()
