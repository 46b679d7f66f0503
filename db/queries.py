"""Plain query functions. No repository classes, no HTTP."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, TextClause, bindparam, func, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from db.models import Dispute, GatewayPayment, InboxEvent, LedgerEntry, Order, OrderTransition, Organisation, Refund


def insert_ignore(session: Session, model: type, values: dict[str, Any], conflict: Sequence[str]) -> Any | None:
    """INSERT … ON CONFLICT DO NOTHING; returns the new primary key, or None when the row existed.
    ``conflict`` names the unique columns; empty means any unique constraint or (partial) unique index.

    The statement is a typed ``text()`` built once per shape: SQLAlchemy never caches the dialects'
    ``insert().on_conflict_do_nothing()`` (``inherit_cache = False``), so building it per call compiled it
    every time (a fifth of a webhook's intake CPU, bench/results/profile-webhook-path.txt). Both
    PostgreSQL and SQLite (3.35+) speak this SQL. It runs on the session's connection (same transaction), not
    through ``Session.execute``, whose ORM layer costs as much again for a statement that loads no object."""
    table = model.__table__
    values = {**_python_defaults(table, values), **values}
    stmt = _insert_ignoring(table, tuple(sorted(values)), tuple(conflict))
    return session.connection().execute(stmt, values).scalar_one_or_none()  # Core: no ORM state to keep in step


def _python_defaults(table: Table, given: dict[str, Any]) -> dict[str, Any]:
    """The model's Python-side column defaults for the columns not given (a ``text()`` insert skips them)."""
    return {key: default.arg(None) if default.is_callable else default.arg
            for key, default in _defaulted_columns(table) if key not in given}


@lru_cache(maxsize=64)
def _defaulted_columns(table: Table) -> tuple[tuple[str, Any], ...]:
    """The table's columns with a Python-side default (SQL-side defaults are the database's), once per table."""
    return tuple((column.key, column.default) for column in table.columns
                 if column.default is not None and not column.primary_key
                 and (column.default.is_scalar or column.default.is_callable))


@lru_cache(maxsize=64)
def _insert_ignoring(table: Table, keys: tuple[str, ...], conflict: tuple[str, ...]) -> TextClause:
    pk = next(iter(table.primary_key.columns))
    target = f"({', '.join(conflict)}) " if conflict else ""  # none: any unique constraint or index
    sql = (f"INSERT INTO {table.name} ({', '.join(keys)}) VALUES ({', '.join(':' + k for k in keys)}) "
           f"ON CONFLICT {target}DO NOTHING RETURNING {pk.name}")
    return text(sql).bindparams(*(bindparam(k, type_=table.c[k].type) for k in keys)).columns(pk)


# The hottest reads and writes (every check and event runs them), built once: building a statement costs
# more CPU than SQLAlchemy's compiled cache saves (issue 13's profile).
_ORDER = select(Order).where(Order.id == bindparam("order_id"))
_ORDER_LOCKED = _ORDER.with_for_update()
_PAYMENTS = select(GatewayPayment).where(GatewayPayment.order_id == bindparam("order_id")).order_by(GatewayPayment.id)
_TAKE_LEASE = (update(Order).where(Order.id == bindparam("order_id"))
               .where((Order.check_lease_until.is_(None)) | (Order.check_lease_until < bindparam("now")))
               .values(check_lease_until=bindparam("until")))
_ORDER_BY_GATEWAY_ID = select(Order).where(Order.gateway == bindparam("gateway"),
                                           Order.gateway_order_id == bindparam("gateway_order_id"))
_ORDER_BY_GATEWAY_ID_LOCKED = _ORDER_BY_GATEWAY_ID.with_for_update()
_INBOX_EVENT = select(InboxEvent).where(InboxEvent.id == bindparam("inbox_id"))
_INBOX_EVENT_LOCKED = _INBOX_EVENT.with_for_update()
_INBOX_EVENT_BY_EVENT_ID = select(InboxEvent).where(InboxEvent.gateway == bindparam("gateway"),
                                                    InboxEvent.event_id == bindparam("event_id"))
_PENDING_WEBHOOKS = (InboxEvent.status == "pending", InboxEvent.kind == "webhook", InboxEvent.event_id.is_not(None))
_PENDING_SIBLINGS = (select(InboxEvent)
                     .where(InboxEvent.gateway == bindparam("gateway"),
                            InboxEvent.gateway_payment_id == bindparam("payment_id"), *_PENDING_WEBHOOKS,
                            InboxEvent.id.not_in(bindparam("besides", expanding=True)))
                     .order_by(InboxEvent.id).limit(bindparam("limit")).with_for_update(skip_locked=True))
_PENDING_ABOUT_PAYMENT = (select(InboxEvent.id)
                          .where(InboxEvent.gateway == bindparam("gateway"),
                                 InboxEvent.gateway_payment_id == bindparam("payment_id"), *_PENDING_WEBHOOKS,
                                 func.coalesce(InboxEvent.reason, "").not_like(bindparam("skip_reason")))
                          .order_by(InboxEvent.id).limit(bindparam("limit")))
_ADD_CREDITS = (update(Organisation).where(Organisation.id == bindparam("organisation_id"))
                .values(credit_balance=Organisation.credit_balance + bindparam("credits")))


def get_order(session: Session, order_id: str, *, lock: bool = False) -> Order | None:
    return session.execute(_ORDER_LOCKED if lock else _ORDER, {"order_id": order_id}).scalar_one_or_none()


def find_order_by_gateway_id(session: Session, gateway: str, gateway_order_id: str, *,
                             lock: bool = False) -> Order | None:
    return session.execute(_ORDER_BY_GATEWAY_ID_LOCKED if lock else _ORDER_BY_GATEWAY_ID,
                           {"gateway": gateway, "gateway_order_id": gateway_order_id}).scalar_one_or_none()


def get_inbox_event(session: Session, inbox_id: int, *, lock: bool = False) -> InboxEvent | None:
    return session.execute(_INBOX_EVENT_LOCKED if lock else _INBOX_EVENT, {"inbox_id": inbox_id}).scalar_one_or_none()


def find_inbox_event(session: Session, gateway: str, event_id: str) -> InboxEvent | None:
    return session.execute(_INBOX_EVENT_BY_EVENT_ID, {"gateway": gateway, "event_id": event_id}).scalar_one_or_none()


def pending_siblings(session: Session, row: InboxEvent, *, limit: int,
                     besides: Iterable[int] = ()) -> list[InboxEvent]:
    """The other verified webhooks about ``row``'s payment still pending, locked, but the rows ``besides`` (this
    transaction's, not flushed yet); rows another transaction holds are skipped."""
    params = {"gateway": row.gateway, "payment_id": row.gateway_payment_id, "besides": [row.id, *besides],
              "limit": limit}
    return list(session.execute(_PENDING_SIBLINGS, params).scalars())


def pending_about_payment(session: Session, gateway: str, payment_id: str, *, limit: int,
                          skip_reason_prefix: str) -> list[int]:
    """The ids of the verified webhooks about one payment still pending, oldest first (no lock), but those whose
    reason starts with ``skip_reason_prefix``."""
    params = {"gateway": gateway, "payment_id": payment_id, "limit": limit,
              "skip_reason": skip_reason_prefix + "%"}  # a constant prefix, without LIKE's % and _
    return list(session.connection().execute(_PENDING_ABOUT_PAYMENT, params).scalars())


def payments_of(session: Session, order_id: str) -> list[GatewayPayment]:
    return list(session.execute(_PAYMENTS, {"order_id": order_id}).scalars())


def record_payment(session: Session, *, order_id: str, gateway: str, values: dict[str, Any], now: datetime,
                   known: Mapping[str, GatewayPayment] | None = None) -> None:
    """Insert or update the stored status of one payment attempt. The caller holds the order's row lock
    and passes the freshest status it knows (``worker.domain.order_state.freshest``), and the order's
    payment rows it already read (``known``: updated in place, no query)."""
    key = {"gateway": gateway, "gateway_payment_id": values["gateway_payment_id"]}
    row = (known or {}).get(values["gateway_payment_id"])
    if row is not None:
        _update_payment(row, values, now)
        return
    new_id = insert_ignore(session, GatewayPayment, {**key, **values, "order_id": order_id, "first_seen_at": now,
                                                     "updated_at": now}, conflict=list(key))
    if new_id is not None:
        return
    _update_payment(session.execute(select(GatewayPayment).filter_by(**key)).scalar_one(), values, now)


def _update_payment(row: GatewayPayment, values: dict[str, Any], now: datetime) -> None:
    if any(getattr(row, name) != value for name, value in values.items()):
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = now


def flag_payment(session: Session, *, gateway: str, gateway_payment_id: str, reason: str) -> None:
    session.execute(update(GatewayPayment).where(GatewayPayment.gateway == gateway,
                                                 GatewayPayment.gateway_payment_id == gateway_payment_id)
                    .values(flag_reason=reason))


def add_credits(session: Session, organisation_id: str, credits: int) -> None:
    """On the session's connection (half the CPU of an ORM-enabled UPDATE, which also searches the session for
    the row); an Organisation the session holds has its balance expired, so a later read sees this one."""
    session.connection().execute(_ADD_CREDITS, {"organisation_id": organisation_id, "credits": credits})
    held = session.identity_map.get(identity_key(Organisation, organisation_id))
    if held is not None:
        session.expire(held, ["credit_balance"])


def ledger_sum(session: Session, organisation_id: str) -> int:
    stmt = select(func.coalesce(func.sum(LedgerEntry.credits), 0)).where(LedgerEntry.organisation_id == organisation_id)
    return int(session.execute(stmt).scalar_one())


def timeline(session: Session, order_id: str) -> dict[str, list[Any]]:
    """Everything we hold about one order, oldest first: payments, state changes, stored events, ledger entries
    (grants, reversals, restores), refunds and disputes."""
    def rows(model, *order_by):
        return list(session.execute(select(model).where(model.order_id == order_id).order_by(*order_by)).scalars())

    return {
        "payments": rows(GatewayPayment, GatewayPayment.id),
        "transitions": rows(OrderTransition, OrderTransition.id),
        "events": rows(InboxEvent, InboxEvent.id),
        "ledger": rows(LedgerEntry, LedgerEntry.id),
        "refunds": rows(Refund, Refund.id),
        "disputes": rows(Dispute, Dispute.id),
    }


def claim_due_orders(session: Session, *, gateway: str, now: datetime, limit: int, lease_until: datetime) -> list[str]:
    """Take up to ``limit`` due orders of one gateway, skipping rows another scheduler holds, and push
    their next check to ``lease_until`` so that no other round takes them again. Uses ``ix_orders_due``."""
    stmt = (select(Order.id).where(Order.next_check_at <= now, Order.gateway == gateway)
            .order_by(Order.next_check_at).limit(limit).with_for_update(skip_locked=True))
    ids = list(session.execute(stmt).scalars())
    if ids:
        session.execute(update(Order).where(Order.id.in_(ids)).values(next_check_at=lease_until))
    return ids


def claim_due_refunds(session: Session, *, now: datetime, limit: int, lease_until: datetime) -> list[int]:
    """Refunds in flight due for a look at the gateway (``ix_refunds_due``), pushed past a lease like orders."""
    stmt = (select(Refund.id).where(Refund.next_check_at <= now).order_by(Refund.next_check_at).limit(limit)
            .with_for_update(skip_locked=True))
    ids = list(session.execute(stmt).scalars())
    if ids:
        session.execute(update(Refund).where(Refund.id.in_(ids)).values(next_check_at=lease_until))
    return ids


def take_check_lease(session: Session, order_id: str, *, now: datetime, until: datetime) -> bool:
    """True if this caller may check the order now (no other check holds it)."""
    return session.execute(_TAKE_LEASE, {"order_id": order_id, "now": now, "until": until}).rowcount == 1


def release_check_lease(session: Session, order_id: str) -> None:
    session.execute(update(Order).where(Order.id == order_id).values(check_lease_until=None))


def nudge_order(session: Session, order_id: str, *, now: datetime, not_checked_since: datetime) -> bool:
    """Bring an order's next check forward to now, unless it was checked recently (rate limit)."""
    stmt = (update(Order).where(Order.id == order_id, Order.next_check_at.is_not(None))
            .where((Order.last_checked_at.is_(None)) | (Order.last_checked_at < not_checked_since))
            .values(next_check_at=now))
    return session.execute(stmt).rowcount == 1


def claim_stale_inbox(session: Session, *, received_before: datetime, requeued_before: datetime, now: datetime,
                      limit: int) -> list[int]:
    """Pending inbox rows whose processing never happened (lost enqueue, broker down), to enqueue again.

    A row is enqueued again only once its last enqueue is older than half its age: 1, 2, 4, 8 … minutes
    apart. A slow queue (not a lost message) then gets a few extra messages, not one per row per minute.
    """
    stmt = (select(InboxEvent.id, InboxEvent.received_at, InboxEvent.requeued_at)
            .where(InboxEvent.status == "pending", InboxEvent.received_at < received_before)
            .where((InboxEvent.requeued_at.is_(None)) | (InboxEvent.requeued_at < requeued_before))
            .order_by(InboxEvent.id).limit(limit).with_for_update(skip_locked=True))
    ids = [row_id for row_id, received_at, requeued_at in session.execute(stmt)
           if requeued_at is None or now - requeued_at >= (now - received_at) / 2]
    if ids:
        session.execute(update(InboxEvent).where(InboxEvent.id.in_(ids)).values(requeued_at=now))
    return ids
