"""Money after the credit, inside the caller's transaction (the order's row is locked by the caller):
refund requests, what the gateway says of refunds and disputes, and the reversals they cause.

The pure lifecycles decide (:mod:`worker.domain.refund_state`, :mod:`worker.domain.dispute_state`);
this module records their moves and asks :mod:`worker.services.credit` (the only ledger writer) to
reverse or restore, once per money event.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from db.models import Dispute, GatewayPayment, Order, Organisation, Refund
from gateways.port import DisputeStatus, RemoteDispute, RemoteRefund, RemoteStatus
from worker.domain.dispute_state import FINAL as DISPUTE_FINAL
from worker.domain.dispute_state import DisputeState, decide_dispute
from worker.domain.dispute_state import observed as observed_dispute
from worker.domain.errors import ReconError
from worker.domain.events import FOR_DISPUTE, EventType, refund_event
from worker.domain.order_state import Plan, Policy
from worker.domain.refund_state import IN_FLIGHT, RefundState, amount_for_credits, credits_for, decide_refund
from worker.logging import get_logger
from worker.metrics import CREDIT_SHORTFALL, CREDITS_RESTORED, CREDITS_REVERSED, DISPUTES, REFUNDS
from worker.services import credit, outbox

#: Razorpay's ``X-Refund-Idempotency`` rule (after-capture.md §2.1); PayGlocal's ``merchantTxnId`` fits it too.
KEY = re.compile(r"^[A-Za-z0-9_-]{10,40}$")
#: Refunds in flight are asked about again after 1, 2, 4 … minutes, at most every 6 hours.
FIRST_CHECK, MAX_GAP = timedelta(minutes=1), timedelta(hours=6)


class RefundRefused(ReconError):
    """A refund the rules do not allow (no reason, more than was captured, an unpaid order, spent credits).
    ``code`` is stable for API clients."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True, slots=True)
class RefundRequest:
    amount_minor: int | None  #: None: everything still refundable
    reason: str
    requested_by: str
    origin: str = "support"  #: support | review | duplicate
    payment_id: str | None = None  #: None: the order's credited payment
    idempotency_key: str | None = None  #: None: derived from the request, so a repeat is the same refund
    override_spent: bool = False


def next_check(count: int, now: datetime) -> datetime:
    return now + min(FIRST_CHECK * (2 ** min(count, 20)), MAX_GAP)


def refunds_of(session: Session, order_id: str) -> list[Refund]:
    return list(session.execute(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id)).scalars())


def disputes_of(session: Session, order_id: str) -> list[Dispute]:
    return list(session.execute(select(Dispute).where(Dispute.order_id == order_id).order_by(Dispute.id)).scalars())


def derived_key(order_id: str, payment_id: str, amount_minor: int | None, reason: str, requested_by: str) -> str:
    digest = hashlib.sha256(f"{order_id}|{payment_id}|{amount_minor}|{reason}|{requested_by}".encode()).hexdigest()
    return f"rf{digest[:32]}"  # letters and digits only: PayGlocal's merchantTxnId is alphanumeric


