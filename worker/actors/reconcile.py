"""Gateway checks of single orders, enqueued by the sweep."""

from __future__ import annotations

from worker.actors._args import recon_actor
from worker.broker import SWEEP_QUEUE
from worker.contract import OrderArgs
from worker.deps import get_deps
from worker.gateway_guard import low_priority
from worker.services import reconcile


@recon_actor(name="check_order", queue=SWEEP_QUEUE, contract=OrderArgs, max_retries=8, min_backoff=2_000)
def check_order(message: OrderArgs) -> None:
    """Poll the gateway for one order and feed the answer to the state machine (sweep priority)."""
    with low_priority():
        reconcile.reconcile_order(message.order_id, deps=get_deps())
