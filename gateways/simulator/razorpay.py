"""In-memory Razorpay: orders, payments and refunds with Razorpay's JSON shapes and rules.

:class:`RazorpaySim` holds the state behind one re-entrant lock (uvicorn's thread and the test
thread both touch it). The API operations raise :class:`RazorpayApiError`, which the routes in
:mod:`gateways.simulator.razorpay_routes` turn into Razorpay's error body (validation lives in
:mod:`gateways.simulator.razorpay_rules`); the customer
behaviour (:meth:`RazorpaySim.pay`, ``late_authorize``, ``refund``) raises
:class:`SimulatorError` when asked for something a customer could not do.
Webhooks are built here (envelope, raw bytes, signature) and queued on the shared sender.
"""

from __future__ import annotations

import copy
import json
import string
import threading
import time
from collections.abc import Mapping
from typing import Any

from gateways.razorpay.signature import checkout_message, sign
from gateways.simulator.config import SimulatorConfig, derived_rng
from gateways.simulator.razorpay_rules import (
    FAILURES,
    OUTCOMES,
    RazorpayApiError,
    SimulatorError,
    collection,
    parse_capture,
    parse_capture_windows,
    parse_list_params,
    order_entity,
    parse_order_request,
    payment_entity,
    refund_entity,
)
from gateways.simulator.webhooks import WebhookEvent, WebhookSender

_ALNUM = string.ascii_letters + string.digits


