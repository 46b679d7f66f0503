"""The inbox: every webhook and callback is stored before it is acknowledged, then applied once.

``store_webhook`` and ``store_callback`` run where the input arrives (the web process, or the
``verify_payment`` actor): verify the signature over the raw bytes, store the raw input (refused
ones too, with the reason), dedupe. Signatures and freshness are checked there and only there.
``process_inbox_event`` runs in a worker: apply the stored input to its order, then run its follow-up
(a capture, or the gateway check a callback prompts); the row is marked processed only when that is
done, so a failure leaves it pending for the message's retry or the inbox sweep.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from db import queries
from db.models import InboxEvent
from gateways.errors import GatewayNotFound, MalformedEvent, SignatureInvalid
from worker.deps import Deps
from worker.domain.errors import UnknownOrder
from worker.domain.order_state import Decision, Evidence, Source
from worker.logging import get_logger
from worker.metrics import WEBHOOKS_RECEIVED
from worker.services.apply import apply_evidence
from worker.services.reconcile import capture_authorized, check_payment, reconcile_order

#: Headers never stored: they may carry credentials of a proxy in front of us.
DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
#: What an id we look up may look like; anything else (NUL bytes, control characters) is never queried.
_LOOKUP_ID = re.compile(r"^[\x21-\x7e]{1,64}$")


@dataclass(frozen=True, slots=True)
class Stored:
    """What became of an incoming webhook or callback. ``enqueue`` is set when a worker must process it.

    ``authentic`` says the gateway's signature verified: such a delivery is acknowledged with a 2xx even
    when we refuse its content, because a 4xx makes the gateway retry it for a day and then disable the
    endpoint (razorpay.md §5.4) while nothing a retry sends can be different."""

    inbox_id: int
    status: str  # accepted | duplicate | rejected
    reason: str | None = None
    enqueue: bool = False
    authentic: bool = False


def _printable(text: str) -> str:
    return text.replace("\x00", "\\x00")


def storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): _printable(v) for k, v in headers.items() if k.lower() not in DROPPED_HEADERS}


#: What each gateway posts; anything else is kept and refused.
CONTENT_TYPES = {"razorpay": "application/json", "payglocal": "application/x-www-form-urlencoded"}


def store_rejected(gateway_name: str, raw_body: bytes, headers: Mapping[str, str], reason: str, *, deps: Deps,
                   outcome: str = "rejected", order_id: str | None = None, authentic: bool = False) -> Stored:
    """Keep input we refuse, with the reason, for support (never with an event id)."""
    row_id, reason = _insert_rejected({"gateway": gateway_name, "kind": "webhook", "headers": storable_headers(headers),
                                       "body": raw_body, "attempts": 0, "order_id": order_id}, reason, deps=deps)
    get_logger(gateway=gateway_name).warning("webhook_rejected", inbox_id=row_id, reason=reason)
    WEBHOOKS_RECEIVED.labels(gateway_name, "webhook", outcome).inc()
    return Stored(row_id, "rejected", reason, authentic=authentic)


def _insert_rejected(values: dict, reason: str, *, deps: Deps) -> tuple[int, str]:
    """Keep a refused webhook or callback, closed, with no event id; returns its id and the reason kept."""
    now = deps.clock.now()
    reason = _printable(reason)[:500]
    with deps.sessions.begin() as session:
        row = InboxEvent(**values, received_at=now, status="rejected", reason=reason, processed_at=now)
        session.add(row)
        session.flush()
        return row.id, reason


def _insert_once(values: dict, *, deps: Deps) -> Stored:
    """Keep a verified webhook or callback as pending, deduped on ``(gateway, event_id)``."""
    with deps.sessions.begin() as session:
        inserted = queries.insert_ignore(session, InboxEvent, {**values, "status": "pending"},
                                         conflict=["gateway", "event_id"])
        if inserted is not None:
            return Stored(inserted, "accepted", enqueue=True, authentic=True)
        existing = queries.find_inbox_event(session, values["gateway"], values["event_id"])
        return Stored(existing.id, "duplicate", enqueue=existing.status == "pending", authentic=True)


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
        named = (event.event_id, event.event_type, event.gateway_order_id,
                 event.payment.gateway_payment_id if event.payment else None)
        if any("\x00" in (text or "") for text in named):
            raise MalformedEvent("NUL bytes in the event id, type, order id or payment id")
    except (SignatureInvalid, MalformedEvent) as exc:
        bad_signature = isinstance(exc, SignatureInvalid)
        reason = f"{'bad_signature' if bad_signature else 'malformed'}: {exc}"
        order_id = _nudge_claimed_order(gateway_name, raw_body, deps=deps)
        if order_id:
            reason += f"; order {order_id} brought forward for a gateway check"
        return store_rejected(gateway_name, raw_body, headers, reason, deps=deps, order_id=order_id,
                              outcome="bad_signature" if bad_signature else "rejected",
                              authentic=not bad_signature and exc.signed)
    stored = _insert_once({**base, "event_id": event.event_id, "event_type": event.event_type,
                           "gateway_payment_id": event.payment.gateway_payment_id[:64] if event.payment else None},
                          deps=deps)
    WEBHOOKS_RECEIVED.labels(gateway_name, "webhook", stored.status).inc()
    return stored


def store_callback(order_id: str, gateway_payment_id: str, signature: str, *, deps: Deps) -> Stored:
    """Verify and store a checkout callback (the billing backend forwards it). Valid ones are deduped on
    the payment id; refused ones are kept with the reason. A valid callback is a prompt to ask the
    gateway, never proof of payment.

    Raises:
        UnknownOrder: we hold no such order (nothing to verify the callback against).
    """
    with deps.sessions() as session:
        order = queries.get_order(session, order_id)
    if order is None:
        raise UnknownOrder(f"no order {order_id!r}")
    log = get_logger(order_id=order_id, payment_id=gateway_payment_id, gateway=order.gateway)
    params = {"payment_id": gateway_payment_id, "signature": signature}
    values = {"gateway": order.gateway, "kind": "callback", "event_type": "checkout.callback", "order_id": order.id,
              "gateway_payment_id": gateway_payment_id[:64], "headers": {}, "body": json.dumps(params).encode(),
              "attempts": 0}
    try:
        deps.gateway(order.gateway).verify_callback(order.gateway_order_id or "", gateway_payment_id, signature)
    except SignatureInvalid as exc:
        row_id, reason = _insert_rejected(values, f"bad_signature: {exc}", deps=deps)
        log.warning("callback_rejected", inbox_id=row_id, reason=reason)
        WEBHOOKS_RECEIVED.labels(order.gateway, "callback", "bad_signature").inc()
        return Stored(row_id, "rejected", reason)
    stored = _insert_once({**values, "event_id": f"callback:{gateway_payment_id}", "received_at": deps.clock.now()},
                          deps=deps)
    WEBHOOKS_RECEIVED.labels(order.gateway, "callback", stored.status).inc()
    return stored


#: A rejected webhook brings its order's check forward at most this often (a misconfigured secret
#: must delay credits, never lose them; a flood of forgeries must not hammer the gateway).
NUDGE_AT_MOST_EVERY = timedelta(minutes=1)


def _nudge_claimed_order(gateway_name: str, raw_body: bytes, *, deps: Deps) -> str | None:
    """If an unverifiable webhook names an order we hold, check that order at the gateway soon.

    The id comes from an unsigned body: it is looked up only when it looks like an id, and a failure
    here never stops the body from being stored."""
    claimed = deps.gateway(gateway_name).claimed_order_id(raw_body)
    if not claimed or not _LOOKUP_ID.match(claimed):
        return None
    now = deps.clock.now()
    try:
        with deps.sessions.begin() as session:
            order = queries.find_order_by_gateway_id(session, gateway_name, claimed)
            if order is None:
                return None
            queries.nudge_order(session, order.id, now=now, not_checked_since=now - NUDGE_AT_MOST_EVERY)
            return order.id
    except SQLAlchemyError as exc:
        get_logger(gateway=gateway_name).warning("webhook_nudge_failed", error=type(exc).__name__)
        return None


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying a row did in its transaction, and what must still happen before it is processed."""

    status: str  # processed | rejected | ignored
    reason: str
    decision: Decision | None = None
    follow_up: Callable[[], Decision | None] | None = None