def add_refund_request(session: Session, order: Order, request: RefundRequest, *, now: datetime) -> tuple[Refund, bool]:
    """Check a refund request against the rules and keep it (state ``requested``); returns it and whether
    it is new. A request with a key already used for the same refund returns that refund.

    Raises:
        RefundRefused: no reason; a malformed or reused key; an unpaid order; a payment that is not
            captured; more than is left to refund; more credits than the customer has unspent (unless
            ``override_spent``).
    """
    if not (request.reason or "").strip():
        raise RefundRefused("reason_required", "a refund needs a reason")
    payment_id = request.payment_id or order.granted_payment_id
    if payment_id is None:
        raise RefundRefused("order_not_paid", f"order {order.id} is {order.state}: nothing was paid to refund")
    payment = session.execute(select(GatewayPayment).where(
        GatewayPayment.gateway == order.gateway, GatewayPayment.gateway_payment_id == payment_id,
        GatewayPayment.order_id == order.id)).scalar_one_or_none()
    if payment is None:
        raise RefundRefused("unknown_payment", f"order {order.id} has no payment {payment_id}")
    key = request.idempotency_key or derived_key(order.id, payment_id, request.amount_minor, request.reason,
                                                 request.requested_by)
    if not KEY.match(key):
        raise RefundRefused("bad_idempotency_key", "an idempotency key is 10-40 of A-Z a-z 0-9 _ -")
    earlier = session.execute(select(Refund).where(Refund.gateway == order.gateway,
                                                   Refund.idempotency_key == key)).scalar_one_or_none()
    if earlier is not None:
        if earlier.gateway_payment_id != payment_id or (request.amount_minor not in (None, earlier.amount_minor)):
            raise RefundRefused("idempotency_key_reused", f"key {key} was used for another refund")
        return earlier, False
    if payment.status not in (RemoteStatus.CAPTURED.value, RemoteStatus.REFUNDED.value):
        raise RefundRefused("not_captured", f"payment {payment_id} is {payment.status}: only captured money is "
                                            "refunded (an authorisation is released by the gateway)")
    others = [r for r in refunds_of(session, order.id) if r.gateway_payment_id == payment_id]
    committed = sum(r.amount_minor for r in others if r.state != RefundState.FAILED.value)
    left = payment.amount_minor - max(committed, payment.amount_refunded_minor or 0)
    amount = left if request.amount_minor is None else request.amount_minor
    if amount <= 0 or amount > left:
        raise RefundRefused("above_captured", f"refund of {amount} {payment.currency} asked; {left} is left to refund "
                                              f"of the {payment.amount_minor} captured")
    granted = payment_id == order.granted_payment_id and order.plan == Plan.PAYG.value
    if granted and not request.override_spent:
        _check_unspent(session, order, others, amount)
    row = Refund(order_id=order.id, gateway=order.gateway, gateway_payment_id=payment_id, idempotency_key=key,
                 amount_minor=amount, currency=payment.currency, full=amount == payment.amount_minor,
                 state=RefundState.REQUESTED.value, origin=request.origin, override_spent=request.override_spent,
                 reason=request.reason, requested_by=request.requested_by, created_at=now, updated_at=now,
                 next_check_at=next_check(0, now), check_count=0)
    session.add(row)
    session.flush()
    REFUNDS.labels(order.gateway, RefundState.REQUESTED.value, request.origin).inc()
    return row, True


def _check_unspent(session: Session, order: Order, others: list[Refund], amount: int) -> None:
    """A refund gives back only credits the customer still has (the product's "refund for unused credits")."""
    balance = session.get(Organisation, order.organisation_id).credit_balance
    in_flight = sum(credits_for(r.amount_minor, order_amount_minor=order.amount_minor, order_credits=order.credits)
                    for r in others if r.state in (RefundState.REQUESTED.value, RefundState.PENDING.value))
    unspent = max(0, min(balance - in_flight, credit.still_granted(session, order.id) - in_flight))
    wanted = credits_for(amount, order_amount_minor=order.amount_minor, order_credits=order.credits)
    if wanted > unspent:
        most = amount_for_credits(unspent, order_amount_minor=order.amount_minor, order_credits=order.credits)
        raise RefundRefused("credits_spent", f"this refund takes back {wanted} credits; {unspent} of the order's are "
                                             f"unspent, so at most {most} {order.currency} can be refunded (or "
                                             "override, with the reason)")


def refund_refused(session: Session, order: Order, row: Refund, reason: str, *, now: datetime) -> None:
    """The gateway refused to start our refund: nothing moved."""
    row.state, row.failure_reason, row.next_check_at, row.updated_at = RefundState.FAILED.value, reason[:300], None, now
    REFUNDS.labels(row.gateway, RefundState.FAILED.value, row.origin).inc()
    _tell_refund(session, order, row, now=now)


