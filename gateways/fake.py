"""``FakeGateway``: an in-memory gateway for fast service tests, scripted per order. It satisfies the port
without inheriting and without HTTP; the simulator (``simulator/``) is the stand-in that speaks the wire.

Webhooks are JSON ``{"id", "event", "order_id", "payment": {...}}`` signed with the header
``x-fake-signature: <secret>``; callbacks are signed ``<gateway order id>|<payment id>``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import replace

from gateways.errors import GatewayNotFound, GatewayPermanent, MalformedEvent, SignatureInvalid
from gateways.port import CallbackResult, FailureKind, RemoteOrder, RemotePayment, RemoteStatus, WebhookEvent


class FakeGateway:
    """Orders and payments in dicts; ``pay``/``set_status`` script what the gateway then reports."""

    label = "Fake"
    webhook_content_type = "application/json"
    id_prefixes = ("fake_order_", "fake_pay_")
    default_rate_per_s = 1_000
    min_poll_interval_s = 0

    def __init__(self, name: str = "razorpay", *, secret: str = "fake-secret") -> None:
        self.name, self.secret = name, secret
        self.orders: dict[str, RemoteOrder] = {}
        self.payments: dict[str, RemotePayment] = {}
        self.captures: list[str] = []
        self.calls: list[str] = []
        self._ids = itertools.count(1)

    # --- scripting -------------------------------------------------------------------------------

    def pay(self, gateway_order_id: str, status: RemoteStatus = RemoteStatus.CAPTURED, *,
            amount_minor: int | None = None, failure_kind: FailureKind | None = None,
            created_at: int | None = None) -> RemotePayment:
        """A payment attempt on the order, in ``status`` (the order's amount unless given)."""
        order = self.orders[gateway_order_id]
        payment = RemotePayment(f"fake_pay_{next(self._ids)}", gateway_order_id, status,
                                order.amount_minor if amount_minor is None else amount_minor, order.currency,
                                failure_kind=failure_kind, wire_status=status.value, created_at=created_at)
        self.payments[payment.gateway_payment_id] = payment
        return payment

    def set_status(self, gateway_payment_id: str, status: RemoteStatus, **changes: object) -> RemotePayment:
        payment = replace(self.payments[gateway_payment_id], status=status, wire_status=status.value, **changes)
        self.payments[gateway_payment_id] = payment
        return payment

    def webhook(self, payment: RemotePayment, event: str = "payment.captured", *,
                event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        """A signed webhook body and headers describing ``payment``."""
        body = json.dumps({"id": event_id or f"evt_{next(self._ids)}", "event": event,
                           "order_id": payment.gateway_order_id,
                           "payment": {"id": payment.gateway_payment_id, "status": payment.status.value,
                                       "amount": payment.amount_minor, "currency": payment.currency,
                                       "created_at": payment.created_at}}).encode()
        return body, {"content-type": "application/json", "x-fake-signature": self.secret}

    def callback_signature(self, gateway_order_id: str, gateway_payment_id: str) -> str:
        return f"{self.secret}:{gateway_order_id}|{gateway_payment_id}"

    # --- the port ----------------------------------------------------------------------------------

    def create_order(self, *, receipt: str, amount_minor: int, currency: str, notes: Mapping[str, str],
                     manual_capture: bool) -> RemoteOrder:
        self.calls.append("create_order")
        order = RemoteOrder(f"fake_order_{next(self._ids)}", amount_minor, currency, receipt, "created")
        self.orders[order.gateway_order_id] = order
        return order

    def min_amount_minor(self, currency: str, exponent: int) -> int:
        return 10 ** exponent

    def fetch_order(self, gateway_order_id: str) -> RemoteOrder:
        self.calls.append("fetch_order")
        if gateway_order_id not in self.orders:
            raise GatewayNotFound(f"{gateway_order_id} is not a valid id")
        payments = tuple(p for p in self.payments.values() if p.gateway_order_id == gateway_order_id)
        return replace(self.orders[gateway_order_id], payments=payments)

    def fetch_attempts(self, gateway_order_id: str) -> tuple[RemotePayment, ...]:
        self.calls.append("fetch_attempts")
        if gateway_order_id not in self.orders:
            raise GatewayNotFound(f"{gateway_order_id} is not a valid id")
        return tuple(p for p in self.payments.values() if p.gateway_order_id == gateway_order_id)

    def fetch_payment(self, gateway_payment_id: str) -> RemotePayment:
        self.calls.append("fetch_payment")
        try:
            return self.payments[gateway_payment_id]
        except KeyError:
            raise GatewayNotFound(f"{gateway_payment_id} is not a valid id") from None

    def capture(self, gateway_payment_id: str, *, amount_minor: int, currency: str) -> RemotePayment:
        self.calls.append("capture")
        payment = self.fetch_payment(gateway_payment_id)
        if payment.status == RemoteStatus.CAPTURED:
            return payment
        if payment.status != RemoteStatus.AUTHORIZED or payment.amount_minor != amount_minor:
            raise GatewayPermanent(f"{gateway_payment_id} cannot be captured: it is {payment.status}")
        self.captures.append(gateway_payment_id)
        return self.set_status(gateway_payment_id, RemoteStatus.CAPTURED)

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        if {k.lower(): v for k, v in headers.items()}.get("x-fake-signature") != self.secret:
            raise SignatureInvalid("x-fake-signature does not match")
        return self.parse_verified_webhook(raw_body, headers)

    def parse_verified_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        try:
            data = json.loads(raw_body)
            wire = data.get("payment")
            payment = None if wire is None else RemotePayment(
                wire["id"], data["order_id"], RemoteStatus(wire["status"]), int(wire["amount"]), wire["currency"],
                wire_status=wire["status"], created_at=wire.get("created_at"))
            return WebhookEvent(str(data["id"]), str(data["event"]), data.get("order_id"), payment)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedEvent(f"not a fake webhook: {exc}", signed=True) from exc

    def claimed_order_id(self, raw_body: bytes) -> str | None:
        try:
            claimed = json.loads(raw_body).get("order_id")
        except (ValueError, AttributeError):
            return None
        return claimed if isinstance(claimed, str) else None

    def verify_callback(self, gateway_order_id: str, gateway_payment_id: str, signature: str) -> CallbackResult:
        if signature != self.callback_signature(gateway_order_id, gateway_payment_id):
            raise SignatureInvalid("callback signature does not match")
        return CallbackResult(gateway_order_id, gateway_payment_id)
