"""The transactional outbox: order events written in the same transaction as the change they tell of.

Writers (:mod:`worker.services.apply`, :mod:`worker.services.money`) call :func:`record` with the order they
hold locked; the order's ``event_sequence`` gives the event its place without a read. The unit of work fans
each new event out to the configured endpoints (:func:`fan_out`) just before it commits, so an event and its
deliveries exist together or not at all; :mod:`worker.services.deliveries` sends them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from db.models import EventDelivery, Order, OrderEvent
from worker.domain.events import EventType, customer_status, event_id, payload

_NEW = "recon_outbox_new"  #: session.info key: the events this transaction wrote


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What fan-out needs of an endpoint: its name, and from when it takes events."""

    name: str
    since: datetime | None = None


def order_snapshot(order: Order, *, refunded_minor: int = 0) -> dict[str, Any]:
    return {"id": order.id, "organisation_id": order.organisation_id, "plan": order.plan, "credits": order.credits,
            "amount_minor": order.amount_minor, "tax_minor": order.tax_minor, "currency": order.currency,
            "gateway": order.gateway, "state": order.state,
            "status": customer_status(order.state, amount_minor=order.amount_minor, refunded_minor=refunded_minor)}


def record(session: Session, order: Order, kind: EventType, *, now: datetime, refunded_minor: int = 0,
           **details: Any) -> OrderEvent:
    """Write one event about ``order`` (locked by the caller) into the outbox of this transaction."""
    order.event_sequence = (order.event_sequence or 0) + 1
    sequence = order.event_sequence
    name = event_id(order.id, sequence)
    row = OrderEvent(event_id=name, order_id=order.id, organisation_id=order.organisation_id, sequence=sequence,
                     type=kind.value, created_at=now,
                     payload=payload(kind, event=name, sequence=sequence, at=now,
                                     order=order_snapshot(order, refunded_minor=refunded_minor), details=details))
    session.add(row)
    session.info.setdefault(_NEW, []).append(row)
    return row


def fan_out(session: Session, endpoints: Iterable[Endpoint], *, now: datetime) -> list[str]:
    """One pending delivery per new event and endpoint; returns the orders that have new deliveries."""
    new: list[OrderEvent] = session.info.pop(_NEW, [])
    endpoints = tuple(endpoints)
    if not new or not endpoints:
        return []  # the events go in with the commit; no flush of their own
    session.flush()  # the events' ids
    orders: dict[str, None] = {}
    for endpoint in endpoints:
        for event in new:
            if endpoint.since is not None and event.created_at < endpoint.since:
                continue
            session.add(EventDelivery(order_event_id=event.id, endpoint=endpoint.name, order_id=event.order_id,
                                      sequence=event.sequence, state="pending", attempts=0, next_attempt_at=now,
                                      created_at=now))
            orders[event.order_id] = None
    return list(orders)
