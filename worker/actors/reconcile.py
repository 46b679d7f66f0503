"""Gateway checks of single orders, enqueued by the sweep."""

from __future__ import annotations

from worker.actors._args import recon_actor
from worker.contract import OrderArgs, RefundArgs
from worker.deps import Deps
from worker.gateway_guard import low_priority
from worker.queues import SWEEP_QUEUE
from worker.services import poll, refunds


@recon_actor(name="check_order", queue=SWEEP_QUEUE, contract=OrderArgs, max_retries=8, min_backoff=2_000)
def check_order(message: OrderArgs, deps: Deps) -> None:
    """Poll the gateway for one order and feed the answer to the state machine (sweep priority)."""
    with low_priority():
        poll.reconcile_order(message.order_id, deps=deps)


@recon_actor(name="check_refund", queue=SWEEP_QUEUE, contract=RefundArgs, max_retries=8, min_backoff=2_000)
def check_refund(message: RefundArgs, deps: Deps) -> None:
    """Look at one refund in flight at the gateway (sent again if it never answered), sweep priority."""
    with low_priority():
        refunds.check_refund(message.refund_id, deps=deps)
