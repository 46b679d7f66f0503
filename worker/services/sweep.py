"""The sweep: which orders are due for a gateway check, and which inbox rows were never processed.

Claiming happens with ``FOR UPDATE SKIP LOCKED`` and pushes each claimed order's next check past a
lease, so several schedulers (even two leaders during a hand-over) never take the same order in
one round, and an order whose check was lost is picked up again when the lease runs out.
"""

from __future__ import annotations

from datetime import timedelta

from worker.deps import Deps
from worker.logging import get_logger

#: Inbox rows still pending this long after they arrived are enqueued again.
STALE_INBOX_AFTER = timedelta(seconds=60)


def round_budget(deps: Deps, gateway: str) -> int:
    """Orders one round may claim for a gateway (:meth:`worker.deps.SweepRules.round_budget`)."""
    return deps.sweep.round_budget(gateway)


def sweep_due_orders(*, deps: Deps) -> list[str]:
    """Claim the orders due for a check, per gateway, skipping gateways whose circuit is open."""
    claimed: list[str] = []
    for name, gateway in deps.gateways.items():
        if getattr(gateway, "sweep_paused", False):
            get_logger(gateway=name).warning("sweep_paused_circuit_open")
            continue
        with deps.unit() as uow:
            claimed += uow.claim_due(name, limit=round_budget(deps, name), lease_s=deps.checks.lease_s)
            uow.commit()
    return claimed


def requeue_stale_inbox(*, deps: Deps, limit: int = 1_000) -> list[int]:
    """Inbox rows acknowledged to the gateway but never processed (the enqueue was lost)."""
    with deps.unit() as uow:
        claimed = uow.requeue_stale_inbox(older_than=STALE_INBOX_AFTER, limit=limit)
        uow.commit()
    return claimed


def sweep_due_refunds(*, deps: Deps, limit: int = 200) -> list[int]:
    """Refunds in flight whose next look at the gateway is due (a lost ``refund.processed`` is found here)."""
    with deps.unit() as uow:
        claimed = uow.claim_due_refunds(limit=limit, lease_s=deps.checks.lease_s)
        uow.commit()
    return claimed
