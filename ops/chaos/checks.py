"""What a chaos run must end with, measured from the database, the simulator, Redis and the logs.

:func:`measure` takes one snapshot (:class:`Tally`); :func:`settled` says whether the run may stop
draining; :func:`failures` lists what breaks a promise (money captured and not credited, credit
given twice or without money, balances that disagree with the ledger, orders left open past the
late-payment horizon, stored events never processed); :func:`render` prints the table.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, text

from ops.chaos.customers import webhook_backlog

#: ``worker.broker.QUEUES``, spelled out: importing ``worker.broker`` would build a broker from the environment.
QUEUES = ("recon_priority", "recon_webhooks", "recon_sweep")


@dataclass
class Tally:
    """One snapshot of everything the run is judged on."""

    orders: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    captured: int = 0  #: orders with a captured payment at the gateway
    credited: int = 0  #: orders with a ledger entry
    lost: list[str] = field(default_factory=list)  #: captured at the gateway, never credited
    phantom: list[str] = field(default_factory=list)  #: credited, yet nothing captured at the gateway
    double: list[str] = field(default_factory=list)  #: >1 ledger entry per order or per gateway payment
    paid_without_ledger: list[str] = field(default_factory=list)
    mismatch: list[str] = field(default_factory=list)  #: organisations whose balance != their ledger
    stuck: list[str] = field(default_factory=list)  #: open orders past the late-payment horizon
    open_in_horizon: int = 0  #: open orders still within the horizon (legitimately waiting)
    open_scheduled: int = 0  #: open orders with a gateway check still planned: the service is not done with them
    no_gateway_order: list[str] = field(default_factory=list)  #: open orders never created at the gateway
    inbox: dict[str, int] = field(default_factory=dict)
    inbox_rejected: dict[str, int] = field(default_factory=dict)  #: reasons, abridged
    dead_letters: dict[str, int] = field(default_factory=dict)  #: queue -> ZCARD of <ns>:<queue>.XQ now
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)  #: from every worker log of the run
    webhooks: dict[str, int] = field(default_factory=dict)

    @property
    def inbox_pending(self) -> int:
        return self.inbox.get("pending", 0)


def _scalars(connection, sql: str, **params) -> list:
    return list(connection.execute(text(sql), params).scalars())


def measure(engine: Engine, sim, redis_client, namespace: str, *, horizon_s: float, log_dir: Path | None = None) -> Tally:
    """Snapshot the run: gateway truth from the simulator, our truth from Postgres, dead letters from Redis/logs."""
    tally = Tally()
    with sim.razorpay.lock:  # not snapshot(): a deep copy of every entity every few seconds slows the gateway
        captured = {o["receipt"] for o in sim.razorpay.orders.values() if o["status"] == "paid"}
    cutoff = datetime.now(UTC) - timedelta(seconds=horizon_s)
    with engine.connect() as c:
        tally.by_state = dict(c.execute(text("SELECT state, count(*) FROM orders GROUP BY state")).all())
        tally.orders = sum(tally.by_state.values())
        credited = set(_scalars(c, "SELECT order_id FROM ledger_entries"))
        tally.double = _scalars(c, "SELECT order_id FROM ledger_entries GROUP BY order_id HAVING count(*) > 1") + \
            _scalars(c, "SELECT gateway_payment_id FROM ledger_entries GROUP BY gateway, gateway_payment_id "
                        "HAVING count(*) > 1")
        tally.paid_without_ledger = _scalars(c, "SELECT o.id FROM orders o WHERE o.state = 'paid' AND NOT EXISTS "
                                                "(SELECT 1 FROM ledger_entries l WHERE l.order_id = o.id)")
        tally.mismatch = _scalars(c, "SELECT g.id FROM organisations g LEFT JOIN (SELECT organisation_id, "
                                     "sum(credits) AS s FROM ledger_entries GROUP BY organisation_id) l "
                                     "ON l.organisation_id = g.id WHERE g.credit_balance <> coalesce(l.s, 0)")
        tally.stuck = _scalars(c, "SELECT id FROM orders WHERE state IN ('created', 'pending') AND created_at < :cut",
                               cut=cutoff)
        tally.open_in_horizon = c.execute(text("SELECT count(*) FROM orders WHERE state IN ('created', 'pending') "
                                               "AND created_at >= :cut"), {"cut": cutoff}).scalar_one()
        tally.open_scheduled = c.execute(text("SELECT count(*) FROM orders WHERE state IN ('created', 'pending') "
                                              "AND next_check_at IS NOT NULL")).scalar_one()
        tally.no_gateway_order = _scalars(c, "SELECT id FROM orders WHERE state IN ('created', 'pending') "
                                             "AND gateway_order_id IS NULL")
        tally.inbox = dict(c.execute(text("SELECT status, count(*) FROM inbox_events GROUP BY status")).all())
        rejected = c.execute(text("SELECT kind, left(reason, 48), count(*) FROM inbox_events "
                                  "WHERE status IN ('rejected', 'ignored') GROUP BY 1, 2")).all()
        tally.inbox_rejected = {f"{kind}: {reason}": n for kind, reason, n in rejected}
    tally.captured, tally.credited = len(captured), len(credited)
    tally.lost = sorted(captured - credited)
    tally.phantom = sorted(credited - captured)
    tally.dead_letters = {q: _zcard(redis_client, f"{namespace}:{q}.XQ") for q in QUEUES}
    if log_dir:
        tally.dead_letter_reasons = {**dead_letters_logged(log_dir), **dead_letters_held(redis_client, namespace)}
    tally.webhooks = sim.webhooks.stats() if log_dir else {"pending": webhook_backlog(sim)}  # stats(): see there
    return tally


def _zcard(client, key: str) -> int:
    try:
        return int(client.zcard(key))
    except Exception:  # noqa: BLE001  (Redis may be down mid-run; the final snapshot is taken with it up)
        return -1


def dead_letters_held(client, namespace: str) -> dict[str, int]:
    """What the dead-letter queues hold now, by queue, actor and the last line of the stored traceback."""
    found: Counter[str] = Counter()
    for queue in QUEUES:
        for key in client.zrange(f"{namespace}:{queue}.XQ", 0, -1):
            raw = client.hget(f"{namespace}:{queue}.XQ.msgs", key)
            message = json.loads(raw) if raw else {}
            error = (message.get("options", {}).get("traceback") or "no traceback").strip().splitlines()[-1][:80]
            found[f"(held) {queue}/{message.get('actor_name')}: {error}"] += 1
    return dict(found)


def dead_letters_logged(log_dir: Path) -> dict[str, int]:
    """Every ``message_dead_lettered`` line the workers wrote, by queue, actor and reason (survives a Redis restart)."""
    found: Counter[str] = Counter()
    for path in sorted(log_dir.glob("worker-*.log")):
        with path.open(errors="replace") as lines:
            for line in lines:
                if "message_dead_lettered" not in line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                detail = (event.get("detail") or "")[:80]
                found[f"{event.get('queue')}/{event.get('actor')}: {event.get('reason')} {detail}".strip()] += 1
    return dict(found)


def settled(tally: Tally) -> bool:
    """Nothing more can happen: every capture credited, no webhook on its way, no stored event waiting, no order
    within its horizon still open, and no open order with a check planned (a lagging check is not a stuck order)."""
    idle = tally.webhooks.get("pending", 0) == 0 and tally.webhooks.get("in_flight", 0) == 0
    return (idle and not tally.lost and tally.inbox_pending == 0 and tally.open_in_horizon == 0
            and tally.open_scheduled == 0)


def failures(tally: Tally) -> list[str]:
    """Broken promises, each with a few example ids; empty when the run passed."""
    checks = [("lost (captured, not credited)", tally.lost), ("double-credited", tally.double),
              ("credited without a capture", tally.phantom), ("paid without a ledger entry", tally.paid_without_ledger),
              ("balance mismatch", tally.mismatch), ("stuck past the horizon", tally.stuck)]
    found = [f"{name}: {len(ids)} e.g. {', '.join(map(str, ids[:5]))}" for name, ids in checks if ids]
    if tally.inbox_pending:
        found.append(f"inbox unprocessed: {tally.inbox_pending}")
    return found


def render(tally: Tally, run: dict, console: Console | None = None) -> None:
    """Print the run's table: the promises first, then what happened and how fast."""
    console = console or Console(width=140)
    table = Table(title=f"chaos run: {run.get('orders_driven', 0):,} orders driven", show_lines=False)
    table.add_column("measure", style="bold")
    table.add_column("value", justify="right")
    table.add_column("", style="dim")

    def bad(ids_or_count) -> str:
        n = len(ids_or_count) if isinstance(ids_or_count, list) else ids_or_count
        return f"[red]{n:,}[/red]" if n else "0"

    table.add_row("orders (database)", f"{tally.orders:,}", _fmt(tally.by_state))
    table.add_row("captured at the gateway", f"{tally.captured:,}", "simulator orders with status paid")
    table.add_row("paid here", f"{tally.by_state.get('paid', 0):,}", f"credited: {tally.credited:,}")
    table.add_row("lost (captured, not credited)", bad(tally.lost), ", ".join(tally.lost[:3]))
    table.add_row("double-credited", bad(tally.double), "per order and per gateway payment")
    table.add_row("credited without a capture", bad(tally.phantom), ", ".join(tally.phantom[:3]))
    table.add_row("paid without a ledger entry", bad(tally.paid_without_ledger), "")
    table.add_row("balance mismatch", bad(tally.mismatch), "organisations: balance != sum of ledger credits")
    table.add_row("stuck (open past the horizon)", bad(tally.stuck),
                  f"of which never created at the gateway: {len(tally.no_gateway_order)}")
    table.add_row("open within the horizon", f"{tally.open_in_horizon:,}",
                  f"legitimately waiting; open with a check planned: {tally.open_scheduled:,}")
    table.add_row("inbox unprocessed", bad(tally.inbox_pending), _fmt(tally.inbox))
    for reason, n in sorted(tally.inbox_rejected.items(), key=lambda kv: -kv[1])[:6]:
        table.add_row("  inbox rejected/ignored", f"{n:,}", reason)
    table.add_row("dead letters (XQ now)", f"{sum(max(0, n) for n in tally.dead_letters.values()):,}",
                  _fmt(tally.dead_letters))
    for reason, n in sorted(tally.dead_letter_reasons.items(), key=lambda kv: -kv[1])[:8]:
        table.add_row("  dead-lettered (logs)", f"{n:,}", reason)
    table.add_row("webhook deliveries", f"{tally.webhooks.get('deliveries', 0):,}",
                  _fmt({k: v for k, v in tally.webhooks.items() if k != "deliveries"}))
    for key, label in (("kills", "worker kills (kill -9)"), ("worker_restarts", "worker restarts"),
                       ("redis_restarts", "Redis restarts"), ("db_terminations", "DB terminations"),
                       ("unexpected_exits", "unexpected process exits"), ("fault_errors", "fault injection errors")):
        table.add_row(label, f"{run.get(key, 0)}", str(run.get(key + "_detail", ""))[:90])
    table.add_row("driver", f"{run.get('orders_driven', 0):,}", _fmt(run.get("driver", {})))
    table.add_row("drive phase", f"{run.get('drive_s', 0):.0f} s", f"{run.get('orders_per_s', 0):.1f} orders/s")
    table.add_row("drain phase", f"{run.get('drain_s', 0):.0f} s", "timed out" if run.get("drain_timed_out") else "")
    table.add_row("elapsed", f"{run.get('elapsed_s', 0):.0f} s", f"logs: {run.get('log_dir', '')}")
    console.print(table)


def _fmt(counts: dict) -> str:
    return " ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in sorted(counts.items()))
