"""A refund's own small lifecycle, and how many credits it takes back. Pure: no I/O, no clock.

Lifecycle::

    requested ──► pending ──► processed   (credits reversed here, once)
        │            │
        │            └──────► failed      (nothing reversed; the money stayed with us)
        └───────────────────► failed      (the gateway refused to start it)

``requested`` is ours alone: we wrote the row and have not heard back from the gateway yet (a crash or a
timeout there is retried with the same idempotency key, so it becomes the same refund). ``processed`` is
final: a refund "cannot be canceled or reversed" (after-capture.md §2.2). ``failed`` may still turn
``processed`` (a stale ``failed`` snapshot, or a failure the gateway later reports done); the reverse never
happens, so a late ``failed`` webhook cannot undo a processed refund.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateways.port import RefundStatus


class RefundState(StrEnum):
    REQUESTED = "requested"  #: we asked (or are about to ask); no gateway answer yet
    PENDING = "pending"  #: the gateway is working on it: nothing reversed yet
    PROCESSED = "processed"  #: money went back: credits reversed
    FAILED = "failed"  #: not refunded: nothing reversed


#: What may follow what. PROCESSED is final; FAILED only to PROCESSED.
ALLOWED: dict[RefundState, frozenset[RefundState]] = {
    RefundState.REQUESTED: frozenset({RefundState.PENDING, RefundState.PROCESSED, RefundState.FAILED}),
    RefundState.PENDING: frozenset({RefundState.PROCESSED, RefundState.FAILED}),
    RefundState.FAILED: frozenset({RefundState.PROCESSED}),
    RefundState.PROCESSED: frozenset(),
}

#: In flight: the poller keeps asking the gateway about these.
IN_FLIGHT = frozenset({RefundState.REQUESTED, RefundState.PENDING})


def observed(status: RefundStatus) -> RefundState:
    """The gateway's word as our state. An unknown status is never "done": it stays pending."""
    return {RefundStatus.PROCESSED: RefundState.PROCESSED, RefundStatus.FAILED: RefundState.FAILED}.get(
        status, RefundState.PENDING)


@dataclass(frozen=True, slots=True)
class RefundMove:
    from_state: RefundState
    to_state: RefundState
    reverse_credits: bool  #: True exactly once per refund: when it first becomes processed

    @property
    def changed(self) -> bool:
        return self.to_state != self.from_state


def decide_refund(current: RefundState, status: RefundStatus) -> RefundMove:
    """The refund's next state given what the gateway says now. A stale or backward answer is a no-op."""
    target = observed(status)
    if target == current or target not in ALLOWED[current]:
        return RefundMove(current, current, reverse_credits=False)
    return RefundMove(current, target, reverse_credits=target == RefundState.PROCESSED)


def credits_for(amount_minor: int, *, order_amount_minor: int, order_credits: int) -> int:
    """The credits a refund of ``amount_minor`` pays back: the order's credits in proportion to the money
    (tax included), rounded down, so a series of partial refunds never takes back more than was granted
    (the last one is capped by what is left, see :func:`worker.domain.ledger.clawback`)."""
    if order_amount_minor <= 0 or amount_minor <= 0:
        return 0
    if amount_minor >= order_amount_minor:
        return order_credits
    return order_credits * amount_minor // order_amount_minor


def amount_for_credits(credits: int, *, order_amount_minor: int, order_credits: int) -> int:
    """The money that ``credits`` of the order are worth (the refund of unspent credits), rounded down."""
    if order_credits <= 0 or credits <= 0:
        return 0
    if credits >= order_credits:
        return order_amount_minor
    return order_amount_minor * credits // order_credits
