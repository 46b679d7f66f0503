"""Settlement reconciliation: pull what the gateways settled, then match it (enqueued by the scheduler)."""

from __future__ import annotations

from worker.actors._args import recon_actor
from worker.contract import OrderArgs, SettlementsArgs
from worker.deps import Deps
from worker.gateway_guard import low_priority
from worker.queues import PRIORITY_QUEUE, SWEEP_QUEUE
from worker.services import recheck, settlement_match, settlement_pull

REQUESTED_BY = "settlement-recon"
REASON = "the gateway settled money for this order that was not credited"


@recon_actor(name="reconcile_settlements", queue=SWEEP_QUEUE, contract=SettlementsArgs, max_retries=5,
             min_backoff=10_000, time_limit=30 * 60_000)
def reconcile_settlements(message: SettlementsArgs, deps: Deps) -> None:
    """Pull every due day's settled transactions (resumable: each page is stored with its cursor), then match
    every new or still unsettled row; settled-but-not-credited orders get a recheck."""
    try:
        with low_priority():
            settlement_pull.pull_due(deps=deps)
    finally:  # what was pulled before a failure is matched all the same
        settlement_match.match(deps=deps, recheck=deps.recheck_now)


@recon_actor(name="recheck_settled_order", queue=PRIORITY_QUEUE, contract=OrderArgs, max_retries=8,
             min_backoff=2_000)
def recheck_settled_order(message: OrderArgs, deps: Deps) -> None:
    """Money settled for an order we did not credit: recheck it now (audited as the settlement
    reconciliation's), then match again, so a row the recheck credited leaves the paging bucket at once."""
    recheck.recheck_order(message.order_id, REQUESTED_BY, reason=REASON, deps=deps, join_wait_s=5)
    settlement_match.match(deps=deps, recheck=deps.recheck_now)
