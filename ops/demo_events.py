"""``make demo``, billing's side: the order events the run wrote, delivered as Standard Webhooks to a local
receiver that verifies each with the ``standardwebhooks`` library, and a page of Billing & Transactions."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from worker.services.deliveries import claim_due

if TYPE_CHECKING:
    from ops.embedded import Embedded


def run_event_cases(env: Embedded, console: Console, *, org: str) -> bool:
    """Send every order event of the run (as the scheduler does each round), then show what billing got."""
    for _ in range(5):
        pairs = claim_due(deps=env.deps)
        if not pairs:
            break
        for endpoint, order_id in pairs:
            env.actors.deliver_events.send(endpoint, order_id)
        env.drain()
    receiver = env.receiver
    events = list(receiver.events.values())
    kinds = Counter(event["type"] for event in events)
    table = Table("type", "events", title=f"Order events delivered to the billing backend ({receiver.url})")
    for kind, count in sorted(kinds.items()):
        table.add_row(kind, str(count))
    console.print(table)
    in_order = _in_order_per_order(events)
    console.print(f"{len(events)} events, every signature verified with standardwebhooks "
                  f"({receiver.refused} refused, {receiver.repeats} repeats deduped); each order's in sequence: "
                  f"{'ok' if in_order else 'NO'}")
    page = env.http.get(f"/organisations/{org}/transactions", params={"limit": 8}).json()
    rows = Table("date", "plan", "credits", "total", "gateway", "status", "recheck",
                 title=f"Billing & Transactions of {org} (GET /organisations/{org}/transactions, first page)")
    for row in page["transactions"]:
        rows.add_row(row["date"][:19], row["plan"], f"{row['credits']:,}",
                     f"{row['total_minor'] / 100:,.2f} {row['currency']}", row["gateway"], row["status"],
                     "Recheck" if row["recheck_offered"] else "")
    console.print(rows)
    return bool(events) and receiver.refused == 0 and in_order


def _in_order_per_order(events: list[dict]) -> bool:
    by_order: dict[str, list[int]] = {}
    for event in events:
        by_order.setdefault(event["data"]["order"]["id"], []).append(event["data"]["sequence"])
    return all(sequences == list(range(1, len(sequences) + 1)) for sequences in by_order.values())
