"""``recon db``: the database schema."""

from __future__ import annotations

import typer

from db.migrate import upgrade
from ops.cli import bootstrap

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(ctx: typer.Context,
               revision: str = typer.Argument("head", help="Alembic revision to upgrade to.")) -> None:
    """Apply the database migrations (RECON_DATABASE_URL)."""
    upgrade(bootstrap.settings(ctx).database_url, revision)
    typer.echo(f"database at revision {revision}")
