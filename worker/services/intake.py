"""Inbox intake: every webhook and callback is stored before it is acknowledged.

``store_webhook`` and ``store_callback`` run where the input arrives (the web process, or the
``verify_payment`` actor): verify the signature over the raw bytes, store the raw input (refused
ones too, with the reason), dedupe. Signatures and freshness are checked here and only here; a
worker applies what was kept (:mod:`worker.services.inbox`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from gateways.errors import MalformedEvent, SignatureInvalid
from gateways.port import WebhookEvent
from worker.contract import COALESCE_KEY_MAX, ID_PATTERN
from worker.deps import Deps
from worker.logging import get_logger
from worker.metrics import WEBHOOKS_RECEIVED
from worker.services.unit import Kept, printable

#: Headers never stored: they may carry credentials of a proxy in front of us.
DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
#: What an id we look up may look like; anything else (NUL bytes, control characters) is never queried.
LOOKUP_ID = re.compile(r"^[\x21-\x7e]{1,64}$")
COALESCE_KEY = re.compile(ID_PATTERN)  #: fullmatch: the contract's ``$`` admits no trailing newline
#: A rejected webhook brings its order's check forward at most this often (a misconfigured secret
#: must delay credits, never lose them; a flood of forgeries must not hammer the gateway).
NUDGE_AT_MOST_EVERY = timedelta(minutes=1)


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
    #: Set for a webhook about a payment alone (no refund, dispute or settlement): its message may be left
    #: unsent while another for the same payment is queued (:func:`coalesce_key`).
    coalesce_key: str | None = None

    @classmethod
    def kept(cls, kept: Kept, coalesce_key: str | None = None) -> Stored:
        return cls(kept.inbox_id, "accepted" if kept.new else "duplicate", enqueue=kept.pending, authentic=True,
                   coalesce_key=coalesce_key if kept.pending else None)


def coalesce_key(gateway_name: str, event: WebhookEvent) -> str | None:
    """What a webhook's message may be coalesced on: its gateway and payment, for the webhooks a worker gathers
    as siblings of another about the same payment (payment.authorized, payment.captured, order.paid, …; see
    :func:`worker.services.inbox.process_inbox_event`). None for anything applied by its own message."""
    if (event.payment is None or event.refund is not None or event.dispute is not None
            or event.settlement is not None or not event.gateway_order_id):
        return None
    payment_id = event.payment.gateway_payment_id
    key = f"{gateway_name}:{payment_id}"  # stored ids are cut at 64: a longer one is never gathered by its key
    return key if len(payment_id) <= 64 and len(key) <= COALESCE_KEY_MAX and COALESCE_KEY.fullmatch(key) else None


def storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): printable(v) for k, v in headers.items() if k.lower() not in DROPPED_HEADERS}


def store_rejected(gateway_name: str, raw_body: bytes, headers: Mapping[str, str], reason: str, *, deps: Deps,
                   outcome: str = "rejected", order_id: str | None = None, authentic: bool = False) -> Stored:
    """Keep input we refuse, with the reason, for support (never with an event id)."""
    with deps.unit() as uow:
        row_id, reason = uow.keep_refused({"gateway": gateway_name, "kind": "webhook", "order_id": order_id,
                                           "headers": storable_headers(headers), "body": raw_body, "attempts": 0},
                                          reason)
        uow.commit()
    get_logger(gateway=gateway_name).warning("webhook_rejected", inbox_id=row_id, reason=reason)
    WEBHOOKS_RECEIVED.labels(gateway_name, "webhook", outcome).inc()
    return Stored(row_id, "rejected", reason, authentic=authentic)


def store_webhook(gateway_name: str, raw_body: bytes, headers: Mapping[str, str], *, deps: Deps) -> Stored:
    """Verify and store one webhook delivery. Never loses the body, whatever it is."""
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    expected = deps.gateway(gateway_name).webhook_content_type  # anything else is kept and refused
    if content_type.split(";")[0].strip().lower() != expected:
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
    with deps.unit() as uow:
        stored = Stored.kept(uow.keep_once({
            "gateway": gateway_name, "kind": "webhook", "headers": storable_headers(headers), "body": raw_body,
            "attempts": 0, "event_id": event.event_id, "event_type": event.event_type,
            "gateway_payment_id": event.payment.gateway_payment_id[:64] if event.payment else None}),
            coalesce_key(gateway_name, event))
        uow.commit()
    WEBHOOKS_RECEIVED.labels(gateway_name, "webhook", stored.status).inc()
    return stored


def store_callback(order_id: str, gateway_payment_id: str, signature: str, *, deps: Deps) -> Stored:
    """Verify and store a checkout callback (the billing backend forwards it). Valid ones are deduped on
    the payment id; refused ones are kept with the reason. A valid callback is a prompt to ask the
    gateway, never proof of payment.

    Raises:
        UnknownOrder: we hold no such order (nothing to verify the callback against).
    """
    with deps.unit() as uow:
        order = uow.order(order_id)
        gateway_name, gateway_order_id = order.gateway, order.gateway_order_id
    log = get_logger(order_id=order_id, payment_id=gateway_payment_id, gateway=gateway_name)
    values = {"gateway": gateway_name, "kind": "callback", "event_type": "checkout.callback", "order_id": order_id,
              "gateway_payment_id": gateway_payment_id[:64], "headers": {}, "attempts": 0,
              "body": json.dumps({"payment_id": gateway_payment_id, "signature": signature}).encode()}
    try:
        deps.gateway(gateway_name).verify_callback(gateway_order_id or "", gateway_payment_id, signature)
    except SignatureInvalid as exc:
        with deps.unit() as uow:
            row_id, reason = uow.keep_refused(values, f"bad_signature: {exc}")
            uow.commit()
        log.warning("callback_rejected", inbox_id=row_id, reason=reason)
        WEBHOOKS_RECEIVED.labels(gateway_name, "callback", "bad_signature").inc()
        return Stored(row_id, "rejected", reason)
    with deps.unit() as uow:
        stored = Stored.kept(uow.keep_once({**values, "event_id": f"callback:{gateway_payment_id}"}))
        uow.commit()
    WEBHOOKS_RECEIVED.labels(gateway_name, "callback", stored.status).inc()
    return stored


def _nudge_claimed_order(gateway_name: str, raw_body: bytes, *, deps: Deps) -> str | None:
    """If an unverifiable webhook names an order we hold, check that order at the gateway soon.

    The id comes from an unsigned body: it is looked up only when it looks like an id, and a failure
    here never stops the body from being stored."""
    claimed = deps.gateway(gateway_name).claimed_order_id(raw_body)
    if not claimed or not LOOKUP_ID.match(claimed):
        return None
    try:
        with deps.unit() as uow:
            order = uow.find_order(gateway_name, claimed)
            if order is None:
                return None
            uow.nudge(order, at_most_every=NUDGE_AT_MOST_EVERY)
            uow.commit()
            return order.id
    except SQLAlchemyError as exc:
        get_logger(gateway=gateway_name).warning("webhook_nudge_failed", error=type(exc).__name__)
        return None