def process_inbox_event(inbox_id: int, *, deps: Deps) -> Decision | None:
    """Apply one stored webhook or callback to its order, once. Returns the decision, or None.

    Raises whatever its follow-up raises (a gateway error): the row then stays pending, and the
    message's retry or the inbox sweep runs it again (applying a row twice changes nothing)."""
    with deps.sessions.begin() as session:
        row = queries.get_inbox_event(session, inbox_id, lock=True)
        if row is None or row.status != "pending":
            return None
        row.attempts += 1
        log = get_logger(gateway=row.gateway, inbox_id=row.id, event_type=row.event_type, order_id=row.order_id)
        applied = _apply_callback(row, deps=deps) if row.kind == "callback" else _apply_webhook(session, row, deps=deps)
        if applied.follow_up is None:
            _finish(row, applied.status, applied.reason, deps, log)
            return applied.decision
        row.reason = f"follow-up pending: {applied.reason}"
    try:
        decision = applied.follow_up()
    except GatewayNotFound as exc:  # the gateway does not know the payment a signed callback named
        _finish_pending(inbox_id, "rejected", f"payment unknown at the gateway: {exc}", deps)
        return None
    _finish_pending(inbox_id, "processed", decision.reason if decision else applied.reason, deps)
    return decision


def _apply_callback(row: InboxEvent, *, deps: Deps) -> Applied:
    """A callback verified when stored: ask the gateway about its payment (or its order) now."""
    order_id, payment_id = row.order_id, row.gateway_payment_id
    if payment_id:
        return Applied("processed", "callback checked at the gateway",
                       follow_up=lambda: check_payment(order_id, payment_id, Source.CALLBACK, deps=deps))
    return Applied("processed", "callback checked at the gateway",
                   follow_up=lambda: reconcile_order(order_id, deps=deps, source=Source.CALLBACK))