def refunded_minor(session: Session, order: Order) -> int:
    """What processed refunds gave back of the order's credited payment."""
    return sum(r.amount_minor for r in refunds_of(session, order.id)
               if r.gateway_payment_id == order.granted_payment_id and r.state == RefundState.PROCESSED.value)


def _tell_refund(session: Session, order: Order, row: Refund, *, now: datetime) -> None:
    """The order event of a refund that ended: the order (partly) refunded, or the refund failed."""
    refunded = refunded_minor(session, order)
    if row.state == RefundState.FAILED.value:
        kind = EventType.REFUND_FAILED
    elif row.gateway_payment_id == order.granted_payment_id:
        kind = refund_event(refunded, order.amount_minor)
    else:
        kind = EventType.REFUND_PROCESSED
    outbox.record(session, order, kind, now=now, refunded_minor=refunded,
                  refund={"id": row.gateway_refund_id, "payment_id": row.gateway_payment_id,
                          "amount_minor": row.amount_minor, "currency": row.currency, "state": row.state,
                          "origin": row.origin, "failure_reason": row.failure_reason},
                  refunded_total_minor=refunded)


def observe_refund(session: Session, order: Order, remote: RemoteRefund, *, now: datetime, policy: Policy,
                   row: Refund | None = None) -> Refund:
    """What the gateway says of one refund: find (or keep) its row, move its lifecycle, and reverse the
    credits once when it is first processed. A refund we never asked for (the dashboard, an auto-refund,
    a lost dispute's refund) gets a row of its own."""
    row = row or _refund_row(session, order, remote)
    if row is None:
        row = Refund(order_id=order.id, gateway=order.gateway, gateway_payment_id=remote.gateway_payment_id,
                     gateway_refund_id=remote.gateway_refund_id, amount_minor=remote.amount_minor,
                     currency=remote.currency, full=False, state=RefundState.REQUESTED.value,
                     origin="auto" if remote.payment_captured is False else "gateway", override_spent=False,
                     created_at=now, updated_at=now, check_count=0)
        session.add(row)
        session.flush()
    row.gateway_refund_id = row.gateway_refund_id or remote.gateway_refund_id
    row.gateway_created_at = row.gateway_created_at or _gateway_time(remote.created_at)
    row.wire_status = (remote.wire_status or remote.status.value)[:32]
    if remote.amount_minor > 0:  # what the gateway refunds, not what we asked (a full refund of what was left)
        row.amount_minor, row.currency = remote.amount_minor, remote.currency
    move = decide_refund(RefundState(row.state), remote.status)
    log = get_logger(order_id=order.id, payment_id=row.gateway_payment_id, gateway=order.gateway)
    if move.changed:
        row.state, row.updated_at = move.to_state.value, now
        REFUNDS.labels(order.gateway, move.to_state.value, row.origin).inc()
        log.info("refund_state_changed", refund_id=row.gateway_refund_id, from_state=move.from_state.value,
                 to_state=move.to_state.value, amount_minor=row.amount_minor)
    if RefundState(row.state) in IN_FLIGHT:
        row.next_check_at = row.next_check_at or next_check(row.check_count, now)
    else:
        row.next_check_at = None
    if move.reverse_credits:
        row.processed_at = now
        if row.gateway_payment_id == order.granted_payment_id:
            _settle(session, order, kind="refund", money_event_id=f"refund:{row.gateway_refund_id}",
                    payment_id=row.gateway_payment_id, amount_minor=row.amount_minor, currency=row.currency,
                    policy=policy, now=now, ends_pro=True)
    if move.changed and move.to_state in (RefundState.PROCESSED, RefundState.FAILED):
        _tell_refund(session, order, row, now=now)
    return row


