"""Razorpay's error body, request validation and the simulated checkout outcomes.

Messages follow Razorpay's documented wording where it is known (see
``/work/shared/docs/gateways/razorpay.md`` §2, §3.4 and §6).
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Mapping
from typing import Any

#: What a customer can do at checkout (``RazorpaySim.pay``).
OUTCOMES = frozenset({"success", "authorize_only", "decline", "gateway_error", "timeout", "close_window"})

#: The error fields of a failed payment, per failing outcome.
FAILURES: dict[str, dict[str, str]] = {
    "decline": {
        "error_code": "BAD_REQUEST_ERROR",
        "error_description": "Your payment has been declined by the bank",
        "error_source": "bank",
        "error_step": "payment_authorization",
        "error_reason": "payment_failed",
    },
    "gateway_error": {
        "error_code": "GATEWAY_ERROR",
        "error_description": "Payment was unsuccessful due to a temporary issue. If amount got deducted, "
        "it will be refunded within 5-7 working days.",
        "error_source": "gateway",
        "error_step": "payment_authorization",
        "error_reason": "payment_failed",
    },
    "timeout": {
        "error_code": "BAD_REQUEST_ERROR",
        "error_description": "Payment was not completed on time.",
        "error_source": "internal",
        "error_step": "payment_authorization",
        "error_reason": "payment_timed_out",
    },
}

_EXPONENT_0 = set("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split())
_EXPONENT_3 = {"BHD", "IQD", "JOD", "KWD", "OMR", "TND"}
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class SimulatorError(Exception):
    """The simulated customer asked for something impossible (HTTP ``status`` on ``/_sim/``)."""

    def __init__(self, message: str, *, status: int = 409):
        super().__init__(message)
        self.status = status


def error_body(code: str, description: str, *, field: str | None = None, source: str = "NA",
               step: str = "NA", reason: str = "NA") -> dict[str, Any]:  # fmt: skip
    """Razorpay's ``{"error": {...}}`` body."""
    return {
        "error": {
            "code": code, "description": description, "field": field, "source": source,
            "step": step, "reason": reason, "metadata": {},
        }
    }  # fmt: skip


class RazorpayApiError(Exception):
    """An API error answered with Razorpay's error body (validation errors by default)."""

    def __init__(self, status: int, description: str, *, code: str = "BAD_REQUEST_ERROR", field: str | None = None):
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.field = field

    def body(self) -> dict[str, Any]:
        """The JSON body Razorpay sends with this error."""
        if self.status == 401:
            return error_body(self.code, self.description)
        return error_body(self.code, self.description, field=self.field, source="business",
                          step="payment_initiation", reason="input_validation_failed")  # fmt: skip


