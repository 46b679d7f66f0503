"""Gateway checks of single orders, enqueued by the sweep."""

from __future__ import annotations

from worker.actors._args import recon_actor
from worker.contract import OrderArgs
from worker.deps import Deps
from worker.gateway_guard import low_priority
from worker.queues import SWEEP_QUEUE
from worker.services import poll


@recon_actor(name="check_order", queue=SWEEP_QUEUE, contract=OrderArgs, max_retries=8, min_backoff=2_000)
def check_order(message: OrderArgs, deps: Deps) -> None:
    """Poll the gateway for one order and feed the answer to the state machine (sweep priority)."""
    with low_priority():
        poll.reconcile_order(message.order_id, deps=deps)