class RazorpaySim:
    """The simulated Razorpay account: state, API semantics and customer behaviour."""

    def __init__(self, config: SimulatorConfig, webhooks: WebhookSender):
        self.config = config
        self.webhooks = webhooks
        self.lock = threading.RLock()
        self._ids = derived_rng(config.seed, "razorpay-ids")
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget every order, payment and refund (and restart the id stream from ``seed``)."""
        with self.lock:
            self.orders: dict[str, dict[str, Any]] = {}
            self.payments: dict[str, dict[str, Any]] = {}
            self.refunds: dict[str, dict[str, Any]] = {}
            self._capture_mode: dict[str, str | None] = {}
            self._windows: dict[str, tuple[int | None, int]] = {}  #: order id -> (A, M) in minutes
            self._order_payments: dict[str, list[str]] = {}
            self._by_receipt: dict[str, str] = {}
            self._ids = derived_rng(seed if seed is not None else self.config.seed, "razorpay-ids")

    # -- helpers -----------------------------------------------------------------------------
    def _new_id(self, prefix: str, table: Mapping[str, Any]) -> str:
        while True:
            candidate = prefix + "".join(self._ids.choice(_ALNUM) for _ in range(14))
            if candidate not in table:
                return candidate

    def _get(self, table: Mapping[str, dict[str, Any]], entity_id: str) -> dict[str, Any]:
        found = table.get(entity_id)
        if found is None:
            raise RazorpayApiError(400, "The id provided does not exist", field="id")
        return found

    def _auto_capture(self, order_id: str) -> bool:
        mode = self._capture_mode.get(order_id)
        return self.config.auto_capture if mode is None else mode == "automatic"

    def _event(self, name: str, **entities: dict[str, Any]) -> WebhookEvent:
        """A webhook with a snapshot of ``entities`` as they are now, serialised once."""
        now = int(time.time())
        envelope = {
            "entity": "event",
            "account_id": self.config.account_id,
            "event": name,
            "contains": list(entities),
            "payload": {key: {"entity": value} for key, value in entities.items()},
            "created_at": now,
        }
        body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        event_id = "evt_" + "".join(self._ids.choice(_ALNUM) for _ in range(14))
        headers = {
            "Content-Type": "application/json",
            "X-Razorpay-Signature": sign(self.config.webhook_secret, body),
            "X-Razorpay-Event-Id": event_id,
            "User-Agent": "Razorpay-Webhook/v1 (simulator)",
        }
        return WebhookEvent(event_id=event_id, event=name, body=body, headers=headers, created_at=now, gateway="razorpay")

    # -- API operations ----------------------------------------------------------------------
    def create_order(self, body: Any) -> dict[str, Any]:
        """``POST /v1/orders``; a receipt seen before returns that order (``unique_receipt``)."""
        amount, currency, receipt, notes, capture = parse_order_request(body)
        with self.lock:
            if receipt is not None and receipt in self._by_receipt:
                return copy.deepcopy(self.orders[self._by_receipt[receipt]])
            order_id = self._new_id("order_", self.orders)
            self.orders[order_id] = order_entity(order_id, amount, currency, receipt, notes)
            self._capture_mode[order_id] = capture
            payment_options = body.get("payment") if isinstance(body.get("payment"), dict) else {"capture": capture}
            self._windows[order_id] = parse_capture_windows(payment_options)
            self._order_payments[order_id] = []
            if receipt is not None:
                self._by_receipt[receipt] = order_id
            return copy.deepcopy(self.orders[order_id])

    def list_orders(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v1/orders``: newest first, filtered by ``receipt``/``from``/``to``, paged."""
        count, skip, start, end = parse_list_params(params)
        receipt = params.get("receipt")
        with self.lock:
            items = [o for o in reversed(self.orders.values()) if receipt in (None, o["receipt"])]
            items = [o for o in items if start <= o["created_at"] <= end]
            return collection(copy.deepcopy(items[skip : skip + count]))

    def fetch_order(self, order_id: str) -> dict[str, Any]:
        """``GET /v1/orders/{id}``."""
        with self.lock:
            return copy.deepcopy(self._get(self.orders, order_id))

    def order_payments(self, order_id: str) -> dict[str, Any]:
        """``GET /v1/orders/{id}/payments``: every attempt, failed ones included, newest first."""
        with self.lock:
            self._get(self.orders, order_id)
            ids = reversed(self._order_payments[order_id])
            return collection([copy.deepcopy(self.payments[pid]) for pid in ids])

    def list_payments(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v1/payments``: newest first, filtered by ``from``/``to``, paged."""
        count, skip, start, end = parse_list_params(params)
        with self.lock:
            items = [p for p in reversed(self.payments.values()) if start <= p["created_at"] <= end]
            return collection(copy.deepcopy(items[skip : skip + count]))

    def fetch_payment(self, payment_id: str) -> dict[str, Any]:
        """``GET /v1/payments/{id}``."""
        with self.lock:
            return copy.deepcopy(self._get(self.payments, payment_id))

    def capture(self, payment_id: str, body: Any) -> dict[str, Any]:
        """``POST /v1/payments/{id}/capture`` with Razorpay's rules; fires the capture webhooks."""
        with self.lock:
            payment = self._get(self.payments, payment_id)
            amount, currency = parse_capture(body)
            if payment["captured"]:
                raise RazorpayApiError(400, "This payment has already been captured")
            if payment["status"] != "authorized":
                raise RazorpayApiError(400, "Only payments which have been authorized and not yet captured can be captured")
            order = self.orders[payment["order_id"]]
            if order["status"] == "paid":
                raise RazorpayApiError(400, "Your payment has been declined as the order is already paid")
            if amount != payment["amount"]:
                raise RazorpayApiError(400, "Capture amount must be equal to the amount authorized", field="amount")
            if currency is not None and currency != payment["currency"]:
                raise RazorpayApiError(400, "Currency should be same as payment currency", field="currency")
            events: list[WebhookEvent] = []
            self._do_capture(payment, order, events)
            self.webhooks.publish(events)
            return copy.deepcopy(payment)

    # -- state transitions -------------------------------------------------------------------
    def _do_capture(self, payment: dict[str, Any], order: dict[str, Any], events: list[WebhookEvent]) -> None:
        base_fee = payment["amount"] * 2 // 100
        tax = base_fee * 18 // 100
        payment.update(status="captured", captured=True, fee=base_fee + tax, tax=tax)
        events.append(self._event("payment.captured", payment=payment))
        order["amount_paid"] += payment["amount"]
        order["amount_due"] = max(0, order["amount"] - order["amount_paid"])
        order["status"] = "paid"
        events.append(self._event("order.paid", payment=payment, order=order))

    def _do_refund(self, payment: dict[str, Any], amount: int, events: list[WebhookEvent]) -> dict[str, Any]:
        refund_id = self._new_id("rfnd_", self.refunds)
        refund = refund_entity(refund_id, payment, amount)
        self.refunds[refund_id] = refund
        payment["amount_refunded"] += amount
        full = payment["amount_refunded"] >= payment["amount"]
        payment["refund_status"] = "full" if full else "partial"
        if full:
            payment["status"] = "refunded"
        events.append(self._event("refund.processed", refund=refund, payment=payment))
        return refund

    def _with_checkout_fields(self, payment: dict[str, Any]) -> dict[str, Any]:
        result = copy.deepcopy(payment)
        if payment["status"] in ("authorized", "captured"):
            message = checkout_message(payment["order_id"], payment["id"])
            result["razorpay_payment_id"] = payment["id"]
            result["razorpay_order_id"] = payment["order_id"]
            result["razorpay_signature"] = sign(self.config.key_secret, message)
        return result

    # -- customer behaviour ------------------------------------------------------------------
    def pay(
        self,
        gateway_order_id: str,
        outcome: str,
        *,
        deliver_webhooks: bool = True,
        amount_minor: int | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """A customer's checkout attempt on an order; see :data:`OUTCOMES`.

        Returns the payment JSON (plus the checkout handler fields when authorised or
        captured), or ``{"closed": True}`` for ``close_window``.
        """
        if outcome not in OUTCOMES:
            raise SimulatorError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}", status=400)
        if amount_minor is not None and (isinstance(amount_minor, bool) or not isinstance(amount_minor, int)):
            raise SimulatorError("amount_minor must be an integer", status=400)
        with self.lock:
            order = self.orders.get(gateway_order_id)
            if order is None:
                raise SimulatorError(f"no such order {gateway_order_id!r}", status=404)
            if order["status"] == "paid":
                raise SimulatorError("the order is already paid; checkout refuses a new payment")
            if any(self.payments[p]["status"] == "authorized" for p in self._order_payments[order["id"]]):
                raise SimulatorError("the order has an authorized payment; checkout refuses a new payment")
            if outcome == "close_window":
                return {"closed": True}
            amount = order["amount"] if amount_minor is None else amount_minor
            payment = payment_entity(self._new_id("pay_", self.payments), order, amount, currency or order["currency"])
            self.payments[payment["id"]] = payment
            self._order_payments[order["id"]].append(payment["id"])
            order["attempts"] += 1
            order["status"] = "attempted"
            events: list[WebhookEvent] = []
            if outcome in FAILURES:
                payment.update(status="failed", **FAILURES[outcome])
                events.append(self._event("payment.failed", payment=payment))
            else:
                self._authorize(payment)
                events.append(self._event("payment.authorized", payment=payment))
                if outcome == "success" and self._auto_capture(order["id"]):
                    self._do_capture(payment, order, events)
            self.webhooks.publish(events, deliver=deliver_webhooks)
            return self._with_checkout_fields(payment)

    def _authorize(self, payment: dict[str, Any]) -> None:
        payment.update(status="authorized", error_code=None, error_description=None, error_source=None,
                       error_step=None, error_reason=None)  # fmt: skip
        payment["acquirer_data"]["bank_transaction_id"] = "".join(self._ids.choice(string.digits) for _ in range(7))

    #: A late authorisation arrives this long after its payment was created unless told otherwise: past the
    #: shortest auto-capture window (12 min), since Razorpay marks a silent payment failed after 10 minutes
    #: and only then keeps polling the bank (after-capture.md §1.3).
    LATE_AUTHORISATION_MINUTES = 15.0

    def late_authorize(self, gateway_payment_id: str, *, deliver_webhooks: bool = True,
                       minutes_after_creation: float | None = None) -> dict[str, Any]:
        """The bank reports success for a failed payment, ``minutes_after_creation`` after it was created.

        Razorpay's capture windows decide what follows (after-capture.md §1.2, counted from creation):
        within the order's auto-capture window A it is captured; after A and before the manual window M
        it stays ``authorized`` and the merchant must capture it; after M it is refunded (``captured``
        false). If another payment already paid the order it is refunded at once (§1.3).
        """
        late_by = self.LATE_AUTHORISATION_MINUTES if minutes_after_creation is None else float(minutes_after_creation)
        with self.lock:
            payment = self.payments.get(gateway_payment_id)
            if payment is None:
                raise SimulatorError(f"no such payment {gateway_payment_id!r}", status=404)
            if payment["status"] != "failed":
                raise SimulatorError(f"only a failed payment can be late-authorized, not {payment['status']!r}")
            order = self.orders[payment["order_id"]]
            automatic, limit = self._windows.get(order["id"], (None, 0))
            if self._capture_mode.get(order["id"]) is None and not self.config.auto_capture:
                automatic = None  # the account captures manually
            self._authorize(payment)
            events = [self._event("payment.authorized", payment=payment)]
            if order["status"] == "paid" or late_by > limit:
                self._do_refund(payment, payment["amount"], events)
            elif automatic is not None and late_by <= automatic:
                self._do_capture(payment, order, events)
            self.webhooks.publish(events, deliver=deliver_webhooks)
            return self._with_checkout_fields(payment)

    def refund(
        self, gateway_payment_id: str, amount_minor: int | None = None, *, deliver_webhooks: bool = True
    ) -> dict[str, Any]:
        """Refund a captured payment (all that is left by default); returns the refund entity."""
        with self.lock:
            payment = self.payments.get(gateway_payment_id)
            if payment is None:
                raise SimulatorError(f"no such payment {gateway_payment_id!r}", status=404)
            if payment["status"] != "captured":
                raise SimulatorError("The payment status should be captured for action to be taken")
            left = payment["amount"] - payment["amount_refunded"]
            amount = left if amount_minor is None else amount_minor
            if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= left:
                raise SimulatorError(f"refund amount must be an integer between 1 and {left}", status=400)
            events: list[WebhookEvent] = []
            refund = self._do_refund(payment, amount, events)
            self.webhooks.publish(events, deliver=deliver_webhooks)
            return copy.deepcopy(refund)

    def snapshot(self) -> dict[str, Any]:
        """Every order, payment and refund, oldest first."""
        with self.lock:
            tables = {"orders": self.orders, "payments": self.payments, "refunds": self.refunds}
            return {name: copy.deepcopy(list(table.values())) for name, table in tables.items()}
