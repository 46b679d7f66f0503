"""In-memory Razorpay: orders, payments and refunds with Razorpay's JSON shapes and rules.

:class:`RazorpaySim` holds the state behind one re-entrant lock (uvicorn's thread, the timer thread and the
test thread all touch it). API operations raise :class:`~simulator.razorpay.codec.RazorpayApiError`
(rendered by the routes as Razorpay's error body); customer behaviour (``pay``, ``late_authorize``,
``upi_retry``, ``refund``) raises :class:`~simulator.errors.SimulatorError` when asked for something a
customer could not do. Webhooks are built here and queued on the shared sender.
"""

from __future__ import annotations

import copy
import string
import threading
from collections.abc import Mapping
from typing import Any

from simulator.clock import SimClock, Timers
from simulator.config import SimulatorConfig, derived_rng
from simulator.errors import SimulatorError
from simulator.outcomes import OUTCOMES
from simulator.razorpay import codec
from simulator.razorpay.codec import RazorpayApiError
from simulator.razorpay.entities import order_entity, payment_entity, refund_entity, webhook_event
from simulator.razorpay.rules import FAILURES, CaptureRequest, CaptureWindows, ListParams, OrderRequest, parse
from simulator.webhooks import WebhookEvent, WebhookSender

_ALNUM = string.ascii_letters + string.digits

#: razorpay.md §3.4 (late authorisation): "No bank response -> the payment stays created. After 10 minutes it
#: is marked failed (timeout)."
CREATED_TIMEOUT_S = 10 * 60


