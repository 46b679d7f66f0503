"""``recon console``: the support console's accounts."""

from __future__ import annotations

import json

import typer

from ops.console.people import PERMISSIONS, hash_password

app = typer.Typer(help="The support console's accounts.", no_args_is_help=True)


@app.command("account")
def console_account(name: str = typer.Argument(..., help="The person's name, as audits will show it."),
                    roles: list[str] = typer.Option(..., "--role", help="viewer, support or reviewer (repeat)."),
                    ) -> None:
    """Ask for a password and print the account's entry for RECON_CONSOLE_ACCOUNTS (its Argon2id hash, never the
    password itself)."""
    unknown = sorted(set(roles) - set(PERMISSIONS))
    if unknown:
        raise typer.BadParameter(f"unknown roles {unknown}: choose from {sorted(PERMISSIONS)}")
    password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < 12:
        raise typer.BadParameter("use at least 12 characters")
    typer.echo(json.dumps({name: {"roles": sorted(set(roles)), "password_hash": hash_password(password)}}))
