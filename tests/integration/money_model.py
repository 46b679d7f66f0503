"""Helpers for ``test_money_properties``: what the gateway holds and what we hold, read the same way
after every step, plus the few simulator moves the state machine needs.

"The gateway" is the simulator's own state (``sim.razorpay.snapshot()``), never what our database
thinks it is: the invariants compare the two.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text

from db.models import GatewayPayment, InboxEvent, LedgerEntry, Order, OrderTransition, Organisation

#: Our order states in which no credit is owed whatever the gateway holds: a person decides, or decided.
NO_CREDIT_OWED = frozenset({"needs_review", "closed"})


# --- the gateway -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GatewayPay:
    """One Razorpay payment as the simulator holds it."""

    id: str
    order_id: str  #: the Razorpay order id
    status: str  #: created | authorized | captured | refunded | failed
    amount: int
    currency: str
    amount_refunded: int
    captured: bool

    def good_for(self, amount: int, currency: str) -> bool:
        """Captured, nothing refunded, for exactly that amount: money the merchant keeps."""
        return (self.status == "captured" and self.amount_refunded == 0 and self.amount == amount
                and self.currency == currency)


@dataclass(frozen=True)
class GatewayView:
    payments: dict[str, GatewayPay]
    order_status: dict[str, str]  #: Razorpay order id -> created | attempted | paid

    def of_order(self, gateway_order_id: str) -> list[GatewayPay]:
        return [p for p in self.payments.values() if p.order_id == gateway_order_id]


def gateway_view(sim) -> GatewayView:
    state = sim.razorpay.snapshot()
    payments = {p["id"]: GatewayPay(p["id"], p["order_id"], p["status"], p["amount"], p["currency"],
                                    p.get("amount_refunded") or 0, bool(p.get("captured")))
                for p in state["payments"]}
    return GatewayView(payments, {o["id"]: o["status"] for o in state["orders"]})


def late_authorize(sim, payment_id: str, minutes: float) -> tuple[dict[str, Any], bool]:
    """``sim.late_authorize`` ``minutes`` after the payment's creation; the simulator before the capture
    windows (commit 744fc87) has no ``minutes_after_creation``: then the second value is False."""
    if "minutes_after_creation" in inspect.signature(sim.late_authorize).parameters:
        return sim.late_authorize(payment_id, deliver_webhooks=False, minutes_after_creation=minutes), True
    return sim.late_authorize(payment_id, deliver_webhooks=False), False


def pay_on_a_paid_order(sim, gateway_order_id: str, amount_minor: int | None) -> dict[str, Any]:
    """The anomaly: Razorpay captures one more payment on an order it already holds as paid.

    Razorpay binds one successful payment to an order and refunds a late one, except for
    ``partial_payment`` orders; the service still has its ``second_captured_payment`` path because
    it happens (two UPI intents completing, a gateway bug). The simulator refuses it, so the order's
    status is lowered for this one checkout, under the simulator's lock; ``pay`` sets it back to paid.
    """
    razorpay = sim.razorpay
    with razorpay.lock:
        order = razorpay.orders[gateway_order_id]
        status = order["status"]
        order["status"] = "attempted"
        try:
            return razorpay.pay(gateway_order_id, "success", deliver_webhooks=False, amount_minor=amount_minor)
        finally:
            if order["status"] == "attempted":  # refused (an authorised payment is waiting): undo
                order["status"] = status


def event_order_id(event) -> str | None:
    """The Razorpay order id a simulator webhook event is about."""
    try:
        payload = json.loads(event.body)["payload"]
    except (ValueError, KeyError, TypeError):
        return None
    payment = (payload.get("payment") or {}).get("entity") or {}
    return payment.get("order_id") or ((payload.get("order") or {}).get("entity") or {}).get("id")


def describe_event(event) -> tuple[str, str | None, str | None]:
    """``(event type, payment id, payment status in the snapshot)`` of a simulator webhook event."""
    try:
        payment = json.loads(event.body)["payload"]["payment"]["entity"]
    except (ValueError, KeyError, TypeError):
        return event.event, None, None
    status = payment.get("status")
    if payment.get("amount_refunded"):
        status = f"{status}, {payment['amount_refunded']} refunded"
    return event.event, payment.get("id"), status


# --- what we hold ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OurOrder:
    id: str
    gateway_order_id: str | None
    organisation_id: str
    state: str
    state_reason: str | None
    granted_payment_id: str | None
    amount_minor: int
    currency: str
    created_at: datetime
    next_check_at: datetime | None


@dataclass(frozen=True)
class OurEntry:
    id: int
    order_id: str
    organisation_id: str
    gateway_payment_id: str
    credits: int
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class OurPayment:
    order_id: str
    status: str
    amount_refunded: int
    amount_minor: int


@dataclass(frozen=True)
class OurTransition:
    id: int
    order_id: str
    from_state: str
    to_state: str
    reason: str
    gateway_payment_id: str | None


@dataclass
class OurView:
    orders: dict[str, OurOrder]
    ledger: list[OurEntry]
    transitions: list[OurTransition]
    balances: dict[str, int]
    payments: dict[str, OurPayment] = field(default_factory=dict)
    pending_inbox: list[int] = field(default_factory=list)

    def ledger_of(self, order_id: str) -> list[OurEntry]:
        return [e for e in self.ledger if e.order_id == order_id]

    def fingerprint(self) -> tuple:
        return (tuple(sorted((o.id, o.state, o.granted_payment_id) for o in self.orders.values())),
                len(self.ledger), tuple(sorted((k, v.status, v.amount_refunded) for k, v in self.payments.items())),
                tuple(self.pending_inbox))


def our_view(deps) -> OurView:
    with deps.sessions() as session:
        orders = {o.id: OurOrder(o.id, o.gateway_order_id, o.organisation_id, o.state, o.state_reason,
                                 o.granted_payment_id, o.amount_minor, o.currency, o.created_at, o.next_check_at)
                  for o in session.execute(select(Order)).scalars()}
        ledger = [OurEntry(e.id, e.order_id, e.organisation_id, e.gateway_payment_id, e.credits, e.amount_minor,
                           e.currency)
                  for e in session.execute(select(LedgerEntry).order_by(LedgerEntry.id)).scalars()]
        transitions = [OurTransition(t.id, t.order_id, t.from_state, t.to_state, t.reason, t.gateway_payment_id)
                       for t in session.execute(select(OrderTransition).order_by(OrderTransition.id)).scalars()]
        balances = {o.id: o.credit_balance for o in session.execute(select(Organisation)).scalars()}
        payments = {p.gateway_payment_id: OurPayment(p.order_id, p.status, p.amount_refunded_minor or 0, p.amount_minor)
                    for p in session.execute(select(GatewayPayment)).scalars()}
        pending = list(session.execute(select(InboxEvent.id).where(InboxEvent.status == "pending")
                                       .order_by(InboxEvent.id)).scalars())
    return OurView(orders, ledger, transitions, balances, payments, pending)


def pending_inbox(deps) -> list[int]:
    with deps.sessions() as session:
        return list(session.execute(select(InboxEvent.id).where(InboxEvent.status == "pending")
                                    .order_by(InboxEvent.id)).scalars())


def order_states(deps) -> dict[str, str]:
    with deps.sessions() as session:
        return dict(session.execute(select(Order.id, Order.state)).all())


def inbox_status(deps, event_id: str) -> str | None:
    with deps.sessions() as session:
        return session.execute(select(InboxEvent.status).where(InboxEvent.event_id == event_id)).scalar_one_or_none()


def empty_database(engine) -> None:
    """Every table of the schema emptied (what the ``deps`` fixture does after a test), ids restarted."""
    with engine.begin() as connection:
        tables = list(connection.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
        )).scalars())
        connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
