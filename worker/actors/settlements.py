"""Settlement reconciliation: pull what the gateways settled, then match it (enqueued by the scheduler)."""

from __future__ import annotations

from worker.actors._args import recon_actor
from worker.contract import SettlementsArgs
from worker.deps import Deps
from worker.gateway_guard import low_priority
from worker.queues import SWEEP_QUEUE
from worker.services import settlement_match, settlement_pull


@recon_actor(name="reconcile_settlements", queue=SWEEP_QUEUE, contract=SettlementsArgs, max_retries=5,
             min_backoff=10_000, time_limit=30 * 60_000)
def reconcile_settlements(message: SettlementsArgs, deps: Deps) -> None:
    """Pull every due day's settled transactions (resumable: each page is stored with its cursor), then match
    every new or still unsettled row; settled-but-not-credited orders get a recheck."""
    with low_priority():
        settlement_pull.pull_due(deps=deps)
    settlement_match.match(deps=deps, recheck=deps.recheck_now)
