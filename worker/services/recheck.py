"""Support's Recheck: re-query the gateway now, finalise or mark failed, and audit who asked.

Two transactions when nothing is running: take the order's check lease; then decide on the
gateway's answer, end the lease and write the audit row together. If another check of the order is
running, a recheck joins it: it waits for that check to end and reports its result instead of
asking the gateway a second time.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from gateways.errors import GatewayTransient
from worker.deps import Deps
from worker.domain.order_state import Evidence, Source
from worker.logging import get_logger
from worker.metrics import CHECKS
from worker.services.poll import follow_up, order_evidence
from worker.services.unit import UnitOfWork


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a check found and did, for callers that wait (support, billing)."""

    order_id: str
    from_state: str
    state: str
    reason: str
    gateway_payments: list[dict]


def _payments(uow: UnitOfWork, order_id: str) -> list[dict]:
    return [{"id": p.gateway_payment_id, "status": p.status, "amount_minor": p.amount_minor, "currency": p.currency}
            for p in uow.payments(order_id)]


def recheck_order(order_id: str, requested_by: str, *, deps: Deps, reason: str | None = None,
                  join_wait_s: float = 30.0) -> Outcome:
    """Check the order at the gateway now (or join the check that is running) and audit it."""
    with deps.unit() as uow:
        order = uow.order(order_id, lock=True)
        from_state, gateway_name, gateway_order_id = order.state, order.gateway, order.gateway_order_id
        leased = uow.take_lease(order, lease_s=deps.checks.lease_s)
        uow.commit()
    log = get_logger(order_id=order_id, gateway=gateway_name)
    if not leased:
        joined = _join_running_check(order_id, from_state, requested_by, reason, deps=deps, wait_s=join_wait_s)
        if joined is not None:
            return joined
        # The check holding the order did not finish: its worker may have died with the lease (a
        # redelivered message finds its own dead lease). Support still gets an answer: check now.
        log.warning("recheck_took_over_stale_check")
    try:
        # No gateway order: creation never finished, nothing can have been paid (the window closes it).
        evidence = (order_evidence(deps.gateway(gateway_name), gateway_order_id, Source.RECHECK) if gateway_order_id
                    else Evidence(Source.RECHECK, complete=True))
    except BaseException:
        with deps.unit() as uow:
            uow.release_lease(order_id)
            uow.commit()
        raise
    with deps.unit() as uow:
        order = uow.order(order_id, lock=True)
        order.check_lease_until = None
        decision = uow.apply(order, evidence)
        if not decision.capture:
            outcome = _audited(uow, order, from_state, decision.reason, requested_by, reason)
        uow.commit()
    CHECKS.labels(gateway_name, Source.RECHECK.value, "decided").inc()
    captures = bool(decision.capture)
    try:
        decision = follow_up(order_id, gateway_name, decision, Source.RECHECK, deps=deps)
    except GatewayTransient as exc:
        if captures:
            raise
        # decided and audited already; the look at a paid order's refunds waits for the next check
        log.warning("recheck_refund_look_deferred", error=str(exc))
    if captures:  # audited once the capture's outcome is known
        with deps.unit() as uow:
            outcome = _audited(uow, uow.order(order_id), from_state, decision.reason, requested_by, reason)
            uow.commit()
    log.info("order_rechecked", requested_by=requested_by, from_state=outcome.from_state, state=outcome.state)
    return outcome


def _audited(uow: UnitOfWork, order, from_state: str, decided: str, requested_by: str, reason: str | None) -> Outcome:
    payments = _payments(uow, order.id)
    outcome = Outcome(order.id, from_state, order.state, decided, payments)
    uow.audit("recheck", order_id=order.id, requested_by=requested_by, reason=reason,
              outcome={"from_state": from_state, "state": order.state, "reason": decided, "gateway_payments": payments})
    return outcome


def _join_running_check(order_id: str, from_state: str, requested_by: str, reason: str | None, *, deps: Deps,
                        wait_s: float) -> Outcome | None:
    """Wait for the running check to end and report (and audit) its result; None if it did not end."""

    def lease_released() -> bool:
        with deps.unit() as uow:
            return uow.lease_released(order_id)

    # Polled every 20 ms (one indexed read): support sees the joined check's result at most that late.
    waiting = Retrying(stop=stop_after_delay(wait_s), wait=wait_fixed(0.02),
                       retry=retry_if_result(lambda done: not done), retry_error_callback=lambda _state: False)
    if not waiting(lease_released):
        return None  # the caller takes over the check, and audits that
    with deps.unit() as uow:
        order = uow.order(order_id)
        outcome = Outcome(order_id, from_state, order.state, "joined_running_check", _payments(uow, order_id))
        uow.audit("recheck", order_id=order_id, requested_by=requested_by, reason=reason,
                  outcome={"from_state": from_state, "state": order.state, "reason": outcome.reason})
        uow.commit()
    return outcome
