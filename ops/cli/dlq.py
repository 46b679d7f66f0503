"""``recon dlq``: the dead-letter queues."""

from __future__ import annotations

import json
from datetime import datetime

import typer
from rich.table import Table

from ops.cli import bootstrap
from ops.cli.common import console
from worker.queues import QUEUES
from worker.services.dead_letters import list_dead_letters, replay_dead_letter
from worker.services.support import audit

app = typer.Typer(help="The dead-letter queues.", no_args_is_help=True)


@app.command("list")
def dlq_list(ctx: typer.Context) -> None:
    """Messages in the dead-letter queues, with their arguments and why they failed."""
    letters = list_dead_letters(deps=bootstrap.runtime(ctx).deps, queues=QUEUES)
    table = Table("queue", "message id", "actor", "arguments", "failed at", "error",
                  title=f"{len(letters)} dead letters")
    for letter in letters:
        table.add_row(letter.queue, letter.message_id, letter.actor, json.dumps([letter.args, letter.kwargs])[:80],
                      datetime.fromtimestamp(letter.failed_at_ms / 1000).isoformat(timespec="seconds"),
                      (letter.error or "")[:60])
    console.print(table)


@app.command("replay")
def dlq_replay(ctx: typer.Context,
               message_ids: list[str] = typer.Argument(None, help="Message ids (see `recon dlq list`)."),
               replay_all: bool = typer.Option(False, "--all", help="Every dead letter."),
               by: str = typer.Option(..., "--by"), reason: str = typer.Option(...)) -> None:
    """Enqueue dead-lettered messages again (after the cause was fixed)."""
    runtime = bootstrap.runtime(ctx)
    chosen = [letter for letter in list_dead_letters(deps=runtime.deps, queues=QUEUES)
              if replay_all or letter.message_id in (message_ids or [])]
    for letter in chosen:
        replay_dead_letter(letter, deps=runtime.deps, broker=runtime.broker)
    audit("dlq_replay", deps=runtime.deps, requested_by=by, reason=reason,
          outcome={"message_ids": [letter.message_id for letter in chosen]})
    console.print(f"{len(chosen)} messages re-enqueued")