def _refund_row(session: Session, order: Order, remote: RemoteRefund) -> Refund | None:
    by_id = select(Refund).where(Refund.gateway == order.gateway, Refund.gateway_refund_id == remote.gateway_refund_id)
    found = session.execute(by_id).scalar_one_or_none()
    if found is None and remote.idempotency_key:
        by_key = select(Refund).where(Refund.gateway == order.gateway, Refund.idempotency_key == remote.idempotency_key)
        found = session.execute(by_key).scalar_one_or_none()
    return found


def observe_dispute(session: Session, order: Order, remote: RemoteDispute, *, now: datetime, policy: Policy,
                    source: str = "gateway", reason: str | None = None, requested_by: str | None = None,
                    kind: str = "dispute") -> Dispute:
    """What the gateway (or support, for a chargeback PayGlocal cannot report) says of one dispute: move its
    lifecycle; hold the disputed credits at onset, restore them on a win, keep the hold on a loss."""
    row = session.execute(select(Dispute).where(Dispute.gateway == order.gateway,
                                                Dispute.gateway_dispute_id == remote.gateway_dispute_id)
                          ).scalar_one_or_none()
    current = None if row is None else DisputeState(row.state)
    move = decide_dispute(current, bool(row and row.held), remote.status, remote.phase,
                          current_phase=(row.phase or "") if row is not None else "", opening=remote.opening)
    if row is None:
        row = Dispute(order_id=order.id, gateway=order.gateway, gateway_dispute_id=remote.gateway_dispute_id,
                      gateway_payment_id=remote.gateway_payment_id, amount_minor=remote.amount_minor,
                      currency=remote.currency, state=move.to_state.value, held=False, generation=0, source=source,
                      reason=reason, requested_by=requested_by, amount_deducted_minor=0, created_at=now,
                      updated_at=now)
        session.add(row)
        session.flush()
    row.gateway_created_at = row.gateway_created_at or _gateway_time(remote.created_at)
    stale = move.stale or observed_dispute(remote.status) != move.to_state  # an older snapshot
    if remote.status != DisputeStatus.UNKNOWN and not stale:
        row.phase = remote.phase or row.phase
        row.reason_code = (remote.reason_code or row.reason_code or "")[:120] or None
        row.respond_by = datetime.fromtimestamp(remote.respond_by, UTC) if remote.respond_by else row.respond_by
        row.amount_deducted_minor = max(row.amount_deducted_minor or 0, remote.amount_deducted_minor)
    log = get_logger(order_id=order.id, payment_id=row.gateway_payment_id, gateway=order.gateway)
    if move.changed:
        row.state, row.updated_at = move.to_state.value, now
        DISPUTES.labels(order.gateway, move.to_state.value).inc()
        log.info("dispute_state_changed", dispute_id=row.gateway_dispute_id, to_state=move.to_state.value,
                 phase=row.phase)
        outbox.record(session, order, FOR_DISPUTE[move.to_state.value], now=now,
                      dispute={"id": row.gateway_dispute_id, "payment_id": row.gateway_payment_id,
                               "amount_minor": row.amount_minor, "currency": row.currency, "state": row.state,
                               "phase": row.phase, "source": row.source,
                               "respond_by": row.respond_by.isoformat() if row.respond_by else None})
    if row.gateway_payment_id != order.granted_payment_id:
        if move.hold:
            row.held = True  # held on its payment; the credits follow if that payment is ever credited
        elif move.restore:
            row.held, row.generation = False, row.generation + 1
        return row
    event = f"dispute:{row.gateway_dispute_id}"
    if move.hold:
        row.held = True
        _settle(session, order, kind=kind, money_event_id=f"{event}:hold:{row.generation}",
                payment_id=row.gateway_payment_id, amount_minor=row.amount_minor, currency=row.currency,
                policy=policy, now=now, ends_pro=move.to_state in DISPUTE_FINAL)
    elif move.changed and move.to_state in DISPUTE_FINAL:  # a loss: its refund entity may be here already
        _settle(session, order, kind=kind, money_event_id=f"{event}:{move.to_state.value}:{row.generation}",
                payment_id=row.gateway_payment_id, amount_minor=row.amount_minor, currency=row.currency,
                policy=policy, now=now, ends_pro=True)
    if move.restore and row.held:
        row.held = False
        _settle(session, order, kind=kind, money_event_id=f"{event}:restore:{row.generation}",
                payment_id=row.gateway_payment_id, amount_minor=row.amount_minor, currency=row.currency,
                policy=policy, now=now)
        row.generation += 1
    return row