def collection(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Razorpay's list envelope."""
    return {"entity": "collection", "count": len(items), "items": items}


def _bad(description: str, field: str | None) -> RazorpayApiError:
    return RazorpayApiError(400, description, field=field)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_amount(body: Mapping[str, Any], currency: str | None) -> int:
    """``amount``: required integer in the currency's smallest unit, at least one major unit."""
    if "amount" not in body or body["amount"] in (None, ""):
        raise _bad("The amount field is required.", "amount")
    amount = body["amount"]
    if not _is_int(amount):
        raise _bad("The amount must be an integer.", "amount")
    if currency is not None:
        exponent = 0 if currency in _EXPONENT_0 else 3 if currency in _EXPONENT_3 else 2
        if amount < 10**exponent:
            raise _bad(f"The amount must be at least {currency} {1:.{exponent}f}", "amount")
        if exponent == 3 and amount % 10:
            raise _bad(f"The amount for {currency} must end in 0.", "amount")
    return amount


#: The Dashboard's default and maximum capture window, 3 days in minutes (after-capture.md §1.2): used
#: for orders that carry no ``capture_options``.
DASHBOARD_EXPIRY_MINUTES = 3 * 24 * 60
#: ``automatic_expiry_period`` may not be shorter than 12 minutes (after-capture.md §1.1).
MIN_AUTOMATIC_EXPIRY_MINUTES = 12


def parse_capture_windows(payment: Any) -> tuple[int | None, int]:
    """``(A, M)`` in minutes from an order's ``payment.capture_options`` (after-capture.md §1.1-1.2).

    A is the auto-capture window (None on manual-capture orders), M the manual window after which an
    uncaptured authorisation is refunded; both count from the payment's creation.
    """
    options = payment.get("capture_options") if isinstance(payment, dict) else None
    options = options if isinstance(options, dict) else {}
    manual = isinstance(payment, dict) and payment.get("capture") == "manual"
    automatic = options.get("automatic_expiry_period", None if manual else DASHBOARD_EXPIRY_MINUTES)
    if automatic is not None and (not _is_int(automatic) or automatic < MIN_AUTOMATIC_EXPIRY_MINUTES):
        raise _bad("The automatic expiry period must be at least 12 minutes.", "payment.capture_options")
    limit = options.get("manual_expiry_period", DASHBOARD_EXPIRY_MINUTES if automatic is None else
                        max(automatic, DASHBOARD_EXPIRY_MINUTES))
    if not _is_int(limit) or (automatic is not None and limit < automatic):
        raise _bad("The manual expiry period must be at least the automatic expiry period.", "payment.capture_options")
    return (None if manual else automatic), limit


def parse_order_request(body: Any) -> tuple[int, str, str | None, dict[str, Any] | list[Any], str | None]:
    """Validate a ``POST /v1/orders`` body: ``(amount, currency, receipt, notes, capture)``.

    ``capture`` is ``"automatic"``, ``"manual"`` or None (account default).
    """
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", None)
    currency = body.get("currency")
    if currency in (None, ""):
        raise _bad("The currency field is required.", "currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise _bad("The currency is invalid.", "currency")
    amount = parse_amount(body, currency)
    receipt = body.get("receipt")
    if receipt is not None and (not isinstance(receipt, str) or len(receipt) > 40):
        raise _bad("The receipt may not be greater than 40 characters.", "receipt")
    notes = body.get("notes")
    if notes in (None, [], {}):
        notes = []
    elif not isinstance(notes, dict):
        raise _bad("The notes field must be an object.", "notes")
    elif len(notes) > 15:
        raise _bad("Number of notes must not exceed 15.", "notes")
    elif any(not isinstance(v, (str, int, float)) or len(str(v)) > 256 for v in notes.values()):
        raise _bad("Each note must be a string of at most 256 characters.", "notes")
    capture = None
    payment = body.get("payment")
    if payment is not None:
        capture = payment.get("capture") if isinstance(payment, dict) else None
        if capture not in ("automatic", "manual"):
            raise _bad("The payment.capture field must be automatic or manual.", "payment.capture")
    elif "payment_capture" in body:
        flag = body["payment_capture"]
        if flag not in (0, 1, True, False, "0", "1"):
            raise _bad("The payment capture field is invalid.", "payment_capture")
        capture = "automatic" if flag in (1, True, "1") else "manual"
    return amount, currency, receipt, notes, capture


def parse_capture(body: Any) -> tuple[int, str | None]:
    """Validate a ``POST /v1/payments/{id}/capture`` body: ``(amount, currency or None)``."""
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", None)
    currency = body.get("currency")
    return parse_amount(body, None), currency


def parse_list_params(params: Mapping[str, str]) -> tuple[int, int, int, int]:
    """``count`` (1..100, default 10), ``skip``, ``from``, ``to`` of a list call."""
    values: dict[str, int] = {}
    for name, default in (("count", 10), ("skip", 0), ("from", 0), ("to", 2**62)):
        raw = params.get(name)
        if raw is None:
            values[name] = default
            continue
        try:
            values[name] = int(raw)
        except ValueError:
            raise _bad(f"The {name} must be an integer.", name) from None
        if values[name] < 0:
            raise _bad(f"The {name} must be at least 0.", name)
    if values["count"] < 1:
        raise _bad("The count must be at least 1.", "count")
    if values["count"] > 100:
        raise _bad("The count may not be greater than 100.", "count")
    return values["count"], values["skip"], values["from"], values["to"]


def order_entity(order_id: str, amount: int, currency: str, receipt: str | None, notes: Any) -> dict[str, Any]:
    """A new order as ``POST /v1/orders`` returns it."""
    return {
        "id": order_id, "entity": "order", "amount": amount, "amount_paid": 0, "amount_due": amount,
        "currency": currency, "receipt": receipt, "offer_id": None, "status": "created", "attempts": 0,
        "notes": notes, "created_at": int(time.time()),
    }  # fmt: skip


def payment_entity(payment_id: str, order: Mapping[str, Any], amount: int, currency: str) -> dict[str, Any]:
    """A new netbanking payment (status ``created``) on ``order``; it carries the order's notes."""
    return {
        "id": payment_id, "entity": "payment", "amount": amount, "currency": currency, "status": "created",
        "order_id": order["id"], "invoice_id": None, "international": False, "method": "netbanking",
        "amount_refunded": 0, "refund_status": None, "captured": False, "description": None, "card_id": None,
        "bank": "HDFC", "wallet": None, "vpa": None, "email": "customer@example.com", "contact": "+919000090000",
        "notes": copy.deepcopy(order["notes"]), "fee": None, "tax": None, "error_code": None,
        "error_description": None, "error_source": None, "error_step": None, "error_reason": None,
        "acquirer_data": {"bank_transaction_id": None}, "created_at": int(time.time()),
    }  # fmt: skip


def refund_entity(refund_id: str, payment: Mapping[str, Any], amount: int) -> dict[str, Any]:
    """A processed refund of ``amount`` on ``payment``."""
    return {
        "id": refund_id, "entity": "refund", "amount": amount, "currency": payment["currency"],
        "payment_id": payment["id"], "notes": [], "receipt": None, "acquirer_data": {"arn": None},
        "created_at": int(time.time()), "batch_id": None, "status": "processed",
        "speed_processed": "normal", "speed_requested": "optimum",
    }  # fmt: skip
