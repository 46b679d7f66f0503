"""``recon inbox``: stored webhooks and callbacks."""

from __future__ import annotations

from datetime import datetime

import typer

from ops.cli import bootstrap
from ops.cli.common import as_utc, console
from worker.services.support import replay_inbox

app = typer.Typer(help="Stored webhooks and callbacks.", no_args_is_help=True)


@app.command("replay")
def inbox_replay(ctx: typer.Context, inbox_ids: list[int] = typer.Argument(None, help="Inbox row ids."),
                 since: datetime = typer.Option(None, help="Received at or after (ISO time, UTC)."),
                 until: datetime = typer.Option(None, help="Received before (ISO time, UTC)."),
                 by: str = typer.Option(..., "--by", help="Who asks (audited)."),
                 reason: str = typer.Option(..., help="Why (audited).")) -> None:
    """Re-process stored webhooks by id or time range (idempotent: nothing is credited twice)."""
    if not inbox_ids and not since and not until:
        raise typer.BadParameter("give inbox ids or a --since/--until range")
    runtime = bootstrap.runtime(ctx)
    chosen = replay_inbox(deps=runtime.deps, requested_by=by, reason=reason, ids=inbox_ids or None,
                          since=as_utc(since), until=as_utc(until))
    for inbox_id in chosen:
        runtime.actors.process_inbox_event.send(inbox_id)
    console.print(f"{len(chosen)} stored webhooks re-enqueued: {chosen}")
