"""The inbox: every webhook and callback is stored before it is acknowledged, then applied once.

``store_webhook`` runs in the web process: verify the signature over the raw bytes, store the
raw body and headers (rejected ones too, with the reason), dedupe on the gateway's event id.
``process_inbox_event`` runs in a worker: apply the event to its order in the same transaction
that marks it processed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from db import queries
from db.models import InboxEvent
from gateways.errors import MalformedEvent, SignatureInvalid
from worker.deps import Deps
from worker.domain.order_state import Decision, Evidence, Source
from worker.logging import get_logger
from worker.metrics import WEBHOOKS_RECEIVED
from worker.services.apply import apply_evidence
from worker.services.reconcile import capture_authorized, reconcile_order

#: Headers never stored: they may carry credentials of a proxy in front of us.
DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@dataclass(frozen=True, slots=True)
class Stored:
    """What became of an incoming webhook. ``enqueue`` is set when a worker must process it."""

    inbox_id: int
    status: str  # accepted | duplicate | rejected
    reason: str | None = None
    enqueue: bool = False


def storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v.replace("\x00", "\\x00") for k, v in headers.items() if k.lower() not in DROPPED_HEADERS}


#: What each gateway posts; anything else is kept and refused.
CONTENT_TYPES = {"razorpay": "application/json", "payglocal": "application/x-www-form-urlencoded"}


def store_rejected(gateway_name: str, raw_body: bytes, headers: Mapping[str, str], reason: str, *, deps: Deps,
                   outcome: str = "rejected", order_id: str | None = None) -> Stored:
    """Keep input we refuse, with the reason, for support (never with an event id)."""
    now = deps.clock.now()
    with deps.sessions.begin() as session:
        row = InboxEvent(gateway=gateway_name, kind="webhook", headers=storable_headers(headers), body=raw_body,
                         received_at=now, attempts=0, status="rejected", reason=reason, processed_at=now,
                         order_id=order_id)
        session.add(row)
        session.flush()
    get_logger(gateway=gateway_name).warning("webhook_rejected", inbox_id=row.id, reason=reason)
    WEBHOOKS_RECEIVED.labels(gateway_name, "webhook", outcome).inc()
    return Stored(row.id, "rejected", reason)


def store_webhook(gateway_name: str, raw_body: bytes, headers: Mapping[str, str], *, deps: Deps) -> Stored:
    """Verify and store one webhook delivery. Never loses the body, whatever it is."""
    now = deps.clock.now()
    base = {"gateway": gateway_name, "kind": "webhook", "headers": storable_headers(headers), "body": raw_body,
            "received_at": now, "attempts": 0}
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    expected = CONTENT_TYPES.get(gateway_name)
    if expected and content_type.split(";")[0].strip().lower() != expected:
        return store_rejected(gateway_name, raw_body, headers,
                              f"unsupported_content_type: {content_type[:100] or 'none'}, expected {expected}",
                              deps=deps)
    try:
        event = deps.gateway(gateway_name).verify_webhook(raw_body, headers)
        if any("\x00" in (text or "") for text in (event.event_id, event.event_type, event.gateway_order_id)):
            raise MalformedEvent("NUL bytes in the event id, type or order id")
    except (SignatureInvalid, MalformedEvent) as exc:
        reason = f"{'bad_signature' if isinstance(exc, SignatureInvalid) else 'malformed'}: {exc}"
        with deps.sessions.begin() as session:
            order_id = _nudge_claimed_order(session, gateway_name, raw_body, deps=deps)
        if order_id:
            reason += f"; order {order_id} brought forward for a gateway check"
        return store_rejected(gateway_name, raw_body, headers, reason, deps=deps, order_id=order_id,
                              outcome="bad_signature" if isinstance(exc, SignatureInvalid) else "rejected")
    with deps.sessions.begin() as session:
        inbox_id = queries.insert_ignore(session, InboxEvent, {
            **base, "event_id": event.event_id, "event_type": event.event_type, "status": "pending",
            "gateway_payment_id": event.payment.gateway_payment_id if event.payment else None,
        }, conflict=["gateway", "event_id"])
        if inbox_id is not None:
            stored = Stored(inbox_id, "accepted", enqueue=True)
        else:
            existing = queries.find_inbox_event(session, gateway_name, event.event_id)
            stored = Stored(existing.id, "duplicate", enqueue=existing.status == "pending")
    WEBHOOKS_RECEIVED.labels(gateway_name, "webhook", stored.status).inc()
    return stored


#: A rejected webhook brings its order's check forward at most this often (a misconfigured secret
#: must delay credits, never lose them; a flood of forgeries must not hammer the gateway).
NUDGE_AT_MOST_EVERY = timedelta(minutes=1)


def _nudge_claimed_order(session, gateway_name: str, raw_body: bytes, *, deps: Deps) -> str | None:
    """If an unverifiable webhook names an order we hold, check that order at the gateway soon."""
    claimed = deps.gateway(gateway_name).claimed_order_id(raw_body)
    order = queries.find_order_by_gateway_id(session, gateway_name, claimed) if claimed else None
    if order is None:
        return None
    now = deps.clock.now()
    queries.nudge_order(session, order.id, now=now, not_checked_since=now - NUDGE_AT_MOST_EVERY)
    return order.id


def process_inbox_event(inbox_id: int, *, deps: Deps) -> Decision | None:
    """Apply one stored webhook to its order, once. Returns the decision, or None if nothing applied."""
    now = deps.clock.now()
    with deps.sessions.begin() as session:
        row = queries.get_inbox_event(session, inbox_id, lock=True)
        if row is None or row.status != "pending":
            return None
        row.attempts += 1
        log = get_logger(gateway=row.gateway, inbox_id=row.id, event_type=row.event_type)
        if row.kind == "callback":  # verified when stored, its processing interrupted: ask the gateway again
            _finish(row, "processed", "callback re-checked at the gateway", now, log.bind(order_id=row.order_id))
            applied = (None, row.order_id, row.gateway)
        else:
            applied = _apply_webhook(session, row, now=now, log=log, deps=deps)
    if applied is None:
        return None
    decision, order_id, gateway_name = applied
    if decision is None:
        return reconcile_order(order_id, deps=deps, source=Source.CALLBACK) if order_id else None
    if decision.capture:
        return capture_authorized(order_id, gateway_name, decision, Source.WEBHOOK, deps=deps)
    return decision


def _apply_webhook(session, row: InboxEvent, *, now, log, deps: Deps):
    """Verify again, find the order, decide; None when the row is closed without an order to act on."""
    try:
        event = deps.gateway(row.gateway).verify_webhook(row.body, row.headers)
    except (SignatureInvalid, MalformedEvent) as exc:
        return _finish(row, "rejected", f"no longer verifies: {exc}", now, log)
    payment = event.payment
    if not event.gateway_order_id:
        return _finish(row, "ignored", f"event {event.event_type} names no order", now, log)
    order = queries.find_order_by_gateway_id(session, row.gateway, event.gateway_order_id, lock=True)
    if order is None:
        return _finish(row, "rejected", f"unknown order {event.gateway_order_id}", now, log)
    row.order_id = order.id
    if payment is None:  # a prompt to check (PayGlocal's browser callback), never proof of payment
        _finish(row, "processed", "prompted a gateway check", now, log.bind(order_id=order.id))
        return None, order.id, order.gateway
    decision = apply_evidence(session, order, Evidence(Source.WEBHOOK, (payment,)), now=now, policy=deps.policy,
                              schedule=deps.schedule)
    _finish(row, "processed", decision.reason, now, log.bind(order_id=order.id, payment_id=payment.gateway_payment_id))
    return decision, order.id, order.gateway


def _finish(row: InboxEvent, status: str, reason: str, now, log) -> None:
    row.status, row.reason, row.processed_at = status, reason, now
    (log.info if status == "processed" else log.warning)("inbox_event_" + status, reason=reason)
    return None
