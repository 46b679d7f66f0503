"""``recon settlements``: the money in the bank against the credits we gave (pull, import, match, report)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gateways.payglocal.settlement_report import MalformedReport
from ops.cli import bootstrap
from ops.cli.common import console
from worker.domain.money import format_major
from worker.services import settlement_import, settlement_match, settlement_pull, settlement_report

app = typer.Typer(help="Settlement reconciliation: what the gateways paid into the bank.", no_args_is_help=True)


def _recheck(runtime):
    return runtime.actors.recheck_settled_order.send


@app.command("pull")
def settlements_pull(ctx: typer.Context,
                     day: datetime = typer.Option(None, formats=["%Y-%m-%d"], help="One day (default: every due day)."),
                     gateway: str = typer.Option("razorpay")) -> None:
    """Pull settled transactions from the gateway's recon API (resumable, idempotent), then match them."""
    runtime = bootstrap.runtime(ctx)
    pulled = ([settlement_pull.pull_day(gateway, day.date(), deps=runtime.deps)] if day
              else settlement_pull.pull_due(deps=runtime.deps))
    for one in pulled:
        console.print(f"{one.gateway} {one.day}: {one.rows} rows in {one.pages} pages"
                      + (" (complete)" if one.complete else ""))
    _matched(settlement_match.match(deps=runtime.deps, recheck=_recheck(runtime)))


@app.command("import")
def settlements_import(ctx: typer.Context, file: Path = typer.Argument(..., exists=True, dir_okay=False),
                       gateway: str = typer.Option(..., help="Whose report: payglocal."),
                       by: str = typer.Option(..., "--by", help="Who imports (audited).")) -> None:
    """Import a settlement report file (PayGlocal's dashboard export, mapped by its declared column mapping). A
    file with a bad row is refused whole; the same file twice is imported once."""
    runtime = bootstrap.runtime(ctx)
    size = file.stat().st_size
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(f"importing {file.name} ({size:,} bytes)", total=None)
        try:
            done = settlement_import.import_report(file, gateway, deps=runtime.deps, imported_by=by,
                                                   progress=lambda rows: progress.update(task, completed=rows))
        except (MalformedReport, LookupError) as exc:
            typer.echo(f"refused, nothing imported: {exc}", err=True)
            raise typer.Exit(1) from None
    if not done.new:
        console.print(f"{file.name} was imported before ({done.rows:,} rows, sha256 {done.sha256[:16]}): nothing added")
    else:
        held = done.rows - done.new_rows
        console.print(f"{file.name}: {done.rows:,} rows imported" + (
            f" ({held:,} of them held already, from another file or a pull: kept as first received)" if held else ""))
    _matched(settlement_match.match(deps=runtime.deps, recheck=_recheck(runtime)))


@app.command("match")
def settlements_match(ctx: typer.Context) -> None:
    """Match every new or unsettled row again (after a recheck, a refund or a dispute changed things here)."""
    runtime = bootstrap.runtime(ctx)
    _matched(settlement_match.match(deps=runtime.deps, recheck=_recheck(runtime)))


def _matched(done: settlement_match.Matched) -> None:
    console.print(f"{done.rows:,} rows matched" + (f"; rechecking {len(done.rechecks)} orders whose money settled "
                                                   f"without a credit: {done.rechecks}" if done.rechecks else ""))


@app.command("report")
def settlements_report(ctx: typer.Context,
                       start: datetime = typer.Option(None, "--from", formats=["%Y-%m-%d"], help="First day (UTC)."),
                       end: datetime = typer.Option(None, "--to", formats=["%Y-%m-%d"], help="Last day (UTC)."),
                       gateway: str = typer.Option(None), output: str = typer.Option("table", "--format",
                                                                                     help="table, csv or json."),
                       ) -> None:
    """Totals per day and currency (gross, fees, tax, refunds, disputes, net) and every bucket with its rows."""
    if output not in ("table", "csv", "json"):
        raise typer.BadParameter("--format is table, csv or json")
    runtime = bootstrap.runtime(ctx)
    last = end.date() if end else runtime.deps.clock.now().date()
    first = start.date() if start else last - timedelta(days=6)
    found = settlement_report.report(deps=runtime.deps, start=first, end=last, gateway=gateway,
                                     rows_per_bucket=None if output != "table" else 20)
    if output == "csv":
        typer.echo(settlement_report.as_csv(found), nl=False)
    elif output == "json":
        typer.echo(json.dumps(settlement_report.as_json(found), indent=2))
    else:
        _print(found, first, last)


def _print(found: settlement_report.Report, first: date, last: date) -> None:
    totals = Table("day", "gateway", "currency", "gross", "fees", "tax", "refunds", "disputes", "net", "rows",
                   title=f"Settlements {first} to {last}")
    for t in found.totals:
        totals.add_row(t.day, t.gateway, t.currency, *(format_major(v, t.currency) for v in (
            t.gross_minor, t.fees_minor, t.tax_minor, t.refunds_minor, t.disputes_minor, t.net_minor)), str(t.rows))
    console.print(totals)
    buckets = Table("bucket", "rows", "examples", title="Buckets")
    for bucket, rows in found.buckets.items():
        examples = ", ".join(f"{r.get('entity_id') or r.get('payment_id')} ({r.get('order_id') or 'no order'})"
                             for r in rows[:3])
        buckets.add_row(bucket, str(len(rows)) + ("+" if len(rows) >= 20 else ""), examples)
    console.print(buckets)
