"""Ask the gateway what happened and feed the answer to the state machine.

Used by the sweep (poll), by support (recheck) and by stored callbacks (:func:`check_payment`).
Network I/O happens outside any row lock: read, call the gateway, then lock and decide on the
row as it is *now*, so a webhook that committed meanwhile is seen, not overwritten.
"""

from __future__ import annotations

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed
from dataclasses import dataclass
from datetime import timedelta

from db import queries
from db.models import Order, SupportAction
from gateways.errors import GatewayNotFound, GatewayPermanent, GatewayTransient
from worker.deps import Deps
from worker.domain.errors import UnknownOrder
from worker.domain.order_state import Decision, Evidence, Source
from worker.logging import get_logger
from worker.metrics import CHECKS
from worker.services.apply import apply_evidence


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a check found and did, for callers that wait (support, billing)."""

    order_id: str
    from_state: str
    state: str
    reason: str
    gateway_payments: list[dict]


def _load(order_id: str, *, deps: Deps) -> Order:
    with deps.sessions() as session:
        order = queries.get_order(session, order_id)
    if order is None:
        raise UnknownOrder(f"no order {order_id!r}")
    return order


def _decide(order_id: str, evidence: Evidence, *, deps: Deps) -> Decision:
    with deps.sessions.begin() as session:
        order = queries.get_order(session, order_id, lock=True)
        order.check_lease_until = None
        return apply_evidence(session, order, evidence, now=deps.clock.now(), policy=deps.policy,
                              schedule=deps.schedule)


def capture_authorized(order_id: str, gateway_name: str, decision: Decision, source: Source, *, deps: Deps) -> Decision:
    """Capture what the state machine asked to capture (outside any lock), then feed the result back.

    A refused capture (the window closed and the gateway refunded it, the order is already paid there)
    is answered by fetching the payment: what it is now decides. Nothing is captured on an order that
    was credited meanwhile."""
    gateway = deps.gateway(gateway_name)
    for payment in decision.capture:
        log = get_logger(order_id=order_id, payment_id=payment.gateway_payment_id, gateway=gateway_name)
        if _load(order_id, deps=deps).granted_payment_id is not None:
            log.info("capture_skipped", reason="the order was credited meanwhile")
            break
        try:
            captured = gateway.capture(payment.gateway_payment_id, amount_minor=payment.amount_minor,
                                       currency=payment.currency)
            log.info("payment_captured")
        except GatewayPermanent as exc:
            log.warning("capture_refused", error=str(exc))
            captured = gateway.fetch_payment(payment.gateway_payment_id)
        decision = _decide(order_id, Evidence(source, (captured,)), deps=deps)
    return decision


def check_payment(order_id: str, gateway_payment_id: str, source: Source, *, deps: Deps) -> Decision:
    """Fetch one payment a callback named and decide (then capture it if asked). A valid callback proves
    it came from the gateway, not that money was captured: the payment is always fetched first."""
    order = _load(order_id, deps=deps)
    payment = deps.gateway(order.gateway).fetch_payment(gateway_payment_id)
    decision = _decide(order_id, Evidence(source, (payment,)), deps=deps)
    return capture_authorized(order_id, order.gateway, decision, source, deps=deps) if decision.capture else decision


def reconcile_order(order_id: str, *, deps: Deps, source: Source = Source.POLL) -> Decision | None:
    """Fetch every attempt on the order from the gateway and decide.

    A sweep's poll (``Source.POLL``) takes the order's check lease first, so no order is checked
    twice at once, and a gateway that is down, rate-limited or circuit-broken leaves the order
    untouched for the sweep to come back to. Support's recheck lets gateway errors propagate.
    """
    order = _load(order_id, deps=deps)
    log = get_logger(order_id=order_id, gateway=order.gateway)
    if not order.gateway_order_id:
        # Creation never finished (the process died, the database went away): the customer never got a
        # checkout, so nothing can have been paid. The window closes it like any order with no attempt.
        return _decide(order_id, Evidence(source, complete=True), deps=deps)
    if source == Source.POLL and not _may_poll(order, deps=deps):
        log.info("check_skipped", reason="another check holds the order or it was polled too recently")
        CHECKS.labels(order.gateway, source.value, "skipped").inc()
        return None
    gateway = deps.gateway(order.gateway)
    try:
        remote = gateway.fetch_order(order.gateway_order_id)
        evidence = Evidence(source, remote.payments, complete=True)
    except GatewayNotFound:
        evidence = Evidence(source, order_missing=True, complete=True)
    except GatewayTransient as exc:
        if source != Source.POLL:
            raise
        _release(order_id, deps=deps)
        log.warning("check_deferred", error=str(exc), error_type=type(exc).__name__)
        CHECKS.labels(order.gateway, source.value, "deferred").inc()
        return None
    decision = _decide(order_id, evidence, deps=deps)
    CHECKS.labels(order.gateway, source.value, "decided").inc()
    return capture_authorized(order_id, order.gateway, decision, source, deps=deps) if decision.capture else decision


def _may_poll(order: Order, *, deps: Deps) -> bool:
    now = deps.clock.now()
    min_gap = timedelta(seconds=deps.settings.min_poll_interval_s.get(order.gateway, 0))
    if order.last_checked_at is not None and now - order.last_checked_at < min_gap:
        with deps.sessions.begin() as session:  # come back as soon as the gateway allows, not a lease later
            session.get(Order, order.id).next_check_at = order.last_checked_at + min_gap
        return False
    with deps.sessions.begin() as session:
        return queries.take_check_lease(session, order.id, now=now,
                                        until=now + timedelta(seconds=deps.settings.check_lease_s))


def _release(order_id: str, *, deps: Deps) -> None:
    with deps.sessions.begin() as session:
        queries.release_check_lease(session, order_id)


def recheck_order(order_id: str, requested_by: str, *, deps: Deps, reason: str | None = None,
                  join_wait_s: float = 30.0) -> Outcome:
    """Support's Recheck: re-query the gateway now, finalise or mark failed, and audit who asked.

    If another check of the order is running, this one joins it: it waits for that check to end
    and reports its result instead of asking the gateway a second time.
    """
    before = _load(order_id, deps=deps)
    now = deps.clock.now()
    with deps.sessions.begin() as session:
        leased = queries.take_check_lease(session, order_id, now=now,
                                          until=now + timedelta(seconds=deps.settings.check_lease_s))
    if not leased:
        joined = _join_running_check(before, requested_by, reason, deps=deps, wait_s=join_wait_s)
        if joined.reason == "joined_running_check":
            return joined
        # The check holding the order did not finish: its worker may have died with the lease (a
        # redelivered message finds its own dead lease). Support still gets an answer: check now.
        get_logger(order_id=order_id, gateway=before.gateway).warning("recheck_took_over_stale_check")
    try:
        decision = reconcile_order(order_id, deps=deps, source=Source.RECHECK)
    finally:
        _release(order_id, deps=deps)
    with deps.sessions.begin() as session:
        payments = [{"id": p.gateway_payment_id, "status": p.status, "amount_minor": p.amount_minor,
                     "currency": p.currency} for p in queries.payments_of(session, order_id)]
        after = queries.get_order(session, order_id)
        outcome = Outcome(order_id, before.state, after.state, decision.reason if decision else "no_gateway_order",
                          payments)
        session.add(SupportAction(order_id=order_id, action="recheck", requested_by=requested_by, reason=reason,
                                  outcome={"from_state": outcome.from_state, "state": outcome.state,
                                           "reason": outcome.reason, "gateway_payments": payments},
                                  created_at=deps.clock.now()))
    get_logger(order_id=order_id, gateway=before.gateway).info("order_rechecked", requested_by=requested_by,
                                                                 from_state=outcome.from_state, state=outcome.state)
    return outcome


def _join_running_check(before: Order, requested_by: str, reason: str | None, *, deps: Deps,
                        wait_s: float) -> Outcome:
    def lease_released() -> bool:
        with deps.sessions() as session:
            return queries.get_order(session, before.id).check_lease_until is None

    waiting = Retrying(stop=stop_after_delay(wait_s), wait=wait_fixed(0.1), retry=retry_if_result(lambda done: not done),
                       retry_error_callback=lambda _state: False)
    finished = waiting(lease_released)
    with deps.sessions.begin() as session:
        after = queries.get_order(session, before.id)
        outcome = Outcome(before.id, before.state, after.state,
                          "joined_running_check" if finished else "running_check_still_busy",
                          [{"id": p.gateway_payment_id, "status": p.status, "amount_minor": p.amount_minor,
                            "currency": p.currency} for p in queries.payments_of(session, before.id)])
        if finished:  # otherwise the caller takes over the check, and audits that
            session.add(SupportAction(order_id=before.id, action="recheck", requested_by=requested_by, reason=reason,
                                      outcome={"from_state": before.state, "state": after.state,
                                               "reason": outcome.reason}, created_at=deps.clock.now()))
    return outcome
