"""In-memory Razorpay: orders, payments, refunds and disputes with Razorpay's JSON shapes and rules.

:class:`RazorpaySim` holds the state behind one re-entrant lock (uvicorn's thread, the timer thread and the
test thread all touch it). API operations raise :class:`~simulator.razorpay.codec.RazorpayApiError`
(rendered by the routes as Razorpay's error body); customer behaviour (``pay``, ``late_authorize``,
``upi_retry``, ``refund``, ``dashboard_refund``; disputes ``open_dispute``, ``move_dispute``) raises
:class:`~simulator.errors.SimulatorError` when asked for something a customer could not do. Webhooks are built
here and queued on the shared sender.

A refund (API, Dashboard, automatic or for a lost dispute: after-capture.md §0.1) is created ``pending`` with
``refund.created``, and ``refund_processed_after_s`` simulated seconds later (a timer) becomes ``processed``
(``refund.processed``) or, when :class:`~simulator.refunds.RefundFailures` says so, ``failed``
(``refund.failed``). With the knob at 0 it is processed as it is created.

Each money move (a capture, a processed refund of a captured payment, a lost dispute's deduction) is recorded
on :attr:`RazorpaySim.settlements` (:mod:`simulator.razorpay.settlements`), which settles it later.
"""

from __future__ import annotations

import copy
import json
import string
import threading
from collections.abc import Mapping
from typing import Any

from simulator.clock import SimClock, Timers
from simulator.config import DAY_S, SimulatorConfig, derived_rng
from simulator.errors import SimulatorError
from simulator.outcomes import OUTCOMES
from simulator.razorpay import codec
from simulator.razorpay.codec import RazorpayApiError
from simulator.razorpay.entities import dispute_entity, order_entity, payment_entity, refund_entity, webhook_event
from simulator.razorpay.rules import (
    DISPUTE_MOVES,
    DISPUTE_PHASES,
    FAILURES,
    IDEMPOTENCY_KEY,
    REOPENING_PHASES,
    RESPOND_DAYS,
    CaptureRequest,
    CaptureWindows,
    ListParams,
    OrderRequest,
    RefundRequest,
    WireError,
    check_minimum,
    parse,
)
from simulator.razorpay.settlements import RazorpaySettlements
from simulator.refunds import RefundFailures
from simulator.settlements import SettlementFaults
from simulator.webhooks import WebhookEvent, WebhookSender

_ALNUM = string.ascii_letters + string.digits

#: razorpay.md §3.4 (late authorisation): "No bank response -> the payment stays created. After 10 minutes it
#: is marked failed (timeout)."
CREATED_TIMEOUT_S = 10 * 60


