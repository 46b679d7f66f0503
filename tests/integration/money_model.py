"""Helpers for ``test_money_properties``: what the gateway holds and what we hold, read the same way
after every step, plus the few simulator moves the state machine needs.

"The gateway" is the simulator's own state (``sim.razorpay.snapshot()``, its disputes, PayGlocal's
transactions and refunds), never what our database thinks it is: the invariants compare the two.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text

from db.models import GatewayPayment, InboxEvent, LedgerEntry, Order, OrderTransition, Organisation, Refund

#: Our order states in which no credit is owed whatever the gateway holds: a person decides, or decided.
NO_CREDIT_OWED = frozenset({"needs_review", "closed"})
#: A dispute in these states has taken the money (the onset reading, worker/domain/dispute_state.py); won gives it back.
DISPUTE_HOLDS = frozenset({"open", "under_review", "lost", "closed"})
#: PayGlocal's transaction statuses as the Razorpay-like statuses the checks read.
PAYGLOCAL_STATUS = {"SENT_FOR_CAPTURE": "captured", "SENT_FOR_REFUND": "refunded", "AUTHORIZED": "authorized",
                    "CREATED": "created", "INPROGRESS": "created"}


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
class GatewayRefund:
    """One refund as the gateway holds it (Razorpay's refund entity, a PayGlocal refund record)."""

    id: str
    payment_id: str
    amount: int
    status: str  #: pending | processed | failed (PayGlocal: SENT_FOR_REFUND is processed, REQUEST_ERROR failed)


@dataclass(frozen=True)
class GatewayDispute:
    id: str
    payment_id: str
    amount: int
    status: str  #: open | under_review | won | lost | closed
    phase: str


@dataclass(frozen=True)
class GatewayView:
    payments: dict[str, GatewayPay]
    order_status: dict[str, str]  #: Razorpay order id -> created | attempted | paid (a PayGlocal gid: paid or created)
    refunds: dict[str, GatewayRefund] = field(default_factory=dict)
    disputes: dict[str, GatewayDispute] = field(default_factory=dict)
    gateway_of: dict[str, str] = field(default_factory=dict)  #: payment id -> razorpay | payglocal

    def of_order(self, gateway_order_id: str) -> list[GatewayPay]:
        return [p for p in self.payments.values() if p.order_id == gateway_order_id]

    def refunds_of(self, payment_id: str) -> list[GatewayRefund]:
        return [r for r in self.refunds.values() if r.payment_id == payment_id]

    def disputes_of(self, payment_id: str) -> list[GatewayDispute]:
        return [d for d in self.disputes.values() if d.payment_id == payment_id]


def gateway_view(sim) -> GatewayView:
    state = sim.razorpay.snapshot()
    payments = {p["id"]: GatewayPay(p["id"], p["order_id"], p["status"], p["amount"], p["currency"],
                                    p.get("amount_refunded") or 0, bool(p.get("captured")))
                for p in state["payments"]}
    order_status = {o["id"]: o["status"] for o in state["orders"]}
    refunds = {r["id"]: GatewayRefund(r["id"], r["payment_id"], r["amount"], r["status"]) for r in state["refunds"]}
    disputes = {d["id"]: GatewayDispute(d["id"], d["payment_id"], d["amount"], d["status"], d["phase"])
                for d in sim.disputes_of()}
    gateway_of = dict.fromkeys(payments, "razorpay")
    for r in sim.payglocal.refunds_snapshot():
        status = {"SENT_FOR_REFUND": "processed", "REQUEST_ERROR": "failed"}.get(r["status"], "pending")
        refunds[r["gid"]] = GatewayRefund(r["gid"], r["originalGid"], r["amount_minor"], status)
    for t in sim.payglocal.snapshot():  # one transaction per order: the gid is the order's and the payment's id
        gid, status = t["gid"], PAYGLOCAL_STATUS.get(t["status"], "failed")
        refunded = sum(r.amount for r in refunds.values() if r.payment_id == gid and r.status == "processed")
        payments[gid] = GatewayPay(gid, gid, status, t["paid_amount_minor"], t["paid_currency"], refunded,
                                   status in ("captured", "refunded"))
        order_status[gid] = "paid" if status in ("captured", "refunded") else "created"
        gateway_of[gid] = "payglocal"
    return GatewayView(payments, order_status, refunds, disputes, gateway_of)


def proportional(amount_minor: int, *, order_amount_minor: int, order_credits: int) -> int:
    """The credits ``amount_minor`` of the order's money paid for: all of them for all of the money, else in
    proportion, rounded down (the rule of worker/domain/refund_state.py ``credits_for``, stated again here so
    that the expectation does not borrow the code it checks)."""
    if amount_minor <= 0 or order_amount_minor <= 0:
        return 0
    if amount_minor >= order_amount_minor:
        return order_credits
    return order_credits * amount_minor // order_amount_minor


def credits_for_money_held(gw: GatewayView, payment_id: str, *, order_amount_minor: int, order_credits: int,
                           dispute_refunds: set[str], chargebacks: list[int]) -> tuple[int, bool]:
    """The credits an order credited on ``payment_id`` should still grant, read from the gateway alone, and
    whether the gateway holds none of its money any more.

    The money still held is the amount less each refund the gateway processed, each dispute holding the money
    (open, under review, lost, closed: a won one gave it back) and each chargeback support recorded; the
    credits are the order's in that proportion, rounded down once (so refunding it all in parts leaves
    nothing). A lost dispute's own refund (``dispute_refunds``) is the same money as the dispute: not counted
    again."""
    gone = [r.amount for r in gw.refunds_of(payment_id) if r.status == "processed" and r.id not in dispute_refunds]
    gone += [d.amount for d in gw.disputes_of(payment_id) if d.status in DISPUTE_HOLDS]
    gone += chargebacks
    held = order_amount_minor - sum(gone)
    if held <= 0:
        return 0, True
    return proportional(held, order_amount_minor=order_amount_minor, order_credits=order_credits), False


def late_authorize(sim, payment_id: str, minutes: float) -> tuple[dict[str, Any], bool]:
    """``sim.late_authorize`` ``minutes`` after the payment's creation; the simulator before the capture
    windows (commit 744fc87) has no ``minutes_after_creation``: then the second value is False."""
    if "minutes_after_creation" in inspect.signature(sim.late_authorize).parameters:
        return sim.late_authorize(payment_id, deliver_webhooks=False, minutes_after_creation=minutes), True
    return sim.late_authorize(payment_id, deliver_webhooks=False), False


def pay_on_a_paid_order(sim, gateway_order_id: str, amount_minor: int | None) -> dict[str, Any]:
    """The anomaly: Razorpay captures one more payment on an order it already holds as paid.

    Razorpay binds one successful payment to an order and refunds a late one, except for
    ``partial_payment`` orders; the service still handles a second captured payment because it happens
    (two UPI intents completing, a gateway bug): refunded by us under the default duplicate-payment
    policy, the order staying paid, or sent to review (``second_captured_payment``) under ``review``.
    The simulator refuses it, so the order's status is lowered for this one checkout, under the
    simulator's lock; ``pay`` sets it back to paid.
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


def describe_event(event) -> tuple[str, str | None, str | None, str | None]:
    """``(event type, payment id, payment status in the snapshot, the refund or dispute it is about)`` of a
    simulator webhook event; the last is ``(id, amount, status)`` as text, or None."""
    try:
        payload = json.loads(event.body)["payload"]
        payment = payload["payment"]["entity"]
    except (ValueError, KeyError, TypeError):
        return event.event, None, None, None
    status = payment.get("status")
    if payment.get("amount_refunded"):
        status = f"{status}, {payment['amount_refunded']} refunded"
    about = None
    for kind in ("refund", "dispute"):
        entity = (payload.get(kind) or {}).get("entity")
        if entity:
            about = f"{entity.get('id')} {entity.get('amount')} {entity.get('status')}"
    return event.event, payment.get("id"), status, about


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
    plan: str = "payg"
    credits: int = 0


@dataclass(frozen=True)
class OurEntry:
    id: int
    order_id: str
    organisation_id: str
    gateway_payment_id: str
    credits: int
    amount_minor: int
    currency: str
    entry: str = "grant"  #: grant | reversal | restore
    kind: str = "credits"
    money_event_id: str = ""
    shortfall: int = 0
    gateway: str = "razorpay"


@dataclass(frozen=True)
class OurRefund:
    id: int
    order_id: str
    gateway_payment_id: str
    gateway_refund_id: str | None
    amount_minor: int
    state: str  #: requested | pending | processed | failed
    origin: str
    idempotency_key: str | None = None


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
    refunds: list[OurRefund] = field(default_factory=list)

    def ledger_of(self, order_id: str) -> list[OurEntry]:
        return [e for e in self.ledger if e.order_id == order_id]

    def grants_of(self, order_id: str) -> list[OurEntry]:
        return [e for e in self.ledger if e.order_id == order_id and e.entry == "grant"]

    def still_granted(self, order_id: str) -> int:
        """Σ (credits − shortfall) of the order's entries: what it still grants, spent or not."""
        return sum(e.credits - e.shortfall for e in self.ledger_of(order_id))

    def in_flight(self) -> list[OurRefund]:
        return [r for r in self.refunds if r.state in ("requested", "pending")]

    def fingerprint(self) -> tuple:
        return (tuple(sorted((o.id, o.state, o.granted_payment_id) for o in self.orders.values())),
                len(self.ledger), tuple(sorted((k, v.status, v.amount_refunded) for k, v in self.payments.items())),
                tuple(self.pending_inbox), tuple((r.id, r.state) for r in self.refunds))


def our_view(deps) -> OurView:
    with deps.sessions() as session:
        orders = {o.id: OurOrder(o.id, o.gateway_order_id, o.organisation_id, o.state, o.state_reason,
                                 o.granted_payment_id, o.amount_minor, o.currency, o.created_at, o.next_check_at,
                                 o.plan, o.credits or 0)
                  for o in session.execute(select(Order)).scalars()}
        ledger = [OurEntry(e.id, e.order_id, e.organisation_id, e.gateway_payment_id, e.credits, e.amount_minor,
                           e.currency, e.entry, e.kind, e.money_event_id, e.shortfall or 0, e.gateway)
                  for e in session.execute(select(LedgerEntry).order_by(LedgerEntry.id)).scalars()]
        refunds = [OurRefund(r.id, r.order_id, r.gateway_payment_id, r.gateway_refund_id, r.amount_minor, r.state,
                             r.origin, r.idempotency_key)
                   for r in session.execute(select(Refund).order_by(Refund.id)).scalars()]
        transitions = [OurTransition(t.id, t.order_id, t.from_state, t.to_state, t.reason, t.gateway_payment_id)
                       for t in session.execute(select(OrderTransition).order_by(OrderTransition.id)).scalars()]
        balances = {o.id: o.credit_balance for o in session.execute(select(Organisation)).scalars()}
        payments = {p.gateway_payment_id: OurPayment(p.order_id, p.status, p.amount_refunded_minor or 0, p.amount_minor)
                    for p in session.execute(select(GatewayPayment)).scalars()}
        pending = list(session.execute(select(InboxEvent.id).where(InboxEvent.status == "pending")
                                       .order_by(InboxEvent.id)).scalars())
    return OurView(orders, ledger, transitions, balances, payments, pending, refunds)


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


# --- refunds and disputes at the gateway -------------------------------------------------------------------

def pending_at_gateway(sim) -> list[str]:
    """Razorpay refunds still ``pending`` (their ``refund_processed_after_s`` has not passed)."""
    return [r["id"] for r in sim.razorpay.snapshot()["refunds"] if r["status"] == "pending"]


def let_refunds_finish(sim, timeout_s: float = 5.0) -> list[str]:
    """The gateway's time moves past every pending refund's processing delay; returns the refunds that were
    pending, once the simulator's timer thread has settled each (their webhooks are held, like every other)."""
    pending = pending_at_gateway(sim)
    if not pending:
        return []
    sim.advance_clock(sim.config.refund_processed_after_s + 1)
    deadline = time.monotonic() + timeout_s
    while set(pending) & set(pending_at_gateway(sim)):
        assert time.monotonic() < deadline, f"the simulator did not settle the pending refunds {pending}"
        time.sleep(0.002)
    return pending
