"""Support commands: order timelines, rechecks (one, many, dry-run), inbox replay, dead letters,
review decisions and stats. Every command that changes something is audited with who and why."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
inbox_app = typer.Typer(help="Stored webhooks and callbacks.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter queues.", no_args_is_help=True)
review_app = typer.Typer(help="Orders waiting for a review decision.", no_args_is_help=True)

DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '2h', '1d' → timedelta."""
    match = DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 30m, 2h or 1d")
    number, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: number})


def as_utc(moment: datetime | None) -> datetime | None:
    """Times typed without a zone are UTC."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def deps():
    from ops.cli import _deps

    return _deps()


def show_order(order_id: str) -> None:
    from worker.services.views import order_detail

    detail = order_detail(order_id, deps=deps())
    console.print(f"[bold]{detail['order_id']}[/] {detail['plan']} {detail['credits']:,} credits, "
                  f"{detail['amount_minor']:,} {detail['currency']} (minor units) via {detail['gateway']} "
                  f"{detail['gateway_order_id']}: [bold]{detail['state']}[/] ({detail['state_reason'] or '-'})")
    timeline = Table("at", "what", "detail", title="Timeline")
    rows = [(e["received_at"], f"{e['kind']} {e['event_type'] or ''}", f"{e['status']}: {e['reason'] or ''}")
            for e in detail["events"]]
    rows += [(t["at"], f"state {t['from']} → {t['to']}", f"{t['reason']} (by {t['source']})")
             for t in detail["transitions"]]
    for at, what, more in sorted(rows):
        timeline.add_row(at, what, more)
    console.print(timeline)
    payments = Table("payment", "status", "amount", "failure", "flag", title="Gateway payments")
    for p in detail["payments"]:
        payments.add_row(p["payment_id"], p["status"], f"{p['amount_minor']:,} {p['currency']}",
                         p["failure_kind"] or "", p["flag_reason"] or "")
    console.print(payments)
    ledger = Table("kind", "credits", "payment", "amount", title="Ledger")
    for entry in detail["ledger"]:
        ledger.add_row(entry["kind"], f"{entry['credits']:,}", entry["payment_id"],
                       f"{entry['amount_minor']:,} {entry['currency']}")
    console.print(ledger)


def recheck(order_ids: list[str], *, by: str, reason: str | None, state: str | None, older_than: str | None,
            dry_run: bool) -> None:
    from worker.services.reconcile import recheck_order
    from worker.services.support import audit, dry_run as compare, select_orders

    current = deps()
    if state:
        order_ids = list(order_ids) + select_orders(deps=current, state=state,
                                                    older_than=parse_duration(older_than or "0s"))
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
                    found = compare(order_id, deps=current)
                    audit("recheck_dry_run", deps=current, requested_by=by, reason=reason, outcome=found,
                          order_id=order_id)
                    progress.console.print(json.dumps(found), soft_wrap=True)
                    key = f"would be {found['would_become']}"
                else:
                    outcome = recheck_order(order_id, by, reason=reason, deps=current)
                    progress.console.print(f"{order_id}: {outcome.from_state} -> {outcome.state} ({outcome.reason})")
                    key = outcome.state
            except Exception as exc:  # noqa: BLE001  (one failing order must not stop a bulk recheck)
                progress.console.print(f"{order_id}: error {type(exc).__name__}: {exc}")
                key = "error"
            outcomes[key] = outcomes.get(key, 0) + 1
            progress.advance(task)
    summary = Table("outcome", "orders", title=f"{len(order_ids)} orders")
    for key, count in sorted(outcomes.items()):
        summary.add_row(key, str(count))
    console.print(summary)


@inbox_app.command("replay")
def inbox_replay(inbox_ids: list[int] = typer.Argument(None, help="Inbox row ids."),
                 since: datetime = typer.Option(None, help="Received at or after (ISO time, UTC)."),
                 until: datetime = typer.Option(None, help="Received before (ISO time, UTC)."),
                 by: str = typer.Option(..., "--by", help="Who asks (audited)."),
                 reason: str = typer.Option(..., help="Why (audited).")) -> None:
    """Re-process stored webhooks by id or time range (idempotent: nothing is credited twice)."""
    from worker.actors import process_inbox_event
    from worker.services.support import replay_inbox

    if not inbox_ids and not since and not until:
        raise typer.BadParameter("give inbox ids or a --since/--until range")
    chosen = replay_inbox(deps=deps(), requested_by=by, reason=reason, ids=inbox_ids or None, since=as_utc(since),
                          until=as_utc(until))
    for inbox_id in chosen:
        process_inbox_event.send(inbox_id)
    console.print(f"{len(chosen)} stored webhooks re-enqueued: {chosen}")


@dlq_app.command("list")
def dlq_list() -> None:
    """Messages in the dead-letter queues, with their arguments and why they failed."""
    from worker.broker import QUEUES
    from worker.services.dead_letters import list_dead_letters

    letters = list_dead_letters(deps=deps(), queues=QUEUES)
    table = Table("queue", "message id", "actor", "arguments", "failed at", "error", title=f"{len(letters)} dead letters")
    for letter in letters:
        table.add_row(letter.queue, letter.message_id, letter.actor, json.dumps([letter.args, letter.kwargs])[:80],
                      datetime.fromtimestamp(letter.failed_at_ms / 1000).isoformat(timespec="seconds"),
                      (letter.error or "")[:60])
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(message_ids: list[str] = typer.Argument(None, help="Message ids (see `recon dlq list`)."),
               replay_all: bool = typer.Option(False, "--all", help="Every dead letter."),
               by: str = typer.Option(..., "--by"), reason: str = typer.Option(...)) -> None:
    """Enqueue dead-lettered messages again (after the cause was fixed)."""
    from worker.broker import QUEUES, broker
    from worker.services.dead_letters import list_dead_letters, replay_dead_letter
    from worker.services.support import audit

    current = deps()
    chosen = [letter for letter in list_dead_letters(deps=current, queues=QUEUES)
              if replay_all or letter.message_id in (message_ids or [])]
    for letter in chosen:
        replay_dead_letter(letter, deps=current, broker=broker)
    audit("dlq_replay", deps=current, requested_by=by, reason=reason,
          outcome={"message_ids": [letter.message_id for letter in chosen]})
    console.print(f"{len(chosen)} messages re-enqueued")


@review_app.command("resolve")
def review_resolve(order_id: str, decision: str = typer.Option(..., help="credit | close | refund"),
                   reason: str = typer.Option(..., help="Mandatory: why (audited)."),
                   by: str = typer.Option(..., "--by")) -> None:
    """Resolve an order in needs_review: credit it, close it without credit, or mark it for refund."""
    from worker.services.review import resolve_review

    done = resolve_review(order_id, decision, reason=reason, requested_by=by, deps=deps())
    console.print(f"{order_id}: {decision} -> {done.state}" + (" (credited)" if done.granted else ""))


def stats() -> None:
    from worker.services.support import stats as read_stats

    console.print(json.dumps(read_stats(deps=deps()), indent=2), soft_wrap=True)
