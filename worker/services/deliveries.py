"""Order events to the billing backend: signed HTTP webhooks (Standard Webhooks), at least once, in order per
order and endpoint.

- **Signed** with the ``standardwebhooks`` library: ``webhook-id`` is the event's stable id (a receiver
  dedupes on it), ``webhook-timestamp`` the attempt's time, ``webhook-signature`` one ``v1,…`` per secret
  of the endpoint (rotation: both secrets sign while the receiver switches).
- **In order.** An order's events go to an endpoint one at a time, by ``sequence``: only the first one not
  delivered (the *head*) is ever sent, so a failing event holds back the order's later ones, and a dead one
  (its attempts spent) holds them until it is replayed (:func:`replay`).
- **At least once.** A sender takes the head with a short lease, sends outside any transaction, then
  records the answer and the attempt (the delivery log). A sender killed in between leaves the lease to run
  out; the scheduler's sweep (:func:`claim_due`) enqueues the order again and the same event (same
  ``webhook-id``) is sent again.
- Any answer but 2xx is a failure: retried after 5 s, 10 s, 20 s … at most an hour apart, dead after
  ``RECON_EVENT_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from db.models import DeliveryAttempt, EventDelivery, OrderEvent
from worker.deps import Deps
from worker.logging import get_logger
from worker.metrics import EVENT_DELIVERIES
from worker.services.support import audit
from worker.settings import EventEndpoint

FIRST_RETRY = timedelta(seconds=5)
LAST_RETRY = timedelta(hours=1)
#: How long a sweep's claim keeps a due delivery from being enqueued again, and a sender's lease past its timeout.
CLAIM = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Head:
    delivery_id: int
    event_id: str
    body: str


def retry_after(attempts: int) -> timedelta:
    return min(LAST_RETRY, FIRST_RETRY * (2 ** max(0, attempts - 1)))


def signature(endpoint: EventEndpoint, event_id: str, at: datetime, body: str) -> str:
    """``webhook-signature``: one ``v1,…`` per secret, space-separated (the spec's rotation)."""
    return " ".join(Webhook(secret.get_secret_value()).sign(event_id, at, body) for secret in endpoint.secrets)


def endpoint_named(deps: Deps, name: str) -> EventEndpoint | None:
    return next((e for e in deps.settings.event_endpoints if e.name == name), None)


def deliver_order(endpoint_name: str, order_id: str, *, deps: Deps,
                  transport: httpx.BaseTransport | None = None) -> int:
    """Send the order's undelivered events to the endpoint, head first, until one fails or none is left;
    returns how many were delivered."""
    endpoint = endpoint_named(deps, endpoint_name)
    log = get_logger(order_id=order_id, endpoint=endpoint_name)
    if endpoint is None:
        log.warning("event_endpoint_unknown")  # removed from the settings: its deliveries wait, kept
        return 0
    delivered = 0
    with httpx.Client(transport=transport, timeout=deps.settings.event_timeout_s, follow_redirects=False) as client:
        while (head := _lease_head(endpoint_name, order_id, deps=deps)) is not None:
            status, error, took_ms = _send(client, endpoint, head, deps=deps)
            if not _finish(head, status, error, took_ms, deps=deps):
                log.info("event_delivery_failed", event_id=head.event_id, status=status, error=error)
                return delivered
            delivered += 1
    return delivered


def _lease_head(endpoint: str, order_id: str, *, deps: Deps) -> Head | None:
    with deps.unit() as uow:
        head = uow.session.execute(
            select(EventDelivery).where(EventDelivery.endpoint == endpoint, EventDelivery.order_id == order_id,
                                        EventDelivery.state != "delivered")
            .order_by(EventDelivery.sequence).limit(1)).scalar_one_or_none()
        if head is None or head.state != "pending":
            return None  # all delivered, or a dead one holds the order's later events back
        lease = uow.now + timedelta(seconds=deps.settings.event_timeout_s) + CLAIM
        took = uow.session.execute(
            update(EventDelivery).where(EventDelivery.id == head.id, EventDelivery.state == "pending",
                                        (EventDelivery.lease_until.is_(None)) | (EventDelivery.lease_until < uow.now))
            .values(lease_until=lease)).rowcount
        if not took:
            return None  # another sender has it
        event = uow.session.get(OrderEvent, head.order_event_id)
        uow.commit()
        return Head(head.id, event.event_id, json.dumps(event.payload, separators=(",", ":"), sort_keys=True))


def _send(client: httpx.Client, endpoint: EventEndpoint, head: Head, *,
          deps: Deps) -> tuple[int | None, str | None, int]:
    at = deps.clock.now()
    headers = {"content-type": "application/json", "webhook-id": head.event_id,
               "webhook-timestamp": str(int(at.timestamp())),
               "webhook-signature": signature(endpoint, head.event_id, at, head.body)}
    started = time.perf_counter()
    try:
        response = client.post(endpoint.url, content=head.body.encode(), headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:300], int((time.perf_counter() - started) * 1000)
    took_ms = int((time.perf_counter() - started) * 1000)
    return response.status_code, None if response.is_success else response.text[:300], took_ms


def _finish(head: Head, status: int | None, error: str | None, took_ms: int, *, deps: Deps) -> bool:
    delivered = status is not None and 200 <= status < 300
    with deps.unit() as uow:
        row = uow.session.get(EventDelivery, head.delivery_id, with_for_update=True)
        uow.session.add(DeliveryAttempt(delivery_id=row.id, status_code=status, error=error, duration_ms=took_ms,
                                        created_at=uow.now))
        row.attempts, row.lease_until, row.last_status, row.last_error = row.attempts + 1, None, status, error
        if delivered:
            row.state, row.delivered_at, row.next_attempt_at = "delivered", uow.now, None
        elif row.attempts >= deps.settings.event_max_attempts:
            row.state, row.next_attempt_at = "dead", None
        else:
            row.next_attempt_at = uow.now + retry_after(row.attempts)
        outcome = row.state if row.state != "pending" else "failed"
        uow.commit()
    EVENT_DELIVERIES.labels(row.endpoint, outcome).inc()
    return delivered


def claim_due(*, deps: Deps, limit: int = 500) -> list[tuple[str, str]]:
    """The (endpoint, order) pairs with a delivery due, for the scheduler to enqueue; each claimed delivery is
    not due again for :data:`CLAIM`, so a slow queue does not get the same pair every round."""
    with deps.unit() as uow:
        now = uow.now
        due = list(uow.session.execute(
            select(EventDelivery.id, EventDelivery.endpoint, EventDelivery.order_id)
            .where(EventDelivery.state == "pending", EventDelivery.next_attempt_at <= now)
            .order_by(EventDelivery.next_attempt_at).limit(limit).with_for_update(skip_locked=True)))
        if not due:
            return []
        uow.session.execute(update(EventDelivery).where(EventDelivery.id.in_([d.id for d in due]))
                            .values(next_attempt_at=now + CLAIM))
        uow.commit()
    return list(dict.fromkeys((d.endpoint, d.order_id) for d in due))


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """One row of the delivery log's summary (``recon events list``, ``GET /events``)."""

    delivery_id: int
    endpoint: str
    order_id: str
    sequence: int
    event_id: str
    type: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


def list_deliveries(*, deps: Deps, order_id: str | None = None, state: str | None = None,
                    endpoint: str | None = None, limit: int = 200) -> list[DeliveryView]:
    """Deliveries, newest first: one order's (its story), the dead ones (the dead-letter view), or all."""
    query = (select(EventDelivery, OrderEvent.event_id, OrderEvent.type)
             .join(OrderEvent, OrderEvent.id == EventDelivery.order_event_id))
    query = _filtered(query, order_id=order_id, state=state, endpoint=endpoint)
    with deps.sessions() as session:
        rows = session.execute(query.order_by(EventDelivery.id.desc()).limit(limit)).all()
    return [DeliveryView(d.id, d.endpoint, d.order_id, d.sequence, event_id, kind, d.state, d.attempts,
                         d.last_status, d.last_error, d.next_attempt_at, d.delivered_at) for d, event_id, kind in rows]


def _filtered(query, *, order_id: str | None = None, state: str | None = None, endpoint: str | None = None,
              delivery_ids: list[int] | None = None):
    for column, wanted in ((EventDelivery.order_id, order_id), (EventDelivery.state, state),
                           (EventDelivery.endpoint, endpoint)):
        if wanted is not None:
            query = query.where(column == wanted)
    return query if delivery_ids is None else query.where(EventDelivery.id.in_(delivery_ids))


def replay(*, deps: Deps, delivery_ids: list[int] | None = None, endpoint: str | None = None,
           order_id: str | None = None, dead_only: bool = True) -> list[tuple[str, str]]:
    """Make deliveries pending and due now (dead ones by default; ``dead_only=False`` sends delivered ones
    again too, same ``webhook-id``); returns the (endpoint, order) pairs to send."""
    with deps.unit() as uow:
        query = _filtered(select(EventDelivery), order_id=order_id, endpoint=endpoint, delivery_ids=delivery_ids,
                          state="dead" if dead_only else None)
        rows = list(uow.session.execute(query.with_for_update()).scalars())
        for row in rows:
            row.state, row.next_attempt_at, row.lease_until, row.attempts = "pending", uow.now, None, 0
        uow.commit()
    return list(dict.fromkeys((r.endpoint, r.order_id) for r in rows))


def replay_audited(*, deps: Deps, send: Callable[[str, str], None], requested_by: str, reason: str,
                   delivery_ids: list[int] | None, order_id: str | None, again: bool) -> list[str]:
    """Support's replay (``recon events replay``, ``POST /events/replay``): :func:`replay`, ``send`` each
    (endpoint, order) to the deliverer, and the audit row; returns the orders queued."""
    pairs = replay(deps=deps, delivery_ids=delivery_ids, order_id=order_id, dead_only=not again)
    for endpoint, order in pairs:
        send(endpoint, order)
    orders = [order for _, order in pairs]
    audit("events_replay", deps=deps, requested_by=requested_by, reason=reason, order_id=order_id,
          outcome={"delivery_ids": delivery_ids or [], "again": again, "orders": orders})
    return orders
