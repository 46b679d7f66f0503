"""``recon org``: organisations and members."""

from __future__ import annotations

import typer

from ops.cli import bootstrap
from worker.services.organisations import add_member, create_organisation

app = typer.Typer(help="Organisations and members.", no_args_is_help=True)


@app.command("create")
def org_create(ctx: typer.Context, org_id: str, name: str = typer.Option(..., help="Display name."),
               region: str = typer.Option(..., help="Billing region, e.g. IN.")) -> None:
    """Create an organisation (balance 0, Pay as you go)."""
    create_organisation(org_id, name, region, deps=bootstrap.runtime(ctx).deps)
    typer.echo(f"organisation {org_id} created in {region}")


@app.command("add-member")
def org_add_member(ctx: typer.Context, org_id: str, member_id: str, email: str = typer.Option(...),
                   role: str = typer.Option("admin", help="admin (may pay) or operator (may not).")) -> None:
    """Add a member to an organisation."""
    add_member(member_id, org_id, email, role, deps=bootstrap.runtime(ctx).deps)
    typer.echo(f"{member_id} is now {role} of {org_id}")