class RazorpaySim:
    """The simulated Razorpay account: state, API semantics and customer behaviour."""

    def __init__(self, config: SimulatorConfig, webhooks: WebhookSender, clock: SimClock, timers: Timers):
        self.config = config
        self.webhooks = webhooks
        self.clock = clock
        self.timers = timers
        self.lock = threading.RLock()
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget every order, payment and refund (and restart the id stream from ``seed``)."""
        with self.lock:
            self.orders: dict[str, dict[str, Any]] = {}
            self.payments: dict[str, dict[str, Any]] = {}
            self.refunds: dict[str, dict[str, Any]] = {}
            self._capture_mode: dict[str, str | None] = {}
            self._windows: dict[str, CaptureWindows] = {}
            self._order_payments: dict[str, list[str]] = {}
            self._by_receipt: dict[str, list[str]] = {}
            self._ids = derived_rng(seed if seed is not None else self.config.seed, "razorpay-ids")

    # -- helpers -----------------------------------------------------------------------------
    def _now(self) -> int:
        return int(self.clock.now())

    def _new_id(self, kind: str, table: Mapping[str, Any]) -> str:
        while True:
            candidate = codec.PREFIXES[kind] + "".join(self._ids.choice(_ALNUM) for _ in range(codec.ID_LENGTH))
            if candidate not in table:
                return candidate

    def _get(self, kind: str, table: Mapping[str, dict[str, Any]], entity_id: str) -> dict[str, Any]:
        """razorpay.md §2: a malformed id -> 400 "... is not a valid id"; an unknown one -> 400 "The id
        provided does not exist" (a 400, not a 404: §0.7)."""
        if not codec.is_valid_id(kind, entity_id):
            raise RazorpayApiError(400, codec.NOT_A_VALID_ID.format(entity_id), field="id")
        found = table.get(entity_id)
        if found is None:
            raise RazorpayApiError(400, codec.ID_DOES_NOT_EXIST, field="id")
        return found

    def _auto_capture(self, order_id: str) -> bool:
        mode = self._capture_mode.get(order_id)
        return self.config.auto_capture if mode is None else mode == "automatic"

    def _event(self, name: str, **entities: dict[str, Any]) -> WebhookEvent:
        event_id = "evt_" + "".join(self._ids.choice(_ALNUM) for _ in range(codec.ID_LENGTH))
        return webhook_event(name, event_id, account_id=self.config.account_id, now=self._now(),
                             webhook_secret=self.config.webhook_secret, entities=entities)

    # -- API operations ----------------------------------------------------------------------
    def create_order(self, body: Any) -> dict[str, Any]:
        """``POST /v1/orders``. Each create is a new order, even with a receipt seen before: the receipt "has to
        be unique" is not enforced (razorpay.md §2); only ``unique_receipt: true`` returns the earlier order of
        that receipt (the S2S docs, razorpay.md §2), refusing one for another amount or currency."""
        request = parse(OrderRequest, body)
        with self.lock:
            earlier = [self.orders[o] for o in self._by_receipt.get(request.receipt or "", ())]
            if request.unique_receipt and earlier:
                found = earlier[0]
                if (found["amount"], found["currency"]) != (request.amount, request.currency):
                    raise RazorpayApiError(400, "An order with this receipt already exists for another amount or "
                                                "currency.", field="receipt")
                return copy.deepcopy(found)
            order_id = self._new_id("order", self.orders)
            self.orders[order_id] = order_entity(order_id, request.amount, request.currency, request.receipt,
                                                 request.notes, self._now())
            self._capture_mode[order_id] = request.capture
            self._windows[order_id] = request.windows()
            self._order_payments[order_id] = []
            if request.receipt is not None:
                self._by_receipt.setdefault(request.receipt, []).append(order_id)
            return copy.deepcopy(self.orders[order_id])

    def list_orders(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v1/orders``: newest first, filtered by ``receipt``/``from``/``to``, paged (razorpay.md §2)."""
        page = parse(ListParams, params)
        receipt = params.get("receipt")
        with self.lock:
            items = [o for o in reversed(self.orders.values()) if receipt in (None, o["receipt"])]
            items = [o for o in items if page.from_ <= o["created_at"] <= page.to]
            return codec.collection(copy.deepcopy(items[page.skip : page.skip + page.count]))

    def fetch_order(self, order_id: str) -> dict[str, Any]:
        """``GET /v1/orders/{id}``; older than 180 days -> 400 "please use reports" (razorpay.md §2)."""
        with self.lock:
            order = self._get("order", self.orders, order_id)
            if self.clock.now() - order["created_at"] > codec.ORDER_FETCH_LIMIT_S:
                raise RazorpayApiError(400, codec.ORDER_TOO_OLD, field="id")
            return copy.deepcopy(order)

    def order_payments(self, order_id: str) -> dict[str, Any]:
        """``GET /v1/orders/{id}/payments``: every attempt, failed ones included, oldest first (razorpay.md §2:
        the official sample lists the failed UPI attempt before the captured payment)."""
        with self.lock:
            self._get("order", self.orders, order_id)
            return codec.collection([copy.deepcopy(self.payments[p]) for p in self._order_payments[order_id]])

    def list_payments(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v1/payments``: newest first, filtered by ``from``/``to``, paged (razorpay.md §3.1)."""
        page = parse(ListParams, params)
        with self.lock:
            items = [p for p in reversed(self.payments.values()) if page.from_ <= p["created_at"] <= page.to]
            return codec.collection(copy.deepcopy(items[page.skip : page.skip + page.count]))

    def fetch_payment(self, payment_id: str) -> dict[str, Any]:
        """``GET /v1/payments/{id}``."""
        with self.lock:
            return copy.deepcopy(self._get("payment", self.payments, payment_id))

    def capture(self, payment_id: str, body: Any) -> dict[str, Any]:
        """``POST /v1/payments/{id}/capture`` with the texts of razorpay.md §3.4; fires the capture webhooks."""
        with self.lock:
            payment = self._get("payment", self.payments, payment_id)
            request = parse(CaptureRequest, body)
            if payment["captured"]:
                raise RazorpayApiError(400, "This payment has already been captured")
            if payment["status"] != "authorized":
                raise RazorpayApiError(
                    400, "Only payments which have been authorized and not yet captured can be captured"
                )
            order = self.orders[payment["order_id"]]
            if order["status"] == "paid":
                raise RazorpayApiError(400, "Your payment has been declined as the order is already paid")
            if request.amount != payment["amount"]:
                raise RazorpayApiError(400, "Capture amount must be equal to the amount authorized", field="amount")
            if request.currency is not None and request.currency != payment["currency"]:
                raise RazorpayApiError(400, "Currency should be same as payment currency", field="currency")
            events: list[WebhookEvent] = []
            self._do_capture(payment, order, events)
            self.webhooks.publish(events)
            return copy.deepcopy(payment)

    # -- state transitions -------------------------------------------------------------------
    def _do_capture(self, payment: dict[str, Any], order: dict[str, Any], events: list[WebhookEvent]) -> None:
        """Captured: ``payment.captured`` and ``order.paid``, two events with different ids (razorpay.md §0.4).
        The fee includes 18 % GST, ``tax`` is the GST part (after-capture.md §4.3)."""
        base_fee = payment["amount"] * 2 // 100
        tax = base_fee * 18 // 100
        payment.update(status="captured", captured=True, fee=base_fee + tax, tax=tax)
        events.append(self._event("payment.captured", payment=payment))
        order["amount_paid"] += payment["amount"]
        order["amount_due"] = max(0, order["amount"] - order["amount_paid"])
        order["status"] = "paid"
        events.append(self._event("order.paid", payment=payment, order=order))

    def _do_refund(self, payment: dict[str, Any], amount: int, events: list[WebhookEvent]) -> dict[str, Any]:
        refund_id = self._new_id("refund", self.refunds)
        refund = refund_entity(refund_id, payment, amount, self._now())
        self.refunds[refund_id] = refund
        payment["amount_refunded"] += amount
        full = payment["amount_refunded"] >= payment["amount"]
        payment["refund_status"] = "full" if full else "partial"  # after-capture.md §2.3
        if full:
            payment["status"] = "refunded"
        events.append(self._event("refund.processed", refund=refund, payment=payment))
        return refund

    def _with_checkout_fields(self, payment: dict[str, Any]) -> dict[str, Any]:
        """The payment plus what Standard Checkout hands the merchant on success (razorpay.md §4)."""
        result = copy.deepcopy(payment)
        if payment["status"] in ("authorized", "captured"):
            result["razorpay_payment_id"] = payment["id"]
            result["razorpay_order_id"] = payment["order_id"]
            result["razorpay_signature"] = codec.checkout_signature(self.config.key_secret, payment["order_id"],
                                                                    payment["id"])
        return result

    def _authorize(self, payment: dict[str, Any]) -> None:
        payment.update(status="authorized", error_code=None, error_description=None, error_source=None,
                       error_step=None, error_reason=None)
        payment["acquirer_data"]["bank_transaction_id"] = "".join(self._ids.choice(string.digits) for _ in range(7))

    # -- customer behaviour ------------------------------------------------------------------
    def pay(self, gateway_order_id: str, outcome: str, *, deliver_webhooks: bool = True,
            amount_minor: int | None = None, currency: str | None = None) -> dict[str, Any]:
        """A customer's checkout attempt on an order; see :mod:`simulator.outcomes`.

        Returns the payment JSON (plus the checkout handler fields when authorised or captured), or
        ``{"closed": True}`` for ``close_window``.
        """
        if outcome not in OUTCOMES:
            raise SimulatorError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}", status=400)
        if amount_minor is not None and (isinstance(amount_minor, bool) or not isinstance(amount_minor, int)):
            raise SimulatorError("amount_minor must be an integer", status=400)
        with self.lock:
            order = self.orders.get(gateway_order_id)
            if order is None:
                raise SimulatorError(f"no such order {gateway_order_id!r}", status=404)
            if order["status"] == "paid":  # razorpay.md §2: "No further payments are allowed"
                raise SimulatorError("the order is already paid; checkout refuses a new payment")
            if any(self.payments[p]["status"] == "authorized" for p in self._order_payments[order["id"]]):
                # razorpay.md §2: an attempted order with an authorized payment refuses a new payment
                raise SimulatorError("the order has an authorized payment; checkout refuses a new payment")
            if outcome == "close_window":
                return {"closed": True}
            amount = order["amount"] if amount_minor is None else amount_minor
            method = "cod" if outcome == "cod" else "netbanking"
            payment = payment_entity(self._new_id("payment", self.payments), order, amount,
                                     currency or order["currency"], self._now(), method)
            self.payments[payment["id"]] = payment
            self._order_payments[order["id"]].append(payment["id"])
            order["attempts"] += 1
            order["status"] = "attempted"
            events: list[WebhookEvent] = []
            if outcome in FAILURES:
                payment.update(status="failed", **FAILURES[outcome].model_dump())
                events.append(self._event("payment.failed", payment=payment))
            elif outcome == "no_response":
                self.timers.call_at(self.clock.now() + CREATED_TIMEOUT_S, lambda: self._time_out(payment["id"]))
            elif outcome == "cod":
                payment["status"] = "pending"  # razorpay.md §5.1: payment.pending, COD on Standard Checkout
                events.append(self._event("payment.pending", payment=payment))
            else:
                self._authorize(payment)
                events.append(self._event("payment.authorized", payment=payment))
                if outcome == "success" and self._auto_capture(order["id"]):
                    self._do_capture(payment, order, events)
            self.webhooks.publish(events, deliver=deliver_webhooks)
            return self._with_checkout_fields(payment)

    def _time_out(self, payment_id: str) -> None:
        """A payment the bank never answered is marked failed 10 minutes after creation (razorpay.md §3.4)."""
        with self.lock:
            payment = self.payments.get(payment_id)
            if payment is None or payment["status"] != "created":
                return
            payment.update(status="failed", **FAILURES["timeout"].model_dump())
            self.webhooks.publish([self._event("payment.failed", payment=payment)])

    #: A late authorisation arrives this long after its payment was created unless told otherwise: past the
    #: shortest auto-capture window (12 min), since Razorpay marks a silent payment failed after 10 minutes
    #: and only then keeps polling the bank (after-capture.md §1.3).
    LATE_AUTHORISATION_MINUTES = 15.0

    def late_authorize(self, gateway_payment_id: str, *, deliver_webhooks: bool = True,
                       minutes_after_creation: float | None = None) -> dict[str, Any]:
        """The bank reports success for a failed (or still ``created``) payment, ``minutes_after_creation``
        after it was created: ``payment.authorized`` (razorpay.md §3.4, "failed -> authorized").

        Razorpay's capture windows decide what follows (after-capture.md §1.2, counted from creation): within
        the order's auto-capture window A it is captured; after A and before the manual window M it stays
        ``authorized`` and the merchant must capture it; after M it is refunded (``captured`` false). If another
        payment already paid the order it is refunded at once (after-capture.md §1.3).
        """
        late_by = self.LATE_AUTHORISATION_MINUTES if minutes_after_creation is None else float(minutes_after_creation)
        with self.lock:
            payment = self.payments.get(gateway_payment_id)
            if payment is None:
                raise SimulatorError(f"no such payment {gateway_payment_id!r}", status=404)
            if payment["status"] not in ("failed", "created"):
                raise SimulatorError(f"only a failed payment can be late-authorized, not {payment['status']!r}")
            order = self.orders[payment["order_id"]]
            windows = self._windows.get(order["id"], CaptureWindows(automatic=None, manual=0))
            automatic = windows.automatic
            if self._capture_mode.get(order["id"]) is None and not self.config.auto_capture:
                automatic = None  # the account captures manually
            # The bank answers late_by minutes after the payment was created: its created_at says so (the
            # capture windows count from creation, after-capture.md §1.2), whatever this process's clock.
            payment["created_at"] = min(payment["created_at"], int(self.clock.now() - late_by * 60))
            self._authorize(payment)
            events = [self._event("payment.authorized", payment=payment)]
            if order["status"] == "paid" or late_by > windows.manual:
                self._do_refund(payment, payment["amount"], events)
            elif automatic is not None and late_by <= automatic:
                self._do_capture(payment, order, events)
            self.webhooks.publish(events, deliver=deliver_webhooks)
            return self._with_checkout_fields(payment)

    def upi_retry(self, gateway_payment_id: str, *, deliver_webhooks: bool = True) -> dict[str, Any]:
        """A failed UPI payment succeeds on an in-app retry: the same payment id goes failed -> captured, with
        ``payment.captured`` (and ``order.paid``) but no ``payment.authorized`` (after-capture.md §1.3: "payment.
        failed then payment.captured for one payment is expected behaviour (late auth or a UPI in-app retry)").
        On an order another payment already paid it is refunded at once (after-capture.md §1.3)."""
        with self.lock:
            payment = self.payments.get(gateway_payment_id)
            if payment is None:
                raise SimulatorError(f"no such payment {gateway_payment_id!r}", status=404)
            if payment["status"] != "failed":
                raise SimulatorError(f"only a failed payment can succeed on a UPI retry, not {payment['status']!r}")
            order = self.orders[payment["order_id"]]
            payment.update(
                method="upi",
                bank=None,
                vpa="customer@okbank",
                error_code=None,
                error_description=None,
                error_source=None,
                error_step=None,
                error_reason=None,
                upi={"payer_account_type": "bank_account", "vpa": "customer@okbank", "flow": "in_app"},
            )
            events: list[WebhookEvent] = []
            if order["status"] == "paid":
                payment.update(status="captured", captured=True)
                events.append(self._event("payment.captured", payment=payment))
                self._do_refund(payment, payment["amount"], events)
            else:
                self._do_capture(payment, order, events)
            self.webhooks.publish(events, deliver=deliver_webhooks)
            return self._with_checkout_fields(payment)

    def refund(self, gateway_payment_id: str, amount_minor: int | None = None, *,
               deliver_webhooks: bool = True) -> dict[str, Any]:
        """Refund a captured payment (all that is left by default); returns the refund entity."""
        with self.lock:
            payment = self.payments.get(gateway_payment_id)
            if payment is None:
                raise SimulatorError(f"no such payment {gateway_payment_id!r}", status=404)
            if payment["status"] != "captured":  # razorpay.md §8 (razorpay-node#72)
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