def entitled_credits(session: Session, order: Order) -> int:
    """The credits the money the gateway still holds for the credited payment pays for: the order's credits
    × (amount − processed refunds − disputed amounts held) ÷ amount, rounded down once for the whole order (so
    refunding all of it in parts leaves nothing). A lost dispute's own refund entity is the same money as the
    dispute and counts once (:func:`_link_dispute_refunds`)."""
    if order.granted_payment_id is None or order.plan != Plan.PAYG.value or order.amount_minor <= 0:
        return 0
    _link_dispute_refunds(session, order)
    refunded = sum(r.amount_minor for r in refunds_of(session, order.id)
                   if r.gateway_payment_id == order.granted_payment_id and r.state == RefundState.PROCESSED.value
                   and not r.covered_by_dispute)
    disputed = sum(d.amount_minor for d in disputes_of(session, order.id)
                   if d.gateway_payment_id == order.granted_payment_id and d.held)
    held = max(0, order.amount_minor - refunded - disputed)
    return order.credits * held // order.amount_minor


def _link_dispute_refunds(session: Session, order: Order) -> None:
    """Razorpay refunds the customer of a lost dispute with a refund entity of its own (after-capture.md §0.1):
    a processed refund we did not ask for, of a lost dispute's amount, on its payment, made no earlier than
    the dispute, is that dispute's money, not more of it. A dispute closed for fraud gets no such refund
    (the merchant "must refund the amount", §3.4): a refund of its amount is money of its own, counted too
    (the safer reading: it can only take credits back, never give them)."""
    refunds = refunds_of(session, order.id)
    linked = {r.covered_by_dispute for r in refunds if r.covered_by_dispute}
    for dispute in disputes_of(session, order.id):
        if dispute.state != DisputeState.LOST.value or dispute.gateway_dispute_id in linked:
            continue
        for refund in refunds:
            if (refund.gateway_payment_id == dispute.gateway_payment_id and refund.origin in ("gateway", "auto")
                    and refund.state == RefundState.PROCESSED.value and not refund.covered_by_dispute
                    and refund.amount_minor == dispute.amount_minor and not _made_before(refund, dispute)):
                refund.covered_by_dispute = dispute.gateway_dispute_id
                linked.add(dispute.gateway_dispute_id)
                break


_ANY_MONEY_MOVED = select(select(Refund.id).where(Refund.order_id == bindparam("order_id")).exists()
                          | select(Dispute.id).where(Dispute.order_id == bindparam("order_id")).exists())


def _any_money_moved(session: Session, order_id: str) -> bool:
    return bool(session.connection().execute(_ANY_MONEY_MOVED, {"order_id": order_id}).scalar())


def _made_before(refund: Refund, dispute: Dispute) -> bool:
    """The refund was made before the dispute was opened (so it is not the dispute's money): only when the
    gateway told both times."""
    return (refund.gateway_created_at is not None and dispute.gateway_created_at is not None
            and refund.gateway_created_at < dispute.gateway_created_at)


