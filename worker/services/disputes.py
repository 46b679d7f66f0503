"""Disputes as use cases. Razorpay reports its disputes by webhook (applied by the inbox); PayGlocal has no
dispute API or webhook (after-capture.md §7), so support records a PayGlocal chargeback by hand: audited,
and reversed like a lost dispute."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gateways.port import DisputeStatus, RemoteDispute
from worker.deps import Deps
from worker.services import money
from worker.services.money import RefundRefused


@dataclass(frozen=True, slots=True)
class ChargebackOutcome:
    order_id: str
    dispute_id: str
    state: str
    amount_minor: int
    currency: str
    repeated: bool


def record_chargeback(order_id: str, *, amount_minor: int | None, reason: str, requested_by: str,
                      deps: Deps) -> ChargebackOutcome:
    """Record a chargeback the gateway cannot report (PayGlocal): the credits it paid for are reversed once.
    The same order, amount and reason recorded twice is one chargeback.

    Raises:
        RefundRefused: no reason, an unpaid order, or an amount above what was paid.
    """
    if not (reason or "").strip():
        raise RefundRefused("reason_required", "a chargeback needs a reason")
    with deps.unit() as uow:
        order = uow.order(order_id, lock=True)
        if deps.gateway(order.gateway).reports_disputes:  # its own dispute would reverse the same money twice
            raise RefundRefused("gateway_reports_disputes", f"{order.gateway} reports its disputes itself: they are "
                                "applied from its webhooks, not recorded by hand")
        if order.granted_payment_id is None:
            raise RefundRefused("order_not_paid", f"order {order_id} is {order.state}: nothing was paid")
        amount = order.amount_minor if amount_minor is None else amount_minor
        if not 0 < amount <= order.amount_minor:
            raise RefundRefused("above_captured", f"a chargeback of {amount} on an order of {order.amount_minor}")
        digest = hashlib.sha256(f"{order_id}|{amount}|{reason}".encode()).hexdigest()[:24]
        remote = RemoteDispute(f"chargeback_{digest}", order.granted_payment_id, amount, order.currency,
                               DisputeStatus.LOST, phase="chargeback", reason_code="recorded_by_support")
        known = {d.gateway_dispute_id for d in money.disputes_of(uow.session, order_id)}
        row = money.observe_dispute(uow.session, order, remote, now=uow.now, policy=deps.policy, source="support",
                                    reason=reason, requested_by=requested_by, kind="chargeback")
        repeated = remote.gateway_dispute_id in known
        if not repeated:
            uow.audit("chargeback", requested_by=requested_by, reason=reason, order_id=order_id,
                      outcome={"amount_minor": amount, "currency": order.currency,
                               "dispute_id": row.gateway_dispute_id})
        uow.commit()
        return ChargebackOutcome(order_id, row.gateway_dispute_id, row.state, amount, order.currency, repeated)
