"""Tables. Amounts are integer minor units plus a currency; times are timezone-aware UTC.

Idempotency lives here, in unique constraints, not in application code:
one ledger entry per order and per gateway payment, one payment row per (gateway, payment id),
one inbox row per (gateway, event id).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, UTCDateTime

#: Autoincrementing 64-bit keys on Postgres, plain INTEGER PRIMARY KEY on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(8))
    plan: Mapped[str] = mapped_column(String(16), default="payg")
    plan_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    credit_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("organisation_id", "email"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(16))  # admin | operator


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("gateway", "gateway_order_id"),
        Index("ix_orders_due", "next_check_at", postgresql_where=text("next_check_at IS NOT NULL"),
              sqlite_where=text("next_check_at IS NOT NULL")),
        Index("ix_orders_state_created_at", "state", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    requested_by: Mapped[str] = mapped_column(ForeignKey("members.id"))
    plan: Mapped[str] = mapped_column(String(16))
    credits: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_minor: Mapped[int] = mapped_column(BigInteger)
    tax_rate_bp: Mapped[int] = mapped_column(Integer)
    tax_minor: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    gateway: Mapped[str] = mapped_column(String(16))
    gateway_order_id: Mapped[str | None] = mapped_column(String(64))
    manual_capture: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16))
    state_reason: Mapped[str | None] = mapped_column(String(64))
    granted_payment_id: Mapped[str | None] = mapped_column(String(64))
    refund_policy_accepted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the order is next due for a gateway check; NULL when no check is planned.
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    check_count: Mapped[int] = mapped_column(Integer, default=0)
    #: When we last saw a new payment attempt; the payment window runs from here (or creation).
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: A worker checking the order holds it until then, so no order is checked twice at once.
    check_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class GatewayPayment(Base):
    """The latest status we saw of one payment attempt at the gateway."""

    __tablename__ = "gateway_payments"
    __table_args__ = (UniqueConstraint("gateway", "gateway_payment_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(16))
    gateway_payment_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    amount_refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    failure_kind: Mapped[str | None] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(String(200))
    #: Set when the state machine sent this payment to review (second capture, mismatch, refund).
    flag_reason: Mapped[str | None] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerEntry(Base):
    """What a paid order granted: credits, a plan year, or a recorded payment. Never updated."""

    __tablename__ = "ledger_entries"
    __table_args__ = (UniqueConstraint("order_id"), UniqueConstraint("gateway", "gateway_payment_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    gateway: Mapped[str] = mapped_column(String(16))
    gateway_payment_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # credits | pro_plan | payment_recorded
    credits: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InboxEvent(Base):
    """Every webhook and callback, stored raw before it is acknowledged, with what became of it."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        UniqueConstraint("gateway", "event_id"),
        Index("ix_inbox_events_status", "status", "received_at"),
        # the other pending webhooks about one payment, taken together by one worker (migration 0004)
        Index("ix_inbox_events_pending_payment", "gateway", "gateway_payment_id",
              postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))  # webhook | callback
    #: The gateway's event id; NULL for rejected input, so a forgery cannot squat a real id.
    event_id: Mapped[str | None] = mapped_column(String(128))
    event_type: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(String(40), index=True)
    gateway_payment_id: Mapped[str | None] = mapped_column(String(64))
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))  # pending | processed | rejected | ignored
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: When the inbox sweep last re-enqueued this row (its first enqueue may have been lost).
    requeued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OrderTransition(Base):
    """The audit trail of every state change and why it happened."""

    __tablename__ = "order_transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    gateway_payment_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SupportAction(Base):
    """Who asked support to do what to which order, and what they found."""

    __tablename__ = "support_actions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[str | None] = mapped_column(String(40), index=True)
    action: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
