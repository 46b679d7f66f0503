"""PayGlocal's request validation, status reasons and the simulated checkout outcomes."""

from __future__ import annotations

import time
from typing import Any

from gateways.errors import GatewayPermanent
from gateways.payglocal.mapping import amount_to_minor
from gateways.simulator.payglocal_auth import PayGlocalApiError

#: The transaction state each checkout outcome leads to (``success`` on an auth-only txn: AUTHORIZED).
OUTCOME_STATUS = {
    "success": "SENT_FOR_CAPTURE",
    "authorize_only": "AUTHORIZED",
    "decline": "ISSUER_DECLINE",
    "gateway_error": "SYSTEM_ERROR",
    "timeout": "CONDITIONAL_DECLINE",
    "close_window": "ABANDONED",
}
REASONS = {
    "CREATED": ("GL-201-001", "Transaction created"),
    "AUTHORIZED": ("GL-201-002", "Transaction authorized"),
    "SENT_FOR_CAPTURE": ("GL-201-001", "Transaction captured"),
    "ISSUER_DECLINE": ("GL-402-001", "Declined by the issuing bank"),
    "SYSTEM_ERROR": ("GL-500-001", "System error, please retry later"),
    "CONDITIONAL_DECLINE": ("GL-402-005", "Processing error or timeout"),
    "ABANDONED": ("GL-402-010", "Customer abandoned the payment page"),
    "SENT_FOR_REFUND": ("GL-201-001", "Refund sent"),
}
#: Status-answer shapes: ``v1`` (top-level status = the call's outcome, ``data.Amount``/``Currency``;
#: docs/gateways/payglocal.md §3) and ``v2`` (payments-v2: top-level status = the transaction state,
#: ``data.totalAmount``/``txnCurrency``; after-capture.md §6.2).
STATUS_SHAPES = ("v1", "v2")
#: States a capture is accepted in; AUTHORIZED_PENDING_CAPTURE is undocumented, read by its name (our
#: adapter maps it to authorized: after-capture.md §6.1).
CAPTURABLE = frozenset({"AUTHORIZED", "AUTHORIZED_PENDING_CAPTURE"})
#: States a late authorisation can leave (the bank reports success after all).
LATE_FROM = frozenset({"CONDITIONAL_DECLINE", "ISSUER_DECLINE", "SYSTEM_ERROR", "ABANDONED"})


def timestamp(epoch_s: float | None = None) -> str:
    """PayGlocal's ``DD/MM/YYYY HH:MM:SS`` (local time), now or at ``epoch_s``."""
    return time.strftime("%d/%m/%Y %H:%M:%S", time.localtime(epoch_s))


def minor_or_400(value: Any, currency: str) -> int:
    """An amount in major units as minor units, or PayGlocal's 400."""
    try:
        return amount_to_minor(value, currency)
    except GatewayPermanent as exc:
        raise PayGlocalApiError(400, f"paymentData.totalAmount is invalid: {exc.args[0]}") from None


def parse_initiate(payload: Any) -> tuple[str, str, int, str, bool, str | None]:
    """Validate a PayCollect payload: ``(merchantTxnId, merchantUniqueId, amount_minor, currency, captureTxn, url)``."""
    if not isinstance(payload, dict):
        raise PayGlocalApiError(400, "Request payload must be a JSON object")
    txn_id = payload.get("merchantTxnId")
    if not isinstance(txn_id, str) or not 1 <= len(txn_id) <= 50:
        raise PayGlocalApiError(400, "merchantTxnId is required (1 to 50 characters)")
    unique_id = payload.get("merchantUniqueId") or txn_id
    data = payload.get("paymentData")
    if not isinstance(data, dict):
        raise PayGlocalApiError(400, "paymentData is required")
    currency = data.get("txnCurrency")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise PayGlocalApiError(400, "paymentData.txnCurrency must be an ISO 4217 code")
    amount = minor_or_400(data.get("totalAmount"), currency.upper())
    if amount <= 0:
        raise PayGlocalApiError(400, "paymentData.totalAmount must be positive")
    capture = payload.get("captureTxn", True)
    url = payload.get("merchantCallbackURL")
    if not isinstance(capture, bool) or not (url is None or isinstance(url, str)):
        raise PayGlocalApiError(400, "captureTxn must be a boolean and merchantCallbackURL a string")
    return txn_id, str(unique_id), amount, currency.upper(), capture, url or None
