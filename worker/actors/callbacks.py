"""What the billing backend and support enqueue: checkout callbacks and rechecks (priority queue)."""

from __future__ import annotations

from worker.actors._args import recon_actor
from worker.contract import RecheckOrderArgs, VerifyPaymentArgs
from worker.deps import Deps
from worker.queues import PRIORITY_QUEUE
from worker.services import callback, recheck


@recon_actor(name="verify_payment", queue=PRIORITY_QUEUE, contract=VerifyPaymentArgs)
def verify_payment(message: VerifyPaymentArgs, deps: Deps) -> None:
    """The checkout handler's callback: verify its signature, fetch the payment, decide."""
    callback.verify_payment(message.order_id, message.payment_id, message.signature, deps=deps)


@recon_actor(name="recheck_order", queue=PRIORITY_QUEUE, contract=RecheckOrderArgs, max_retries=5, max_backoff=60_000)
def recheck_order(message: RecheckOrderArgs, deps: Deps) -> None:
    """Support's Recheck: re-query the gateway, finalise or mark failed, audit who asked."""
    # Queued rechecks join a running check only briefly: after a crash the running check may be our own.
    recheck.recheck_order(message.order_id, message.requested_by, reason=message.reason, deps=deps, join_wait_s=5)