class RazorpaySim:
    """The simulated Razorpay account: state, API semantics and customer behaviour."""

    def __init__(self, config: SimulatorConfig, webhooks: WebhookSender, clock: SimClock, timers: Timers,
                 failures: RefundFailures | None = None, *, settlement_faults: SettlementFaults | None = None):
        self.config = config
        self.webhooks = webhooks
        self.clock = clock
        self.timers = timers
        self.failures = failures if failures is not None else RefundFailures()
        self.settlements = RazorpaySettlements(config, clock, timers, webhooks,
                                               settlement_faults if settlement_faults is not None
                                               else SettlementFaults())
        self.lock = threading.RLock()
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget every order, payment, refund, dispute and settlement (and restart the id stream from ``seed``)."""
        with self.lock:
            self.settlements.reset()
            self.orders: dict[str, dict[str, Any]] = {}
            self.payments: dict[str, dict[str, Any]] = {}
            self.refunds: dict[str, dict[str, Any]] = {}
            self.disputes: dict[str, dict[str, Any]] = {}
            self._payment_refunds: dict[str, list[str]] = {}
            #: refund id -> (its fate, deliver its webhooks), while it is pending
            self._refund_fates: dict[str, tuple[str, bool]] = {}
            #: refund id -> the lost dispute it pays back (settled as the dispute's adjustment, not again)
            self._dispute_refunds: dict[str, str] = {}
            #: X-Refund-Idempotency key -> (payment id, the request body as canonical JSON, refund id)
            self._idempotency: dict[str, tuple[str, str, str]] = {}
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

    def answer_status(self, payment_id: str, status: str) -> dict[str, Any]:
        """From now on the payment answers ``status``, one Razorpay's documents do not list (a gateway can ship a
        new one without notice); nothing else changes and no webhook is sent."""
        with self.lock:
            payment = self._get("payment", self.payments, payment_id)
            payment["status"] = status
            return copy.deepcopy(payment)

    def capture(self, payment_id: str, body: Any) -> dict[str, Any]:
        """``POST /v1/payments/{id}/capture`` with the texts of razorpay.md §3.4; fires the capture webhooks."""
        with self.lock:
            payment = self._get("payment", self.payments, payment_id)
            request = parse(CaptureRequest, body)
            if payment["captured"]:
                raise RazorpayApiError(400, "This payment has already been captured")
            if payment["status"] != "authorized" or self._refunded_or_pending(payment) > 0:  # being auto-refunded
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
        """Captured: ``payment.captured`` and ``order.paid``, two events with different ids (razorpay.md §0.4)."""
        self._captured(payment, order)
        events.append(self._event("payment.captured", payment=payment))
        order["amount_paid"] += payment["amount"]
        order["amount_due"] = max(0, order["amount"] - order["amount_paid"])
        order["status"] = "paid"
        events.append(self._event("order.paid", payment=payment, order=order))

    def _captured(self, payment: dict[str, Any], order: Mapping[str, Any]) -> None:
        """``captured``, with its fee: ``settlement_fee_bp`` plus ``settlement_tax_bp`` GST on it, the fee including
        the tax and ``tax`` the GST part (after-capture.md §4.3); to be settled (:mod:`simulator.settlements`)."""
        fee, tax = self.settlements.payment_fees(payment["amount"])
        payment.update(status="captured", captured=True, fee=fee, tax=tax)
        self.settlements.payment_captured(payment, order)

    def _refunded_or_pending(self, payment: Mapping[str, Any]) -> int:
        """What the payment's refunds take back, counting pending ones (a failed refund takes nothing)."""
        found = (self.refunds[r] for r in self._payment_refunds.get(payment["id"], ()))
        return sum(r["amount"] for r in found if r["status"] != "failed")

    def _start_refund(self, payment: dict[str, Any], amount: int, events: list[WebhookEvent], *,
                      speed: str = "normal", notes: Any = None, receipt: str | None = None, fail: bool = False,
                      deliver: bool = True, dispute_id: str | None = None) -> dict[str, Any]:
        """A new refund, ``pending`` with ``refund.created``; settled at once when ``refund_processed_after_s``
        is 0 (both events then carry the final status, like the ``refund.created`` sample of after-capture.md
        §2.4), else by a timer. It fails if ``fail`` or the failure knobs say so."""
        refund = refund_entity(self._new_id("refund", self.refunds), payment, amount, self._now(), speed=speed,
                               notes=notes, receipt=receipt)
        self.refunds[refund["id"]] = refund
        self._payment_refunds.setdefault(payment["id"], []).append(refund["id"])
        if dispute_id is not None:
            self._dispute_refunds[refund["id"]] = dispute_id
        fate = "failed" if fail or self.failures.take(payment["id"]) else "processed"
        delay = self.config.refund_processed_after_s
        if delay <= 0:
            self._settle_refund(refund, fate)
            events.append(self._event("refund.created", refund=refund, payment=payment))
            events.append(self._event(f"refund.{fate}", refund=refund, payment=payment))
            return refund
        events.append(self._event("refund.created", refund=refund, payment=payment))
        self._refund_fates[refund["id"]] = (fate, deliver)
        self.timers.call_at(self.clock.now() + delay, lambda: self._refund_due(refund["id"]))
        return refund

    def _settle_refund(self, refund: dict[str, Any], fate: str) -> None:
        """``processed`` or ``failed``. Only a processed refund counts in ``amount_refunded`` (UNDOCUMENTED,
        after-capture.md §2.3: our reading); ``refund_status`` partial/full, ``refunded`` once all is back. A
        processed refund of a captured payment is netted out of the next settlement (an auto-refund, ``captured``
        false, moved no settled money; a lost dispute's refund is settled as the dispute's adjustment)."""
        refund["status"] = fate
        if fate != "processed":
            return
        payment = self.payments[refund["payment_id"]]
        if payment["captured"] and refund["id"] not in self._dispute_refunds:
            self.settlements.refund_processed(refund, payment, self.orders[payment["order_id"]])
        payment["amount_refunded"] += refund["amount"]
        full = payment["amount_refunded"] >= payment["amount"]
        payment["refund_status"] = "full" if full else "partial"  # after-capture.md §2.3
        if full:
            payment["status"] = "refunded"

    def _refund_due(self, refund_id: str) -> None:
        """A pending refund's time is up: settle it and send ``refund.processed`` / ``refund.failed``."""
        with self.lock:
            refund = self.refunds.get(refund_id)
            pending = self._refund_fates.pop(refund_id, None)
            if refund is None or pending is None or refund["status"] != "pending":
                return
            fate, deliver = pending
            self._settle_refund(refund, fate)
            event = self._event(f"refund.{fate}", refund=refund, payment=self.payments[refund["payment_id"]])
            self.webhooks.publish([event], deliver=deliver)

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
        payment already paid the order it is refunded at once (after-capture.md §1.3). Either auto-refund is a
        refund entity with the ``refund.*`` events of any refund, the payment ``captured: false`` (§0.1, §2.4).
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
            if order["status"] == "paid" or late_by > windows.manual:  # auto-refunds are normal speed (§1.2)
                self._start_refund(payment, payment["amount"], events, deliver=deliver_webhooks)
            elif automatic is not None and late_by <= automatic:
                self._do_capture(payment, order, events)
            self.webhooks.publish(events, deliver=deliver_webhooks)
            return self._with_checkout_fields(payment)

    def upi_retry(self, gateway_payment_id: str, *, deliver_webhooks: bool = True) -> dict[str, Any]:
        """A failed UPI payment succeeds on an in-app retry: the same payment id goes failed -> captured, with
        ``payment.captured`` (and ``order.paid``) but no ``payment.authorized`` (after-capture.md §1.3: "payment.
        failed then payment.captured for one payment is expected behaviour (late auth or a UPI in-app retry)").
        On an order another payment already paid it is captured all the same and left so: the immediate refund
        of after-capture.md §1.3 is documented for a late authorisation, and an auto-refund has ``captured``
        false (§0.1, §2.4), so a captured duplicate is the merchant's to refund."""
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
                self._captured(payment, order)
                events.append(self._event("payment.captured", payment=payment))
            else:
                self._do_capture(payment, order, events)
            self.webhooks.publish(events, deliver=deliver_webhooks)
            return self._with_checkout_fields(payment)

    def _refundable(self, gateway_payment_id: str, amount_minor: int | None) -> tuple[dict[str, Any], int]:
        """The captured payment a control refund names and the amount (all that is left by default)."""
        payment = self.payments.get(gateway_payment_id)
        if payment is None:
            raise SimulatorError(f"no such payment {gateway_payment_id!r}", status=404)
        if payment["status"] != "captured":  # after-capture.md §2.5
            raise SimulatorError(codec.NOT_CAPTURED)
        left = payment["amount"] - self._refunded_or_pending(payment)
        amount = left if amount_minor is None else amount_minor
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= left:
            raise SimulatorError(f"refund amount must be an integer between 1 and {left}", status=400)
        return payment, amount

    def refund(self, gateway_payment_id: str, amount_minor: int | None = None, *,
               deliver_webhooks: bool = True) -> dict[str, Any]:
        """Refund a captured payment (all that is left by default); returns the refund entity.

        The shortcut from before refunds had a lifecycle, kept as it was: processed at once whatever the knobs,
        ``refund.processed`` only. :meth:`dashboard_refund` makes the refund Razorpay would."""
        with self.lock:
            payment, amount = self._refundable(gateway_payment_id, amount_minor)
            refund = refund_entity(self._new_id("refund", self.refunds), payment, amount, self._now())
            self.refunds[refund["id"]] = refund
            self._payment_refunds.setdefault(payment["id"], []).append(refund["id"])
            self._settle_refund(refund, "processed")
            self.webhooks.publish([self._event("refund.processed", refund=refund, payment=payment)],
                                  deliver=deliver_webhooks)
            return copy.deepcopy(refund)

    def dashboard_refund(self, gateway_payment_id: str, amount_minor: int | None = None, *, fail: bool = False,
                         deliver_webhooks: bool = True) -> dict[str, Any]:
        """A refund made in Razorpay's Dashboard, not through the API: the same entity, lifecycle and
        ``refund.*`` events as an API refund (after-capture.md §0.1, §2.4); ``fail``: it ends ``failed``."""
        with self.lock:
            payment, amount = self._refundable(gateway_payment_id, amount_minor)
            events: list[WebhookEvent] = []
            refund = self._start_refund(payment, amount, events, fail=fail, deliver=deliver_webhooks)
            self.webhooks.publish(events, deliver=deliver_webhooks)
            return copy.deepcopy(refund)

    def create_refund(self, payment_id: str, body: Any, idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /v1/payments/{id}/refund`` (after-capture.md §2.1, §2.5): only a ``captured`` payment, partials
        while their sum (pending ones included) ≤ the captured amount. With ``X-Refund-Idempotency`` the same
        key and body return the same refund; another body gets 400 ``BAD_REQUEST_ERROR`` (the sample; the
        table says 409: a CONTRADICTION)."""
        if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
            raise RazorpayApiError(400, "The X-Refund-Idempotency header must be at least 10 characters of "
                                        "letters, digits, _ or -.", field="X-Refund-Idempotency")
        fingerprint = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        with self.lock:
            payment = self._get("payment", self.payments, payment_id)
            if idempotency_key is not None and idempotency_key in self._idempotency:
                if self._idempotency[idempotency_key][:2] != (payment_id, fingerprint):
                    raise RazorpayApiError(400, codec.OTHER_REQUEST_SAME_KEY)
                return copy.deepcopy(self.refunds[self._idempotency[idempotency_key][2]])
            request = parse(RefundRequest, body)
            left = payment["amount"] - self._refunded_or_pending(payment)
            if payment["status"] == "refunded" or (payment["status"] == "captured" and left <= 0):
                raise RazorpayApiError(400, codec.FULLY_REFUNDED)
            if payment["status"] != "captured":
                raise RazorpayApiError(400, codec.NOT_CAPTURED)
            amount = left if request.amount is None else request.amount
            try:
                check_minimum(amount, payment["currency"])
            except WireError as exc:
                raise RazorpayApiError(400, str(exc), field="amount") from None
            if amount > left:
                raise RazorpayApiError(400, codec.MORE_THAN_CAPTURED, field="amount")
            events: list[WebhookEvent] = []
            refund = self._start_refund(payment, amount, events, speed=request.speed, notes=request.notes,
                                        receipt=request.receipt)
            if idempotency_key is not None:
                self._idempotency[idempotency_key] = (payment_id, fingerprint, refund["id"])
            self.webhooks.publish(events)
            return copy.deepcopy(refund)

    def payment_refunds(self, payment_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v1/payments/{id}/refunds``: newest first, ``count`` 10 by default ("last 10", §2.1)."""
        page = parse(ListParams, params)
        with self.lock:
            payment = self._get("payment", self.payments, payment_id)
            items = [self.refunds[r] for r in reversed(self._payment_refunds.get(payment["id"], []))]
            items = [r for r in items if page.from_ <= r["created_at"] <= page.to]
            return codec.collection(copy.deepcopy(items[page.skip : page.skip + page.count]))

    def list_refunds(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v1/refunds``: newest first, paged (after-capture.md §2.1, count ≤ 100)."""
        page = parse(ListParams, params)
        with self.lock:
            items = [r for r in reversed(self.refunds.values()) if page.from_ <= r["created_at"] <= page.to]
            return codec.collection(copy.deepcopy(items[page.skip : page.skip + page.count]))

    def fetch_refund(self, refund_id: str, payment_id: str | None = None) -> dict[str, Any]:
        """``GET /v1/refunds/{id}`` or ``/v1/payments/{pid}/refunds/{id}`` (a refund of another payment there is
        "The id provided does not exist")."""
        with self.lock:
            if payment_id is not None:
                self._get("payment", self.payments, payment_id)
            refund = self._get("refund", self.refunds, refund_id)
            if payment_id is not None and refund["payment_id"] != payment_id:
                raise RazorpayApiError(400, codec.ID_DOES_NOT_EXIST, field="id")
            return copy.deepcopy(refund)

    def refunds_of(self, gateway_payment_id: str) -> list[dict[str, Any]]:
        """The payment's refunds, oldest first (for tests and ``GET /_sim/payments/{id}/refunds``)."""
        with self.lock:
            if gateway_payment_id not in self.payments:
                raise SimulatorError(f"no such payment {gateway_payment_id!r}", status=404)
            return copy.deepcopy([self.refunds[r] for r in self._payment_refunds.get(gateway_payment_id, [])])

    # -- disputes (after-capture.md §3) -----------------------------------------------------
    def open_dispute(self, gateway_payment_id: str, *, amount_minor: int | None = None, phase: str = "chargeback",
                     reason_code: str = "chargeback", respond_in_s: float | None = None,
                     deliver_webhooks: bool = True) -> dict[str, Any]:
        """The customer's bank disputes a captured payment: an ``open`` dispute (all of the payment by default),
        ``respond_by`` = now + ``respond_in_s`` (default: the phase's days, :data:`RESPOND_DAYS`), and
        ``payment.dispute.created`` (after-capture.md §3.1-3.2)."""
        with self.lock:
            payment = self.payments.get(gateway_payment_id)
            if payment is None:
                raise SimulatorError(f"no such payment {gateway_payment_id!r}", status=404)
            if not payment["captured"]:
                raise SimulatorError(f"only a captured payment can be disputed, not a {payment['status']!r} one")
            amount = payment["amount"] if amount_minor is None else amount_minor
            if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= payment["amount"]:
                raise SimulatorError(f"dispute amount must be an integer between 1 and {payment['amount']}",
                                     status=400)
            if phase not in DISPUTE_PHASES:
                raise SimulatorError(f"phase must be one of {list(DISPUTE_PHASES)}, not {phase!r}", status=400)
            if respond_in_s is not None and respond_in_s < 0:
                raise SimulatorError("respond_in_s must not be negative", status=400)
            wait = RESPOND_DAYS[phase] * DAY_S if respond_in_s is None else respond_in_s
            dispute = dispute_entity(self._new_id("dispute", self.disputes), payment, amount, phase=phase,
                                     reason_code=reason_code, respond_by=int(self.clock.now() + wait),
                                     now=self._now())
            self.disputes[dispute["id"]] = dispute
            self.webhooks.publish([self._event("payment.dispute.created", payment=payment, dispute=dispute)],
                                  deliver=deliver_webhooks)
            return copy.deepcopy(dispute)

    def move_dispute(self, dispute_id: str, *, status: str | None = None, phase: str | None = None,
                     deliver_webhooks: bool = True) -> dict[str, Any]:
        """Razorpay or the network moves a dispute, with ``payment.dispute.<move>`` (after-capture.md §3.2):

        - ``under_review`` (evidence submitted: ``evidence.submitted_at``), ``won``, ``lost``
          (``amount_deducted`` = amount, and the customer's refund: §0.1, §3.4), ``closed`` (fraud only: the
          phase becomes ``fraud``), from ``open`` or ``under_review``;
        - ``action_required``: evidence insufficient, the dispute stays (or is again) ``open``;
        - ``phase`` alone, ``pre_arbitration`` / ``arbitration``: a won case re-challenged, ``open`` again with a
          new ``respond_by``; no event is documented for it, the simulator sends ``payment.dispute.created``.
        """
        if status is None and phase is None:
            raise SimulatorError("give a status or a phase", status=400)
        if status is not None and status not in DISPUTE_MOVES:
            raise SimulatorError(f"status must be one of {list(DISPUTE_MOVES)}, not {status!r}", status=400)
        if phase is not None and phase not in DISPUTE_PHASES:
            raise SimulatorError(f"phase must be one of {list(DISPUTE_PHASES)}, not {phase!r}", status=400)
        with self.lock:
            dispute = self.disputes.get(dispute_id)
            if dispute is None:
                raise SimulatorError(f"no such dispute {dispute_id!r}", status=404)
            payment = self.payments[dispute["payment_id"]]
            events: list[WebhookEvent] = []
            if status is None:
                if phase not in REOPENING_PHASES or dispute["status"] != "won":
                    raise SimulatorError(f"only a won dispute is reopened, by a phase in {list(REOPENING_PHASES)}")
                dispute.update(status="open", phase=phase,
                               respond_by=int(self.clock.now() + RESPOND_DAYS[str(phase)] * DAY_S))
                events.append(self._event("payment.dispute.created", payment=payment, dispute=dispute))
            else:
                if dispute["status"] not in ("open", "under_review"):
                    raise SimulatorError(f"the dispute is {dispute['status']}; it cannot move to {status}")
                if status == "closed" and phase not in (None, "fraud"):
                    raise SimulatorError("only a fraud dispute is closed", status=400)
                dispute["phase"] = "fraud" if status == "closed" else phase or dispute["phase"]
                if status == "lost":
                    self._lose(dispute, events, deliver=deliver_webhooks)
                else:
                    dispute["status"] = "open" if status == "action_required" else status
                    if status == "under_review":
                        dispute["evidence"]["submitted_at"] = self._now()
                    events.append(self._event(f"payment.dispute.{status}", payment=payment, dispute=dispute))
            self.webhooks.publish(events, deliver=deliver_webhooks)
            return copy.deepcopy(dispute)

    def _lose(self, dispute: dict[str, Any], events: list[WebhookEvent], *, deliver: bool = True) -> None:
        """Lost: ``amount_deducted`` = amount (after-capture.md §3.1); "Accepting refunds the customer" (§3.4)
        with a refund entity and its ``refund.*`` events, as for any refund (§0.1), of what is left to refund. The
        deduction is an ``adjustment`` of the next settlement (§3.4, §4.2); that refund is not settled again."""
        payment = self.payments[dispute["payment_id"]]
        dispute.update(status="lost", amount_deducted=dispute["amount"])
        self.settlements.dispute_lost(dispute, payment, self.orders[payment["order_id"]], self._now())
        events.append(self._event("payment.dispute.lost", payment=payment, dispute=dispute))
        amount = min(dispute["amount"], payment["amount"] - self._refunded_or_pending(payment))
        if amount > 0:
            self._start_refund(payment, amount, events, deliver=deliver, dispute_id=dispute["id"])

    def accept_dispute(self, dispute_id: str) -> dict[str, Any]:
        """``POST /v1/disputes/{id}/accept``: ``open`` -> ``lost``, irreversibly; only before ``respond_by``
        (after-capture.md §3.3-3.4, with the documented 400 texts)."""
        with self.lock:
            dispute = self._get("dispute", self.disputes, dispute_id)
            if dispute["status"] != "open":
                raise RazorpayApiError(400, codec.NOT_ALLOWED_IN_STATUS.format(dispute["status"]))
            if self.clock.now() > dispute["respond_by"]:
                raise RazorpayApiError(400, codec.DEADLINE_ELAPSED)
            events: list[WebhookEvent] = []
            self._lose(dispute, events)
            self.webhooks.publish(events)
            return copy.deepcopy(dispute)

    def fetch_dispute(self, dispute_id: str) -> dict[str, Any]:
        """``GET /v1/disputes/{id}`` (``expand[]`` is not modelled)."""
        with self.lock:
            return copy.deepcopy(self._get("dispute", self.disputes, dispute_id))

    def list_disputes(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v1/disputes``: newest first, ``count``/``skip`` (list parameters UNDOCUMENTED, §3.3)."""
        page = parse(ListParams, params)
        with self.lock:
            items = [d for d in reversed(self.disputes.values()) if page.from_ <= d["created_at"] <= page.to]
            return codec.collection(copy.deepcopy(items[page.skip : page.skip + page.count]))

    def disputes_of(self, gateway_payment_id: str | None = None) -> list[dict[str, Any]]:
        """Every dispute (of one payment if given), oldest first."""
        with self.lock:
            found = [d for d in self.disputes.values() if gateway_payment_id in (None, d["payment_id"])]
            return copy.deepcopy(found)

    def snapshot(self) -> dict[str, Any]:
        """Every order, payment and refund, oldest first."""
        with self.lock:
            tables = {"orders": self.orders, "payments": self.payments, "refunds": self.refunds}
            return {name: copy.deepcopy(list(table.values())) for name, table in tables.items()}
