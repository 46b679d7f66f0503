"""Poll: ask the gateway what happened to an order (or to one payment) and feed the answer to the
state machine. The sweep's checks, the follow-up of a callback, and the gateway half of a recheck.

Network I/O happens outside any row lock: read, call the gateway, then lock and decide on the row as
it is *now*, so a webhook that committed meanwhile is seen, not overwritten.
"""

from __future__ import annotations

from gateways.errors import GatewayNotFound, GatewayTransient
from gateways.port import PaymentGateway
from worker.deps import Deps
from worker.domain.order_state import Decision, Evidence, OrderState, Source
from worker.logging import get_logger
from worker.metrics import CHECKS
from worker.services import money
from worker.services.capture import capture_authorized
from worker.services.refunds import refund_duplicates, sync_refunds


def order_evidence(gateway: PaymentGateway, gateway_order_id: str, source: Source) -> Evidence:
    """Every attempt on the order as the gateway tells it now (or that it does not know the order): one
    request (:meth:`~gateways.port.PaymentGateway.fetch_attempts`)."""
    try:
        return Evidence(source, gateway.fetch_attempts(gateway_order_id), complete=True)
    except GatewayNotFound:
        return Evidence(source, order_missing=True, complete=True)


def reconcile_order(order_id: str, *, deps: Deps, source: Source = Source.POLL) -> Decision | None:
    """Fetch every attempt on the order from the gateway and decide.

    A sweep's poll (``Source.POLL``) takes the order's check lease first, so no order is checked
    twice at once, and a gateway that is down, rate-limited or circuit-broken leaves the order
    untouched for the sweep to come back to. Other sources let gateway errors propagate.
    """
    with deps.unit() as uow:
        order = uow.order(order_id, lock=True)
        gateway_name, gateway_order_id = order.gateway, order.gateway_order_id
        log = get_logger(order_id=order_id, gateway=gateway_name)
        if not gateway_order_id:
            # Creation never finished (the process died, the database went away): the customer never got a
            # checkout, so nothing can have been paid. The window closes it like any order with no attempt.
            decision = uow.apply(order, Evidence(source, complete=True))
            uow.commit()
            return decision
        if source == Source.POLL and not _may_poll(uow, order, deps=deps):
            uow.commit()
            log.info("check_skipped", reason="another check holds the order or it was polled too recently")
            CHECKS.labels(gateway_name, source.value, "skipped").inc()
            return None
        uow.commit()
    try:
        evidence = order_evidence(deps.gateway(gateway_name), gateway_order_id, source)
    except GatewayTransient as exc:
        if source != Source.POLL:
            raise
        with deps.unit() as uow:
            uow.release_lease(order_id)
            uow.commit()
        log.warning("check_deferred", error=str(exc), error_type=type(exc).__name__)
        CHECKS.labels(gateway_name, source.value, "deferred").inc()
        return None
    decision = decide_checked(order_id, evidence, deps=deps)
    CHECKS.labels(gateway_name, source.value, "decided").inc()
    return follow_up(order_id, gateway_name, decision, source, deps=deps)


def decide_checked(order_id: str, evidence: Evidence, *, deps: Deps) -> Decision:
    """Decide on what a check found and end the check (its lease)."""
    with deps.unit() as uow:
        order = uow.order(order_id, lock=True)
        order.check_lease_until = None
        decision = uow.apply(order, evidence)
        uow.commit()
    return decision


def check_payment(order_id: str, gateway_payment_id: str, source: Source, *, deps: Deps) -> Decision:
    """Fetch one payment a callback named and decide (then capture it if asked). A valid callback proves
    it came from the gateway, not that money was captured: the payment is always fetched first."""
    with deps.unit() as uow:
        gateway_name = uow.order(order_id).gateway
    payment = deps.gateway(gateway_name).fetch_payment(gateway_payment_id)
    decision = decide_checked(order_id, Evidence(source, (payment,)), deps=deps)
    return follow_up(order_id, gateway_name, decision, source, deps=deps)


def follow_up(order_id: str, gateway_name: str, decision: Decision, source: Source, *, deps: Deps) -> Decision:
    """What a decision asks for outside the lock: a capture, the duplicate-payment policy's refunds, and a
    look at the refunds of a credited payment the gateway shows refunded beyond what we know of."""
    if decision.capture:
        return capture_authorized(order_id, gateway_name, decision, source, deps=deps)
    if decision.refund:
        return refund_duplicates(order_id, decision, deps=deps)
    if decision.from_state == OrderState.PAID:  # only an order credited before this check has refunds to explain
        for payment_id in unexplained_refunds(order_id, deps=deps):
            sync_refunds(order_id, payment_id, deps=deps)
    return decision


def unexplained_refunds(order_id: str, *, deps: Deps) -> list[str]:
    """Credited payments the gateway shows refunded by more than the processed refunds we hold (a refund made
    in the dashboard; PayGlocal tells of refunds only through the payment's status)."""
    with deps.unit() as uow:
        order = uow.order(order_id)
        if order.granted_payment_id is None:
            return []
        known = money.refunded_minor(uow.session, order)
        shown = [p.amount_refunded_minor or 0 for p in uow.payments(order_id)
                 if p.gateway_payment_id == order.granted_payment_id]
        return [order.granted_payment_id] if shown and shown[0] > known else []


def _may_poll(uow, order, *, deps: Deps) -> bool:
    """Whether the gateway allows another poll now and no other check holds the order; if polled too
    recently, the next check is set for as soon as the gateway allows, not a lease later."""
    min_gap = deps.checks.min_gap(order.gateway)
    if order.last_checked_at is not None and uow.now - order.last_checked_at < min_gap:
        if order.next_check_at is not None:  # a paid or finished order has no check planned: none is added
            order.next_check_at = order.last_checked_at + min_gap
        return False
    return uow.take_lease(order, lease_s=deps.checks.lease_s)
