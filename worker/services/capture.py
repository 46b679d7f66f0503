"""Capture what the state machine asked to capture, outside any lock, then feed the result back."""

from __future__ import annotations

from gateways.errors import GatewayPermanent
from worker.deps import Deps
from worker.domain.order_state import Decision, Evidence, Source
from worker.logging import get_logger


def capture_authorized(order_id: str, gateway_name: str, decision: Decision, source: Source, *, deps: Deps) -> Decision:
    """Capture each payment ``decision.capture`` names and decide again on what the gateway answers.

    A refused capture (the window closed and the gateway refunded it, the order is already paid there)
    is answered by fetching the payment: what it is now decides. Nothing is captured on an order that
    was credited meanwhile: that money would be taken twice."""
    gateway = deps.gateway(gateway_name)
    for payment in decision.capture:
        log = get_logger(order_id=order_id, payment_id=payment.gateway_payment_id, gateway=gateway_name)
        with deps.unit() as uow:
            credited = uow.order(order_id).granted_payment_id is not None
        if credited:
            log.info("capture_skipped", reason="the order was credited meanwhile")
            break
        try:
            captured = gateway.capture(payment.gateway_payment_id, amount_minor=payment.amount_minor,
                                       currency=payment.currency)
            log.info("payment_captured")
        except GatewayPermanent as exc:
            log.warning("capture_refused", error=str(exc))
            captured = gateway.fetch_payment(payment.gateway_payment_id)
        with deps.unit() as uow:
            decision = uow.apply(uow.order(order_id, lock=True), Evidence(source, (captured,)))
            uow.commit()
    return decision
