"""Refunds as use cases: started by us (support, a review decision, the duplicate-payment policy), sent to
the gateway outside any lock with an idempotency key, and polled while in flight so a lost webhook is
found. Each step is its own transaction; a crash between them leaves a ``requested`` row that the poller
sends again with the same key, which the gateway answers with the same refund.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from db.models import Refund
from gateways.errors import GatewayNotFound, GatewayPermanent, GatewayTransient
from gateways.port import RemotePayment, RemoteRefund
from worker.deps import Deps
from worker.domain.refund_state import IN_FLIGHT, RefundState
from worker.logging import get_logger
from worker.services import money
from worker.services.money import RefundRefused, RefundRequest

__all__ = ["RefundOutcome", "RefundRefused", "RefundRequest", "check_refund", "refund_payments", "request_refund",
           "sync_refunds"]


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    refund_id: int
    order_id: str
    state: str
    amount_minor: int
    currency: str
    gateway_refund_id: str | None
    origin: str
    repeated: bool  #: the same request (same idempotency key) was made before: this is that refund
    failure_reason: str | None = None


def _outcome(row: Refund, *, repeated: bool = False) -> RefundOutcome:
    return RefundOutcome(row.id, row.order_id, row.state, row.amount_minor, row.currency, row.gateway_refund_id,
                         row.origin, repeated, row.failure_reason)


def request_refund(order_id: str, request: RefundRequest, *, deps: Deps) -> RefundOutcome:
    """Refund an order fully or partly, audited and idempotent; returns the refund as it stands.

    Raises:
        RefundRefused: the request breaks a rule (see :func:`worker.services.money.add_refund_request`).
        UnknownOrder: no such order.
    """
    with deps.unit() as uow:
        order = uow.order(order_id, lock=True)
        row, new = money.add_refund_request(uow.session, order, request, now=uow.now)
        if new:
            uow.audit("refund", requested_by=request.requested_by, reason=request.reason, order_id=order_id,
                      outcome={"amount_minor": row.amount_minor, "currency": row.currency, "origin": request.origin,
                               "payment_id": row.gateway_payment_id, "override_spent": request.override_spent,
                               "idempotency_key": row.idempotency_key})
        uow.commit()
        outcome = _outcome(row, repeated=not new)
    if outcome.state != RefundState.REQUESTED.value:
        return outcome
    # a repeat that finds the first still unsent sends it too (the key makes it the same refund): still a repeat
    return replace(send_refund(outcome.refund_id, deps=deps), repeated=outcome.repeated)


def send_refund(refund_id: int, *, deps: Deps) -> RefundOutcome:
    """Ask the gateway for a ``requested`` refund (again: the key makes a repeat the same refund) and
    record its answer."""
    with deps.unit() as uow:
        row = uow.session.get(Refund, refund_id)
        order = uow.order(row.order_id)
        order_id, gateway_name, payment_id, key = order.id, order.gateway, row.gateway_payment_id, row.idempotency_key
        amount, currency, full, reason = row.amount_minor, row.currency, row.full, row.reason or ""
    log = get_logger(order_id=order_id, payment_id=payment_id, gateway=gateway_name)
    try:
        remote = deps.gateway(gateway_name).create_refund(payment_id, amount_minor=amount, currency=currency, full=full,
                                                          idempotency_key=key or f"rf{refund_id:010d}", reason=reason)
    except (GatewayPermanent, GatewayNotFound) as exc:
        log.warning("refund_refused_by_gateway", error=str(exc))
        return _record(refund_id, deps, refused=str(exc))
    except GatewayTransient as exc:
        log.warning("refund_deferred", error=str(exc))
        return _record(refund_id, deps, deferred=True)
    return _record(refund_id, deps, remote=remote)


def _record(refund_id: int, deps: Deps, *, remote: RemoteRefund | None = None, refused: str | None = None,
            deferred: bool = False) -> RefundOutcome:
    with deps.unit() as uow:
        row = uow.session.get(Refund, refund_id)
        order = uow.order(row.order_id, lock=True)
        uow.session.refresh(row, with_for_update=True)
        if remote is not None:
            money.observe_refund(uow.session, order, remote, now=uow.now, policy=deps.policy, row=row)
        elif refused is not None and row.state == RefundState.REQUESTED.value:
            money.refund_refused(uow.session, order, row, refused, now=uow.now)
        if deferred or RefundState(row.state) in IN_FLIGHT:
            _look_again_later(row, uow.now)
        uow.commit()
        return _outcome(row)


def check_refund(refund_id: int, *, deps: Deps) -> RefundOutcome | None:
    """The poller's look at one refund in flight: send it if the gateway never answered, else fetch it."""
    with deps.unit() as uow:
        row = uow.session.get(Refund, refund_id)
        if row is None or RefundState(row.state) not in IN_FLIGHT:
            return None
        state, order_id, payment_id = row.state, row.order_id, row.gateway_payment_id
        unanswered = bool(row.idempotency_key) and not row.gateway_refund_id
    if state == RefundState.REQUESTED.value and unanswered:
        return send_refund(refund_id, deps=deps)
    sync_refunds(order_id, payment_id, deps=deps)
    with deps.unit() as uow:
        row = uow.session.get(Refund, refund_id, with_for_update=True)
        if RefundState(row.state) in IN_FLIGHT:
            _look_again_later(row, uow.now)
        uow.commit()
        return _outcome(row)