def _gateway_time(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def catch_up_after_grant(session: Session, order: Order, *, now: datetime, policy: Policy) -> None:
    """A grant made after money had already gone back or been disputed (Razorpay does not order webhooks: a
    dispute can come before the capture): the credit is brought to what the money still supports at once."""
    if not _any_money_moved(session, order.id):  # nearly every grant: one indexed read instead of two loads
        return
    for refund in refunds_of(session, order.id):
        if refund.gateway_payment_id == order.granted_payment_id and refund.state == RefundState.PROCESSED.value:
            _settle(session, order, kind="refund", money_event_id=f"refund:{refund.gateway_refund_id}",
                    payment_id=refund.gateway_payment_id, amount_minor=refund.amount_minor, currency=refund.currency,
                    policy=policy, now=now, ends_pro=True)
    for dispute in disputes_of(session, order.id):
        if dispute.gateway_payment_id == order.granted_payment_id and dispute.held:
            _settle(session, order, kind="dispute",
                    money_event_id=f"dispute:{dispute.gateway_dispute_id}:hold:{dispute.generation}",
                    payment_id=dispute.gateway_payment_id, amount_minor=dispute.amount_minor,
                    currency=dispute.currency, policy=policy, now=now,
                    ends_pro=DisputeState(dispute.state) in DISPUTE_FINAL)


def _settle(session: Session, order: Order, *, kind: str, money_event_id: str, payment_id: str, amount_minor: int,
            currency: str, policy: Policy, now: datetime, ends_pro: bool = False) -> None:
    """Bring what the order grants to what its money supports (:func:`entitled_credits`), as one ledger entry for
    this money event: a reversal when it grants too much, a restore when a hold it no longer needs took too much.
    A Pro order grants no credits: a refund or a lost dispute (``ends_pro``) ends its term."""
    target, current = entitled_credits(session, order), credit.still_granted(session, order.id)
    if target > current:
        given = credit.restore_once(session, order, kind=kind, money_event_id=money_event_id, payment_id=payment_id,
                                    credits_up=target - current, amount_minor=amount_minor, currency=currency, now=now)
        if given is not None:
            CREDITS_RESTORED.labels(order.gateway).inc(given.taken)
            get_logger(order_id=order.id, payment_id=payment_id, gateway=order.gateway).info(
                "credits_restored", kind=kind, money_event_id=money_event_id, credits=given.taken,
                shortfall_cancelled=given.shortfall)
            outbox.record(session, order, EventType.CREDITS_RESTORED, now=now, cause=kind,
                          money_event_id=money_event_id, credits=given.taken, shortfall_cancelled=given.shortfall)
    elif target < current or (ends_pro and order.plan == Plan.PRO.value):
        _reverse(session, order, kind=kind, money_event_id=money_event_id, payment_id=payment_id,
                 credits=current - target, amount_minor=amount_minor, currency=currency, policy=policy, now=now)


def _reverse(session: Session, order: Order, *, kind: str, money_event_id: str, payment_id: str, credits: int,
             amount_minor: int, currency: str, policy: Policy, now: datetime) -> None:
    done = credit.reverse_once(session, order, kind=kind, money_event_id=money_event_id, payment_id=payment_id,
                               credits=credits, amount_minor=amount_minor, currency=currency,
                               allow_negative=policy.allow_negative_balance, now=now)
    if done is None:
        return
    CREDITS_REVERSED.labels(order.gateway, kind).inc(done.clawback.taken)
    if done.clawback.shortfall:
        CREDIT_SHORTFALL.labels(order.gateway, kind).inc(done.clawback.shortfall)
    get_logger(order_id=order.id, payment_id=payment_id, gateway=order.gateway).info(
        "credits_reversed", kind=kind, money_event_id=money_event_id, credits=done.clawback.taken,
        shortfall=done.clawback.shortfall, pro_ended=done.pro_ended)
    outbox.record(session, order, EventType.CREDITS_REVERSED, now=now, cause=kind, money_event_id=money_event_id,
                  credits=done.clawback.taken, shortfall=done.clawback.shortfall, pro_ended=done.pro_ended)
