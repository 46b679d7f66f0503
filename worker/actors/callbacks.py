"""What the billing backend and support enqueue: checkout callbacks and rechecks (priority queue)."""

from __future__ import annotations

from worker.actors._args import recon_actor
from worker.broker import PRIORITY_QUEUE
from worker.contract import RecheckOrderArgs, VerifyPaymentArgs
from worker.deps import get_deps
from worker.services import callbacks, reconcile


@recon_actor(name="verify_payment", queue=PRIORITY_QUEUE, contract=VerifyPaymentArgs)
def verify_payment(message: VerifyPaymentArgs) -> None:
    """The checkout handler's callback: verify its signature, fetch the payment, decide."""
    callbacks.verify_payment(message.order_id, message.payment_id, message.signature, deps=get_deps())


@recon_actor(name="recheck_order", queue=PRIORITY_QUEUE, contract=RecheckOrderArgs, max_retries=5, max_backoff=60_000)
def recheck_order(message: RecheckOrderArgs) -> None:
    """Support's Recheck: re-query the gateway, finalise or mark failed, audit who asked."""
    # Queued rechecks join a running check only briefly: after a crash the running check may be our own.
    reconcile.recheck_order(message.order_id, message.requested_by, reason=message.reason, deps=get_deps(),
                            join_wait_s=5)
