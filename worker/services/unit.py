"""The unit of work: one database transaction, and the only place that changes what we hold.

It locks orders, applies the state machine's decisions (through :mod:`worker.services.apply`, the
one writer of state and ledger), writes transitions, audit rows, check leases and inbox marks, and
rolls back unless :meth:`UnitOfWork.commit` is called (the Cosmic Python pattern)::

    with deps.unit() as uow:
        order = uow.order(order_id, lock=True)
        decision = uow.apply(order, evidence)
        uow.commit()

Network calls never happen inside a unit: read, leave, ask the gateway, then open a new unit and
decide on the row as it is *now*.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from db import queries
from db.models import Dispute, GatewayPayment, InboxEvent, Order, Refund, SupportAction
from gateways.port import RemoteDispute, RemoteRefund
from worker.domain.errors import UnknownOrder
from worker.domain.order_state import INITIAL_STATE, Decision, Evidence, OrderSnapshot, Policy, evolve
from worker.domain.schedule import Schedule
from worker.services import apply, money, outbox


def printable(text: str) -> str:
    """Text safe to store in Postgres (no NUL bytes), still telling what was sent."""
    return text.replace("\x00", "\\x00")


@dataclass(frozen=True, slots=True)
class Rules:
    """What a unit needs to decide: the clock and the timing rules."""

    now: Callable[[], datetime]
    policy: Policy
    schedule: Schedule
    endpoints: tuple[outbox.Endpoint, ...] = ()  #: where order events go (fanned out at commit)
    #: Told the orders with new event deliveries once they are committed, to send them now (the scheduler's
    #: round sends whatever this misses). Must not raise: the transaction is already committed.
    deliver_now: Callable[[list[str]], None] | None = None


@dataclass(frozen=True, slots=True)
class Kept:
    """An inbox row kept by :meth:`UnitOfWork.keep_once`: ``new`` unless it was a duplicate, ``pending``
    while no worker has finished it."""

    inbox_id: int
    new: bool
    pending: bool


class UnitOfWork:
    """One transaction over orders, payments, ledger, inbox and audit. Not thread-safe: one per use."""

    def __init__(self, sessions: sessionmaker[Session], rules: Rules) -> None:
        self._sessions, self._rules = sessions, rules
        self._committed = False

    def __enter__(self) -> Self:
        # No autoflush: a unit's ORM changes (the inbox row's attempts, order id and mark; the order's
        # fields) go out as one UPDATE each at commit, not one per query that happens to follow them.
        self.session = self._sessions(autoflush=False)
        self.now = self._rules.now()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if not self._committed:
                self.session.rollback()
        finally:
            self.session.close()

    def commit(self) -> None:
        fanned = outbox.fan_out(self.session, self._rules.endpoints, now=self.now)  # with the events, or not at all
        self.session.commit()
        self._committed = True
        if fanned and self._rules.deliver_now is not None:
            self._rules.deliver_now(fanned)

    # --- orders -----------------------------------------------------------------------------------

    def order(self, order_id: str, *, lock: bool = False) -> Order:
        order = queries.get_order(self.session, order_id, lock=lock)
        if order is None:
            raise UnknownOrder(f"no order {order_id!r}")
        return order

    def find_order(self, gateway: str, gateway_order_id: str, *, lock: bool = False) -> Order | None:
        return queries.find_order_by_gateway_id(self.session, gateway, gateway_order_id, lock=lock)

    def payments(self, order_id: str) -> list[GatewayPayment]:
        return queries.payments_of(self.session, order_id)

    def snapshot(self, order: Order) -> OrderSnapshot:
        return apply.snapshot(self.session, order)

    def add_order(self, order: Order) -> None:
        """A new order enters the machine in its initial state."""
        if order.state != INITIAL_STATE.value:
            raise ValueError(f"a new order starts {INITIAL_STATE}, not {order.state}")
        self.session.add(order)
        self.session.flush()

    def apply(self, order: Order, evidence: Evidence) -> Decision:
        """Feed what the gateway said to the state machine and persist its decision."""
        return apply.apply_evidence(self.session, order, evidence, now=self.now, policy=self._rules.policy,
                                    schedule=self._rules.schedule)

    def move(self, order: Order, decision: Decision, *, source: str, flag_reason: str | None = None) -> bool:
        """Persist a move decided outside :meth:`apply` (support, order creation), checked against the
        transition table first. Returns whether a grant was made."""
        evolve(self.snapshot(order), decision)  # raises IllegalTransition before anything is written
        for payment in decision.flagged:
            queries.flag_payment(self.session, gateway=order.gateway, gateway_payment_id=payment.gateway_payment_id,
                                 reason=flag_reason or decision.reason)
        granted = apply.apply_move(self.session, order, decision, source=source, now=self.now,
                                   policy=self._rules.policy)
        order.updated_at = self.now
        return granted

    # --- money after the credit ------------------------------------------------------------------------

    def observe_refund(self, order: Order, remote: RemoteRefund) -> Refund:
        """What the gateway says of a refund of this (locked) order: its lifecycle moves, credits reversed once."""
        return money.observe_refund(self.session, order, remote, now=self.now, policy=self._rules.policy)

    def observe_dispute(self, order: Order, remote: RemoteDispute) -> Dispute:
        """What the gateway says of a dispute of this (locked) order: held at onset, restored on a win."""
        return money.observe_dispute(self.session, order, remote, now=self.now, policy=self._rules.policy)

    # --- check leases -------------------------------------------------------------------------------

    def take_lease(self, order: Order, *, lease_s: int) -> bool:
        """True if this caller may check the order now (no other check holds it)."""
        return queries.take_check_lease(self.session, order.id, now=self.now,
                                        until=self.now + timedelta(seconds=lease_s))

    def release_lease(self, order_id: str) -> None:
        queries.release_check_lease(self.session, order_id)

    def lease_released(self, order_id: str) -> bool:
        return self.order(order_id).check_lease_until is None

    def claim_due(self, gateway: str, *, limit: int, lease_s: int) -> list[str]:
        return queries.claim_due_orders(self.session, gateway=gateway, now=self.now, limit=limit,
                                        lease_until=self.now + timedelta(seconds=lease_s))

    def claim_due_refunds(self, *, limit: int, lease_s: int) -> list[int]:
        return queries.claim_due_refunds(self.session, now=self.now, limit=limit,
                                         lease_until=self.now + timedelta(seconds=lease_s))

    def nudge(self, order: Order, *, at_most_every: timedelta) -> bool:
        return queries.nudge_order(self.session, order.id, now=self.now, not_checked_since=self.now - at_most_every)

    # --- audit --------------------------------------------------------------------------------------

    def audit(self, action: str, *, requested_by: str, reason: str | None, outcome: dict[str, Any],
              order_id: str | None = None) -> None:
        """Who did what to which order, why, and what came of it."""
        self.session.add(SupportAction(order_id=order_id, action=action, requested_by=requested_by, reason=reason,
                                       outcome=outcome, created_at=self.now))

    # --- inbox ----------------------------------------------------------------------------------------

    def inbox_row(self, inbox_id: int, *, lock: bool = True) -> InboxEvent | None:
        return queries.get_inbox_event(self.session, inbox_id, lock=lock)

    def pending_siblings(self, row: InboxEvent, *, limit: int, besides: Iterable[int] = ()) -> list[InboxEvent]:
        """The other verified webhooks about ``row``'s payment still pending, locked, but the rows ``besides``;
        rows another worker holds are skipped (it applies them)."""
        return queries.pending_siblings(self.session, row, limit=limit, besides=besides)

    def pending_about_payment(self, gateway: str, payment_id: str, *, skip_reason_prefix: str,
                              limit: int = 100) -> list[int]:
        """The ids of the verified webhooks about one payment still pending, oldest first, but those whose
        reason starts with ``skip_reason_prefix``."""
        return queries.pending_about_payment(self.session, gateway, payment_id, limit=limit,
                                             skip_reason_prefix=skip_reason_prefix)

    def keep_refused(self, values: dict[str, Any], reason: str) -> tuple[int, str]:
        """Keep refused input, closed, with no event id; returns its id and the reason kept."""
        reason = printable(reason)[:500]
        row = InboxEvent(**values, received_at=self.now, status="rejected", reason=reason, processed_at=self.now)
        self.session.add(row)
        self.session.flush()
        return row.id, reason

    def keep_once(self, values: dict[str, Any]) -> Kept:
        """Keep verified input as pending, deduped on ``(gateway, event_id)``."""
        inserted = queries.insert_ignore(self.session, InboxEvent, {"received_at": self.now, **values,
                                                                    "status": "pending"},
                                         conflict=["gateway", "event_id"])
        if inserted is not None:
            return Kept(inserted, new=True, pending=True)
        existing = queries.find_inbox_event(self.session, values["gateway"], values["event_id"])
        return Kept(existing.id, new=False, pending=existing.status == "pending")

    def mark(self, row: InboxEvent, status: str, reason: str) -> None:
        """Close an inbox row: processed, rejected or ignored, with why."""
        row.status, row.reason, row.processed_at = status, printable(reason)[:500], self.now

    def reopen_inbox(self, *, ids: list[int] | None, since: datetime | None, until: datetime | None,
                     requested_by: str) -> list[int]:
        """Put stored webhooks back to pending (support's replay); returns their ids."""
        stmt = select(InboxEvent.id).where(InboxEvent.kind == "webhook")
        if ids:
            stmt = stmt.where(InboxEvent.id.in_(ids))
        if since:
            stmt = stmt.where(InboxEvent.received_at >= since)
        if until:
            stmt = stmt.where(InboxEvent.received_at < until)
        chosen = list(self.session.execute(stmt.order_by(InboxEvent.id)).scalars())
        if chosen:
            self.session.execute(update(InboxEvent).where(InboxEvent.id.in_(chosen))
                                 .values(status="pending", reason=f"replayed by {requested_by}", processed_at=None))
        return chosen

    def requeue_stale_inbox(self, *, older_than: timedelta, limit: int) -> list[int]:
        return queries.claim_stale_inbox(self.session, received_before=self.now - older_than,
                                         requeued_before=self.now - older_than, now=self.now, limit=limit)