def _look_again_later(row: Refund, now: datetime) -> None:
    """One more look at the gateway done (or deferred): the next one backs off."""
    row.check_count += 1
    row.next_check_at = money.next_check(row.check_count, now)


def sync_refunds(order_id: str, payment_id: str, *, deps: Deps) -> int:
    """Fetch every refund of one payment from the gateway and apply each (a lost webhook, a dashboard refund
    we only see as a refunded payment). One request for Razorpay; returns how many refunds it saw."""
    with deps.unit() as uow:
        order = uow.order(order_id)
        known, gateway_name = _known(_of_payment(uow.session, order_id, payment_id)), order.gateway
    for _ in range(3):
        remotes = deps.gateway(gateway_name).fetch_refunds(payment_id, known=known)
        with deps.unit() as uow:
            order = uow.order(order_id, lock=True)
            mine = _of_payment(uow.session, order_id, payment_id)
            if _known(mine) != known:  # a refund came meanwhile: PayGlocal's answer depends on what we knew
                known = _known(mine)
                continue
            # a refund of ours the gateway has not answered yet (no gateway id) could be one it reports keyless
            unanswered = any(r.state == RefundState.REQUESTED.value and not r.gateway_refund_id for r in mine)
            for remote in remotes:
                if unanswered and remote.gateway_refund_id not in known and not remote.idempotency_key:
                    continue  # it may be ours, not yet answered (PayGlocal's refunded total): the next look tells
                money.observe_refund(uow.session, order, remote, now=uow.now, policy=deps.policy)
            uow.commit()
        return len(remotes)
    return 0  # refunds keep arriving by other paths; the next look takes up the rest


def _of_payment(session: Session, order_id: str, payment_id: str) -> list[Refund]:
    return [r for r in money.refunds_of(session, order_id) if r.gateway_payment_id == payment_id]


def _known(refunds: list[Refund]) -> tuple[str, ...]:
    return tuple(sorted(r.gateway_refund_id for r in refunds if r.gateway_refund_id))


def refund_payments(order_id: str, payments: tuple[RemotePayment, ...], *, origin: str, reason: str,
                    requested_by: str, deps: Deps) -> list[RefundOutcome]:
    """Refund each payment in full (a duplicate under the refund policy, support's review decision). An
    uncaptured authorisation is left to the gateway, which releases it by itself."""
    done = []
    for payment in payments:
        log = get_logger(order_id=order_id, payment_id=payment.gateway_payment_id)
        try:
            done.append(request_refund(order_id, RefundRequest(
                None, reason, requested_by, origin=origin, payment_id=payment.gateway_payment_id,
                idempotency_key=_payment_key(origin, payment.gateway_payment_id)), deps=deps))
        except RefundRefused as exc:
            log.warning("refund_not_started", code=exc.code, reason=exc.message)
    return done


def _payment_key(origin: str, payment_id: str) -> str:
    """One key per payment and origin: refunding the same duplicate twice is the same refund."""
    return f"{origin[:3]}{hashlib.sha256(payment_id.encode()).hexdigest()[:32]}"  # alphanumeric (PayGlocal)


#: Who starts the duplicate-payment policy's refunds, in audit rows.
DUPLICATE_POLICY = "recon:duplicate-payment-policy"


def refund_duplicates(order_id: str, decision, *, deps: Deps):
    """The duplicate-payment policy: a second captured payment on a credited order is refunded at once."""
    refund_payments(order_id, decision.refund, origin="duplicate", reason="a second payment on an order already paid",
                    requested_by=DUPLICATE_POLICY, deps=deps)
    return decision