def _apply_webhook(session, row: InboxEvent, *, deps: Deps) -> Applied:
    """Parse the stored body, find the order, decide (in the caller's transaction)."""
    gateway = deps.gateway(row.gateway)
    try:
        # A row with an event id passed the signature check at intake; one without it is a refused
        # delivery that support replayed, and must verify now.
        event = (gateway.parse_verified_webhook(row.body, row.headers) if row.event_id
                 else gateway.verify_webhook(row.body, row.headers))
    except (SignatureInvalid, MalformedEvent) as exc:
        return Applied("rejected", f"does not parse: {exc}" if row.event_id else f"does not verify: {exc}")
    if not event.gateway_order_id:
        return Applied("ignored", f"event {event.event_type} names no order")
    if not _LOOKUP_ID.match(event.gateway_order_id):
        return Applied("rejected", f"malformed order id {_printable(event.gateway_order_id)[:80]!r}")
    order = queries.find_order_by_gateway_id(session, row.gateway, event.gateway_order_id, lock=True)
    if order is None:
        return Applied("rejected", f"unknown order {event.gateway_order_id}")
    row.order_id = order.id
    order_id, gateway_name = order.id, order.gateway
    if event.payment is None:  # a prompt to check (PayGlocal's browser callback), never proof of payment
        return Applied("processed", "prompted a gateway check",
                       follow_up=lambda: reconcile_order(order_id, deps=deps, source=Source.CALLBACK))
    decision = apply_evidence(session, order, Evidence(Source.WEBHOOK, (event.payment,)), now=deps.clock.now(),
                              policy=deps.policy, schedule=deps.schedule)
    if decision.capture:
        return Applied("processed", decision.reason, decision,
                       follow_up=lambda: capture_authorized(order_id, gateway_name, decision, Source.WEBHOOK, deps=deps))
    return Applied("processed", decision.reason, decision)


def _finish(row: InboxEvent, status: str, reason: str, deps: Deps, log) -> None:
    row.status, row.reason, row.processed_at = status, _printable(reason)[:500], deps.clock.now()
    (log.info if status == "processed" else log.warning)("inbox_event_" + status, reason=row.reason)


def _finish_pending(inbox_id: int, status: str, reason: str, deps: Deps) -> None:
    """Close a row whose follow-up is done, unless another worker closed it meanwhile."""
    with deps.sessions.begin() as session:
        row = queries.get_inbox_event(session, inbox_id, lock=True)
        if row is not None and row.status == "pending":
            _finish(row, status, reason, deps, get_logger(gateway=row.gateway, inbox_id=row.id,
                                                          order_id=row.order_id))
