"""The only writer of ledger rows, in the caller's transaction. The ledger is append-only (a trigger
refuses UPDATE and DELETE on Postgres) and every entry is unique per (gateway, entry, money event), so
whichever input path sees a money event first writes it and every other path finds it written.

- :func:`grant_once`: what a paid order bought (once per order and per gateway payment);
- :func:`reverse_once`: a processed refund, a dispute's hold, a recorded chargeback takes credits back
  (:func:`worker.domain.ledger.clawback` decides how many, recording the shortfall); a Pro term ends;
- :func:`restore_once`: a won dispute gives back exactly what its hold took.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db import queries
from db.models import LedgerEntry, Order, Organisation
from gateways.port import RemotePayment
from worker.domain.ledger import Clawback, clawback
from worker.domain.order_state import Plan

PRO_TERM = timedelta(days=365)
GRANT_KIND = {Plan.PAYG: "credits", Plan.PRO: "pro_plan", Plan.CUSTOM: "payment_recorded"}


@dataclass(frozen=True, slots=True)
class Reversed:
    """A reversal written now: the credits taken and the shortfall (a Pro term ended shows 0 / 0)."""

    entry_id: int
    clawback: Clawback
    pro_ended: bool = False


def grant_once(session: Session, order: Order, payment: RemotePayment, *, now: datetime) -> bool:
    """Give the customer what the paid order bought. Returns False if it was already given."""
    plan = Plan(order.plan)
    entry_id = _append(session, order, entry="grant", kind=GRANT_KIND[plan],
                       money_event_id=payment.gateway_payment_id, payment_id=payment.gateway_payment_id,
                       credits=order.credits if plan == Plan.PAYG else 0, shortfall=0,
                       amount_minor=payment.amount_minor, currency=payment.currency, now=now)
    if entry_id is None:
        return False
    if plan == Plan.PAYG:
        queries.add_credits(session, order.organisation_id, order.credits)
    elif plan == Plan.PRO:
        organisation = session.get(Organisation, order.organisation_id, with_for_update=True)
        if organisation.plan == "enterprise":  # never downgraded by a Pro order (refused when ordered)
            return True
        start = max(now, organisation.plan_expires_at or now)
        organisation.plan, organisation.plan_expires_at = "pro", start + PRO_TERM
    return True


def still_granted(session: Session, order_id: str) -> int:
    """The credits the order still grants: Σ credits − Σ shortfall over its entries."""
    stmt = select(func.coalesce(func.sum(LedgerEntry.credits - LedgerEntry.shortfall), 0)) \
        .where(LedgerEntry.order_id == order_id)
    return int(session.execute(stmt).scalar_one())


def reverse_once(session: Session, order: Order, *, kind: str, money_event_id: str, payment_id: str, credits: int,
                 amount_minor: int, currency: str, allow_negative: bool, now: datetime) -> Reversed | None:
    """Take back ``credits`` of the order for one money event (a refund, a dispute's hold, a chargeback).
    Returns None if this event was already reversed, or the order never granted anything."""
    if not _granted(session, order.id):
        return None
    plan = Plan(order.plan)
    balance, organisation_plan = _locked_balance(session, order.organisation_id)
    if plan == Plan.PAYG:
        taken = clawback(credits, balance=balance, still_granted=still_granted(session, order.id),
                         allow_negative=allow_negative)
    else:
        taken = Clawback(0, 0)
    entry_id = _append(session, order, entry="reversal", kind=kind, money_event_id=money_event_id,
                       payment_id=payment_id, credits=-taken.taken, shortfall=taken.shortfall,
                       amount_minor=amount_minor, currency=currency, now=now)
    if entry_id is None:
        return None
    if taken.taken:
        queries.add_credits(session, order.organisation_id, -taken.taken)
    pro_ended = plan == Plan.PRO and organisation_plan == "pro"
    if pro_ended:  # a refund or a lost dispute ends the term: the year was not paid for
        session.flush()  # a grant's ORM change to the plan goes out first, so this UPDATE is the last word
        session.execute(update(Organisation).where(Organisation.id == order.organisation_id)
                        .values(plan="payg", plan_expires_at=now))
    return Reversed(entry_id, taken, pro_ended)


def restore_once(session: Session, order: Order, *, kind: str, money_event_id: str, payment_id: str,
                 credits_up: int, amount_minor: int, currency: str, now: datetime) -> Clawback | None:
    """Give the order back ``credits_up`` of what reversals took (a won dispute, a hold the money no longer
    supports): the order's outstanding shortfall is cancelled first (it was never taken), the rest goes back
    to the balance. Returns what was given and cancelled, or None if this event was already restored."""
    outstanding = int(session.execute(select(func.coalesce(func.sum(LedgerEntry.shortfall), 0))
                                      .where(LedgerEntry.order_id == order.id)).scalar_one())
    cancelled = max(0, min(credits_up, outstanding))
    given = credits_up - cancelled
    entry_id = _append(session, order, entry="restore", kind=kind, money_event_id=money_event_id,
                       payment_id=payment_id, credits=given, shortfall=-cancelled,
                       amount_minor=amount_minor, currency=currency, now=now)
    if entry_id is None:
        return None
    if given:
        queries.add_credits(session, order.organisation_id, given)
    return Clawback(given, cancelled)


def _locked_balance(session: Session, organisation_id: str) -> tuple[int, str]:
    """The organisation's balance and plan, its row locked, read from the database (never from an ORM object
    the session holds: an earlier reversal in this transaction changed it with SQL)."""
    stmt = select(Organisation.credit_balance, Organisation.plan).where(Organisation.id == organisation_id) \
        .with_for_update()
    balance, plan = session.execute(stmt).one()
    return int(balance), plan


def _granted(session: Session, order_id: str) -> bool:
    stmt = select(LedgerEntry.id).where(LedgerEntry.order_id == order_id, LedgerEntry.entry == "grant")
    return session.execute(stmt).first() is not None


def _append(session: Session, order: Order, *, entry: str, kind: str, money_event_id: str, payment_id: str,
            credits: int, shortfall: int, amount_minor: int, currency: str, now: datetime) -> int | None:
    return queries.insert_ignore(session, LedgerEntry, {
        "organisation_id": order.organisation_id, "order_id": order.id, "gateway": order.gateway,
        "gateway_payment_id": payment_id, "entry": entry, "kind": kind, "money_event_id": money_event_id,
        "credits": credits, "shortfall": shortfall, "amount_minor": amount_minor, "currency": currency,
        "created_at": now,
    }, conflict=())
