"""Razorpay's wire formats, written from docs/gateways/razorpay.md (not from our adapter).

- Signatures (§4, §5.3): lower-case hex HMAC-SHA256. Webhooks: key = the webhook secret, message = the
  raw body bytes. Checkout: key = the API key_secret, message = ``order_id + "|" + razorpay_payment_id``.
- Amounts (§1): integers in the currency's smallest sub-unit; exponent 0 and 3 currencies listed there.
- Ids (§1): a prefix (``order_``, ``pay_``, ``rfnd_`` ...) then 14 alphanumeric characters.
- Error body (§6): ``{"error": {code, description, field, source, step, reason, metadata}}``; an unknown id
  is 400 "The id provided does not exist", a malformed one 400 "... is not a valid id" (§2, §0.7).
- Lists (§2): ``{"entity": "collection", "count": N, "items": [...]}``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

#: razorpay.md §1: "Exponent 0: BIF, CLP, DJF, GNF, ISK, JPY, KMF, KRW, PYG, RWF, UGX, VND, VUV, XAF, XOF,
#: XPF. Exponent 3: BHD, IQD, JOD, KWD, OMR, TND. Everything else, INR included, uses exponent 2."
EXPONENT_0 = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]
)
EXPONENT_3 = frozenset(["BHD", "IQD", "JOD", "KWD", "OMR", "TND"])

#: razorpay.md §1 (Identifiers).
PREFIXES = {"order": "order_", "payment": "pay_", "refund": "rfnd_", "event": "evt_", "dispute": "disp_",
            "settlement": "setl_", "adjustment": "adj_"}
ID_LENGTH = 14
_ID_BODY = re.compile(r"^[A-Za-z0-9]+$")

#: razorpay.md §0.7, §2: the texts of the two id errors.
ID_DOES_NOT_EXIST = "The id provided does not exist"
NOT_A_VALID_ID = "{} is not a valid id"
#: razorpay.md §2: a direct fetch of an order older than 180 days.
ORDER_TOO_OLD = "Order older than 180 days, please use reports"
ORDER_FETCH_LIMIT_S = 180 * 24 * 60 * 60
#: after-capture.md §2.1, §2.5: the refund errors (all 400).
NOT_CAPTURED = "The payment status should be captured for action to be taken"
MORE_THAN_CAPTURED = "The refund amount provided is greater than amount captured."
FULLY_REFUNDED = "The payment has been fully refunded already."
OTHER_REQUEST_SAME_KEY = "Different request with the same idempotency key has already been processed"
#: after-capture.md §3.3: the dispute action errors (400).
DEADLINE_ELAPSED = "Action not allowed as deadline to respond has elapsed"
NOT_ALLOWED_IN_STATUS = "Action not allowed when dispute is in {} status"


def exponent(currency: str) -> int:
    """How many decimals ``currency``'s smallest sub-unit has, per razorpay.md §1."""
    return 0 if currency in EXPONENT_0 else 3 if currency in EXPONENT_3 else 2


def hmac_hex(secret: str, message: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of ``message`` keyed with ``secret`` (UTF-8)."""
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def webhook_signature(webhook_secret: str, raw_body: bytes) -> str:
    """``X-Razorpay-Signature`` of a webhook body (razorpay.md §5.3)."""
    return hmac_hex(webhook_secret, raw_body)


def checkout_signature(key_secret: str, order_id: str, payment_id: str) -> str:
    """``razorpay_signature`` of Standard Checkout (razorpay.md §4): HMAC(key_secret, order_id|payment_id)."""
    return hmac_hex(key_secret, f"{order_id}|{payment_id}".encode())


def is_valid_id(kind: str, value: str) -> bool:
    """Whether ``value`` looks like a Razorpay ``kind`` id (its prefix, then alphanumerics)."""
    prefix = PREFIXES[kind]
    return value.startswith(prefix) and bool(_ID_BODY.match(value[len(prefix) :]))


def error_body(code: str, description: str, *, field: str | None = None, source: str = "NA", step: str = "NA",
               reason: str = "NA", metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Razorpay's ``{"error": {...}}`` body (razorpay.md §6)."""
    return {"error": {"code": code, "description": description, "field": field, "source": source, "step": step,
                      "reason": reason, "metadata": metadata or {}}}


class RazorpayApiError(Exception):
    """An API error answered with Razorpay's error body (validation errors by default)."""

    def __init__(self, status: int, description: str, *, code: str = "BAD_REQUEST_ERROR", field: str | None = None):
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.field = field

    def body(self) -> dict[str, Any]:
        """The JSON body Razorpay sends with this error: "For plain API validation errors, source is usually
        business, step is payment_initiation, reason is input_validation_failed" (razorpay.md §6)."""
        if self.status == 401:
            return error_body(self.code, self.description)
        return error_body(self.code, self.description, field=self.field, source="business",
                          step="payment_initiation", reason="input_validation_failed")


def collection(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Razorpay's list envelope (razorpay.md §2)."""
    return {"entity": "collection", "count": len(items), "items": items}
