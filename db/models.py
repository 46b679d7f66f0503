"""Tables. Amounts are integer minor units plus a currency; times are timezone-aware UTC.

Idempotency lives here, in unique constraints, not in application code:
one ledger entry per order and per gateway payment, one payment row per (gateway, payment id),
one inbox row per (gateway, event id).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
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
    #: The ``sequence`` of the order's last outbox event (written under the order's lock, so no read is needed).
    event_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


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


GRANT = text("entry = 'grant'")


class LedgerEntry(Base):
    """One movement of credits (or of a plan term, or a recorded payment). Append-only: never updated or
    deleted (a trigger refuses it on Postgres, migration 0005). A balance is the sum of its ledger's
    ``credits``.

    - ``grant`` (+credits): what a paid order bought, once per order and per gateway payment;
    - ``reversal`` (−credits taken): a processed refund, a dispute's hold, a recorded chargeback;
    - ``restore`` (+credits): a won dispute gives back what its hold took.

    ``shortfall`` is what a reversal should have taken but could not, because the credits were spent
    (a restore cancels its hold's shortfall with a negative one). Credits an order still grants =
    Σ credits − Σ shortfall of its entries. ``money_event_id`` names the money event (the payment, the
    refund, the dispute's hold or restore): unique per gateway and entry, so every input path is
    exactly-once."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("gateway", "entry", "money_event_id"),
        Index("ux_ledger_entries_grant_order", "order_id", unique=True, postgresql_where=GRANT, sqlite_where=GRANT),
        Index("ux_ledger_entries_grant_payment", "gateway", "gateway_payment_id", unique=True,
              postgresql_where=GRANT, sqlite_where=GRANT),
        Index("ix_ledger_entries_order_id", "order_id"),
        # what finance is owed back: the shortfall gauge reads only these rows (ops/exposition.py)
        Index("ix_ledger_entries_shortfall", "gateway", postgresql_where=text("shortfall <> 0"),
              sqlite_where=text("shortfall <> 0")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    gateway: Mapped[str] = mapped_column(String(16))
    gateway_payment_id: Mapped[str] = mapped_column(String(64))
    entry: Mapped[str] = mapped_column(String(16), default="grant")  # grant | reversal | restore
    #: grants: credits | pro_plan | payment_recorded; reversals and restores: refund | dispute | chargeback
    kind: Mapped[str] = mapped_column(String(16))
    money_event_id: Mapped[str] = mapped_column(String(128))
    credits: Mapped[int] = mapped_column(BigInteger, default=0)
    shortfall: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Refund(Base):
    """One refund of one payment: asked for by us (support, a review, the duplicate-payment policy) or
    seen at the gateway (its dashboard, an auto-refund). Its lifecycle is :mod:`worker.domain.refund_state`."""

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("gateway", "gateway_refund_id"),
        UniqueConstraint("gateway", "idempotency_key"),
        Index("ix_refunds_payment", "gateway", "gateway_payment_id"),
        Index("ix_refunds_due", "next_check_at", postgresql_where=text("next_check_at IS NOT NULL"),
              sqlite_where=text("next_check_at IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(16))
    gateway_payment_id: Mapped[str] = mapped_column(String(64))
    #: NULL until the gateway answers (Razorpay ``rfnd_…``, PayGlocal the refund's own gid)
    gateway_refund_id: Mapped[str | None] = mapped_column(String(80))
    #: ours: Razorpay ``X-Refund-Idempotency``, PayGlocal ``merchantTxnId``; NULL for refunds we did not ask for
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16))  # requested | pending | processed | failed
    wire_status: Mapped[str | None] = mapped_column(String(32))
    origin: Mapped[str] = mapped_column(String(16))  # support | review | duplicate | gateway | auto
    #: support chose to refund more than the customer's unspent credits (the reason says why)
    override_spent: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(120))
    failure_reason: Mapped[str | None] = mapped_column(String(300))
    #: the lost dispute whose money this refund is (Razorpay refunds a lost dispute's customer with a refund entity)
    covered_by_dispute: Mapped[str | None] = mapped_column(String(80))
    #: when the gateway made it (its ``created_at``); NULL when not told
    gateway_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: in flight: when to ask the gateway again (back-off); NULL once final
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    check_count: Mapped[int] = mapped_column(Integer, default=0)


class Dispute(Base):
    """One dispute (chargeback) of one payment, as the gateway reports it or as support recorded it
    (PayGlocal has no dispute API). Its lifecycle is :mod:`worker.domain.dispute_state`."""

    __tablename__ = "disputes"
    __table_args__ = (UniqueConstraint("gateway", "gateway_dispute_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(16))
    gateway_dispute_id: Mapped[str] = mapped_column(String(80))
    gateway_payment_id: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(16))  # open | under_review | won | lost | closed
    phase: Mapped[str | None] = mapped_column(String(32))
    reason_code: Mapped[str | None] = mapped_column(String(120))
    respond_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    amount_deducted_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: when the gateway opened it (its ``created_at``); NULL when not told (a recorded chargeback)
    gateway_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the disputed credits are held (reversed) now; ``generation`` counts holds (a reopened case holds again)
    held: Mapped[bool] = mapped_column(Boolean, default=False)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(16))  # gateway | support
    reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


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


class OrderEvent(Base):
    """The transactional outbox: a change a customer or the billing backend cares about, written in the same
    transaction as the change, with a stable id (the Standard Webhooks ``webhook-id``) and its place among
    the order's events (``sequence``: delivered in that order, per endpoint)."""

    __tablename__ = "order_events"
    __table_args__ = (UniqueConstraint("event_id"), UniqueConstraint("order_id", "sequence"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    organisation_id: Mapped[str] = mapped_column(String(64), index=True)
    sequence: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EventDelivery(Base):
    """One event for one endpoint: pending (with its next attempt), delivered, or dead (its attempts spent,
    waiting for a replay; the order's later events wait behind it so that order is kept)."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        UniqueConstraint("order_event_id", "endpoint"),
        Index("ix_event_deliveries_order", "endpoint", "order_id", "sequence"),
        Index("ix_event_deliveries_due", "next_attempt_at", postgresql_where=text("state = 'pending'"),
              sqlite_where=text("state = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_event_id: Mapped[int] = mapped_column(ForeignKey("order_events.id"))
    endpoint: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(String(40))
    sequence: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: a sender holds this delivery until then (it is sending it now); NULL when nobody does
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryAttempt(Base):
    """The delivery log: every attempt to send an event to an endpoint, and what came back."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("event_deliveries.id"), index=True)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300))
    duration_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrderRequest(Base):
    """An ``Idempotency-Key`` of ``POST /orders``: the request it came with (a hash) and the answer given, so
    the same key with the same body gets the same order (kept at least 24 hours)."""

    __tablename__ = "order_requests"
    __table_args__ = (Index("ix_order_requests_created_at", "created_at"),)

    organisation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # started | done
    order_id: Mapped[str | None] = mapped_column(String(40))
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SettlementRow(Base):
    """One settled transaction as the gateway reported it (Razorpay's recon rows, an imported PayGlocal report
    row), kept as received (``raw``), once per gateway, kind and entity (re-pulls and overlaps change nothing);
    ``bucket`` is what matching found (:mod:`worker.domain.settlement`), ``order_id`` the order it concerns."""

    __tablename__ = "settlement_rows"
    __table_args__ = (
        UniqueConstraint("gateway", "kind", "entity_id"),
        Index("ix_settlement_rows_bucket", "gateway", "bucket"),
        Index("ix_settlement_rows_settled_at", "settled_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))  # payment | refund | adjustment | transfer | other
    entity_id: Mapped[str] = mapped_column(String(80))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    fee_minor: Mapped[int] = mapped_column(BigInteger, default=0)  #: includes tax_minor
    tax_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credit_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    debit_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    settlement_id: Mapped[str | None] = mapped_column(String(80))
    utr: Mapped[str | None] = mapped_column(String(80))
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payment_id: Mapped[str | None] = mapped_column(String(80))  #: a refund's or a deduction's payment
    gateway_order_id: Mapped[str | None] = mapped_column(String(80))
    dispute_id: Mapped[str | None] = mapped_column(String(80))
    source: Mapped[str] = mapped_column(String(80))  #: ``api`` or ``import:<file sha-256, 16 hex>``
    raw: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    bucket: Mapped[str | None] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(40))
    matched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: settled but not credited: the recheck this prompted (once)
    recheck_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SettlementPull(Base):
    """Where the pull of one gateway's settled transactions of one day stands: the next page's ``skip``, and
    whether the day is complete (a short page seen, and old enough that nothing more can settle on it)."""

    __tablename__ = "settlement_pulls"

    gateway: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    next_skip: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SettlementImport(Base):
    """An imported settlement report file (PayGlocal), by its SHA-256: the same file twice imports once."""

    __tablename__ = "settlement_imports"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str] = mapped_column(String(255))
    rows: Mapped[int] = mapped_column(Integer)
    imported_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
