"""The sweep: which orders are due for a gateway check, and which inbox rows were never processed.

Claiming happens with ``FOR UPDATE SKIP LOCKED`` and pushes each claimed order's next check past a
lease, so several schedulers (even two leaders during a hand-over) never take the same order in
one round, and an order whose check was lost is picked up again when the lease runs out.
"""

from __future__ import annotations

from datetime import timedelta

from db import queries
from worker.deps import Deps
from worker.logging import get_logger

#: Inbox rows still pending this long after they arrived are enqueued again.
STALE_INBOX_AFTER = timedelta(seconds=60)


def round_budget(deps: Deps, gateway: str) -> int:
    """Orders one round may claim for a gateway: what its sweep rate allows until the next round (×2)."""
    settings = deps.settings
    per_round = settings.gateway_rate_per_s.get(gateway, 10) * settings.sweep_share * settings.sweep_interval_s
    return max(1, min(settings.sweep_batch_max, int(per_round * 2)))


def sweep_due_orders(*, deps: Deps) -> list[str]:
    """Claim the orders due for a check, per gateway, skipping gateways whose circuit is open."""
    now = deps.clock.now()
    lease_until = now + timedelta(seconds=deps.settings.check_lease_s)
    claimed: list[str] = []
    for name, gateway in deps.gateways.items():
        if getattr(gateway, "sweep_paused", False):
            get_logger(gateway=name).warning("sweep_paused_circuit_open")
            continue
        with deps.sessions.begin() as session:
            claimed += queries.claim_due_orders(session, gateway=name, now=now, limit=round_budget(deps, name),
                                                lease_until=lease_until)
    return claimed


def requeue_stale_inbox(*, deps: Deps, limit: int = 1_000) -> list[int]:
    """Inbox rows acknowledged to the gateway but never processed (the enqueue was lost)."""
    now = deps.clock.now()
    with deps.sessions.begin() as session:
        return queries.claim_stale_inbox(session, received_before=now - STALE_INBOX_AFTER,
                                         requeued_before=now - STALE_INBOX_AFTER, now=now, limit=limit)
