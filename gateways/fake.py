"""``FakeGateway``: an in-memory gateway for fast service tests, scripted per order. It satisfies the port
without inheriting and without HTTP; the simulator (``simulator/``) is the stand-in that speaks the wire.

Webhooks are JSON ``{"id", "event", "order_id", "payment": {...}}`` (plus ``"refund"`` or ``"dispute"``,
each the DTO's fields) signed with the header ``x-fake-signature: <secret>``; callbacks are signed
``<gateway order id>|<payment id>``.

Refunds are kept per payment and are idempotent per key, as Razorpay's are; they never change the
payment itself (script that with ``set_status``, as the gateway's own view of it may lag).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

from gateways.errors import GatewayNotFound, GatewayPermanent, MalformedEvent, SignatureInvalid
from gateways.port import (
    CallbackResult,
    DisputeStatus,
    FailureKind,
    RefundStatus,
    RemoteDispute,
    RemoteOrder,
    RemotePayment,
    RemoteRefund,
    RemoteStatus,
    WebhookEvent,
)

#: Payment statuses a refund may be asked of: captured, or captured and partly refunded already.
REFUNDABLE = frozenset({RemoteStatus.CAPTURED, RemoteStatus.REFUNDED})


class FakeGateway:
    """Orders and payments in dicts; ``pay``/``set_status`` script what the gateway then reports."""

    label = "Fake"
    webhook_content_type = "application/json"
    id_prefixes = ("fake_order_", "fake_pay_")
    default_rate_per_s = 1_000
    min_poll_interval_s = 0
    reports_disputes = True

    def __init__(self, name: str = "razorpay", *, secret: str = "fake-secret",
                 refund_status: RefundStatus = RefundStatus.PENDING) -> None:
        self.name, self.secret = name, secret
        self.orders: dict[str, RemoteOrder] = {}
        self.payments: dict[str, RemotePayment] = {}
        self.captures: list[str] = []
        self.calls: list[str] = []
        #: Every refund by id, in the order made; ``refund_status`` is what a new one starts in.
        self.refunds: dict[str, RemoteRefund] = {}
        self.refund_status = refund_status
        self.disputes: dict[str, RemoteDispute] = {}
        self._refund_requests: dict[tuple[str, str], tuple[str, int | None]] = {}  # (payment, key) -> (id, asked)
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
        return self._signed(event, event_id, payment)

    def set_refund_status(self, refund_id: str, status: RefundStatus, **changes: Any) -> RemoteRefund:
        """Move a refund on (``processed``, ``failed``...), as the gateway would."""
        refund = replace(self.refunds[refund_id], status=status, wire_status=status.value, **changes)
        self.refunds[refund_id] = refund
        return refund

    def add_refund(self, gateway_payment_id: str, amount_minor: int | None = None, *,
                   status: RefundStatus = RefundStatus.PROCESSED, payment_captured: bool | None = True) -> RemoteRefund:
        """A refund the gateway made by itself (auto-refund: ``payment_captured=False``; lost dispute;
        dashboard): no key, the payment's whole amount unless given."""
        payment = self.payments[gateway_payment_id]
        return self._record(RemoteRefund(
            f"fake_rfnd_{next(self._ids)}", gateway_payment_id,
            payment.amount_minor if amount_minor is None else amount_minor, payment.currency, status,
            wire_status=status.value, payment_captured=payment_captured))

    def refund_webhook(self, refund: RemoteRefund, event: str = "refund.processed", *,
                       event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        """A signed ``refund.*`` webhook: ``refund`` as given, with its payment as the fake holds it now."""
        return self._signed(event, event_id, self.payments.get(refund.gateway_payment_id), refund=asdict(refund))

    def dispute(self, gateway_payment_id: str, status: DisputeStatus = DisputeStatus.OPEN, *,
                amount_minor: int | None = None, **fields: Any) -> RemoteDispute:
        """A dispute of the payment (its whole amount unless given), kept in :attr:`disputes`; ``fields`` are
        other :class:`RemoteDispute` fields (``phase``, ``respond_by``, ``amount_deducted_minor``...)."""
        payment = self.payments[gateway_payment_id]
        dispute = RemoteDispute(f"fake_disp_{next(self._ids)}", gateway_payment_id,
                                payment.amount_minor if amount_minor is None else amount_minor, payment.currency,
                                status, **{"phase": "chargeback", "wire_status": status.value, **fields})
        self.disputes[dispute.gateway_dispute_id] = dispute
        return dispute

    def dispute_webhook(self, dispute: RemoteDispute, event: str = "payment.dispute.created", *,
                        event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        """A signed ``payment.dispute.*`` webhook: ``dispute`` as given, with its payment as the fake holds it."""
        return self._signed(event, event_id, self.payments.get(dispute.gateway_payment_id), dispute=asdict(dispute))

    def _signed(self, event: str, event_id: str | None, payment: RemotePayment | None,
                **about: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        wire = None if payment is None else {
            "id": payment.gateway_payment_id, "status": payment.status.value, "amount": payment.amount_minor,
            "currency": payment.currency, "created_at": payment.created_at,
            "amount_refunded": payment.amount_refunded_minor}
        body = json.dumps({"id": event_id or f"evt_{next(self._ids)}", "event": event,
                           "order_id": payment.gateway_order_id if payment else None, "payment": wire,
                           **about}).encode()
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

    def create_refund(self, gateway_payment_id: str, *, amount_minor: int, currency: str, full: bool,
                      idempotency_key: str, reason: str) -> RemoteRefund:
        """Idempotent per key: the same key and request give the same refund (as it is now); the same key with
        another amount is refused, as Razorpay does. ``full`` refunds what is left."""
        self.calls.append("create_refund")
        payment = self._payment(gateway_payment_id)
        asked = None if full else amount_minor
        earlier = self._refund_requests.get((gateway_payment_id, idempotency_key))
        if earlier is not None:
            if earlier[1] != asked:
                raise GatewayPermanent("Different request with the same idempotency key has already been processed")
            return self.refunds[earlier[0]]
        if payment.status not in REFUNDABLE:
            raise GatewayPermanent(f"{gateway_payment_id} cannot be refunded: it is {payment.status}")
        left = payment.amount_minor - sum(r.amount_minor for r in self.refunds.values()
                                          if r.gateway_payment_id == gateway_payment_id
                                          and r.status != RefundStatus.FAILED)
        amount = left if full else amount_minor
        if left <= 0:
            raise GatewayPermanent("The payment has been fully refunded already.")
        if amount <= 0 or amount > left:
            raise GatewayPermanent("The refund amount provided is greater than amount captured.")
        refund = self._record(RemoteRefund(
            f"fake_rfnd_{next(self._ids)}", gateway_payment_id, amount, payment.currency, self.refund_status,
            wire_status=self.refund_status.value, payment_captured=True, idempotency_key=idempotency_key))
        self._refund_requests[(gateway_payment_id, idempotency_key)] = (refund.gateway_refund_id, asked)
        return refund

    def fetch_refunds(self, gateway_payment_id: str, *, known: tuple[str, ...] = ()) -> tuple[RemoteRefund, ...]:
        """Every refund of the payment, in the order made (``known`` is not needed here)."""
        self.calls.append("fetch_refunds")
        self._payment(gateway_payment_id)
        return tuple(r for r in self.refunds.values() if r.gateway_payment_id == gateway_payment_id)

    def _payment(self, gateway_payment_id: str) -> RemotePayment:
        """The payment, without counting a ``fetch_payment`` call."""
        try:
            return self.payments[gateway_payment_id]
        except KeyError:
            raise GatewayNotFound(f"{gateway_payment_id} is not a valid id") from None

    def _record(self, refund: RemoteRefund) -> RemoteRefund:
        self.refunds[refund.gateway_refund_id] = refund
        return refund

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
                amount_refunded_minor=int(wire.get("amount_refunded") or 0), wire_status=wire["status"],
                created_at=wire.get("created_at"))
            refund, dispute = data.get("refund"), data.get("dispute")
            return WebhookEvent(
                str(data["id"]), str(data["event"]), data.get("order_id"), payment,
                refund=None if refund is None else RemoteRefund(**{**refund, "status": RefundStatus(refund["status"])}),
                dispute=None if dispute is None else RemoteDispute(
                    **{**dispute, "status": DisputeStatus(dispute["status"])}))
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
