"""Pure functions from PayGlocal JSON to the port's DTOs, and exact decimal <-> minor-unit amounts.

Rules taken from docs/gateways/payglocal.md §3 and §5 and after-capture.md §6:

- The transaction state is ``data.status``. In the v1 status answer the top-level ``status`` is the
  outcome of the status *call* (``SUCCESS``, ``CREATED``); in payments-v2 it is the transaction state
  (after-capture.md §6.2). So it is read only when ``data.status`` is missing.
- Only ``SENT_FOR_CAPTURE`` means money was taken. Every status PayGlocal is known to send is in
  :data:`STATUS_MAP`; any other maps to ``RemoteStatus.UNKNOWN`` (keep checking, alert), never to failed.
- The amount is a decimal string in major units, sometimes without decimals (``"10"``): ``totalAmount``
  (payments-v2), ``Amount`` (v1, openapi) or ``amount`` (older openapi), with its currency in
  ``txnCurrency``, ``Currency`` or ``currency`` (:func:`amount_and_currency`). It is converted with
  :class:`decimal.Decimal`, never float.
- One PayGlocal transaction is one payment: ``gateway_payment_id == gateway_order_id == gid``.
- The browser callback is a form body with one field, ``x-gl-token`` (:func:`callback_form_token`).

An API response we cannot map raises :class:`gateways.errors.GatewayPermanent` (a contract problem).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

from gateways.currency import exponent  # the one ISO 4217 table
from gateways.errors import GatewayPermanent, MalformedEvent
from gateways.port import FailureKind, RefundStatus, RemoteOrder, RemotePayment, RemoteRefund, RemoteStatus

#: Every PayGlocal status of after-capture.md §6.1 -> our status and, for failures, why. Nothing seen
#: there is left to the UNKNOWN default by accident: the rows mapped to UNKNOWN are deliberate.
#:
#: after-capture.md §8.18 and payglocal.md §3 advise reading the 15 undocumented ``ExternalStatus``
#: names as "non-final, alert". Where a name says plainly what happened we map it, and stay safe:
#: nothing undocumented reads as CAPTURED (only SENT_FOR_CAPTURE credits), and FAILED is not final
#: here either (a failed or abandoned order is still checked, and paid late, until the horizon).
STATUS_MAP: Mapping[str, tuple[RemoteStatus, FailureKind | None]] = {
    # Documented (payglocal.md §3, after-capture.md §6.1).
    "CREATED": (RemoteStatus.CREATED, None),
    "INPROGRESS": (RemoteStatus.CREATED, None),
    "AUTHORIZED": (RemoteStatus.AUTHORIZED, None),
    "SENT_FOR_CAPTURE": (RemoteStatus.CAPTURED, None),
    "ABANDONED": (RemoteStatus.FAILED, FailureKind.WINDOW_CLOSED),
    "CUSTOMER_CANCELLED": (RemoteStatus.FAILED, FailureKind.WINDOW_CLOSED),
    "ISSUER_DECLINE": (RemoteStatus.FAILED, FailureKind.DECLINED),
    "GENERAL_DECLINE": (RemoteStatus.FAILED, FailureKind.DECLINED),
    "AUTHENTICATION_TIMEOUT": (RemoteStatus.FAILED, FailureKind.TIMED_OUT),
    "REQUEST_ERROR": (RemoteStatus.FAILED, FailureKind.GATEWAY_ERROR),
    "SYSTEM_ERROR": (RemoteStatus.FAILED, FailureKind.GATEWAY_ERROR),
    "CONFIG_ERROR": (RemoteStatus.FAILED, FailureKind.GATEWAY_ERROR),
    # "final*": under 1% still succeed later, so it is a timeout (the order keeps a late check).
    "CONDITIONAL_DECLINE": (RemoteStatus.FAILED, FailureKind.TIMED_OUT),
    # Refund accepted: money on its way back, never credited (§5.4).
    "SENT_FOR_REFUND": (RemoteStatus.REFUNDED, None),
    # The result of auth-reversal (§5.4): the hold was released, so we never held the money. REFUNDED
    # (fully) says so and outranks AUTHORIZED, so a stale AUTHORIZED snapshot cannot bring it back.
    "REVERSED": (RemoteStatus.REFUNDED, None),
    # Only ever the top-level outcome of a status call or an SI webhook (§6.1), never a transaction state.
    "SUCCESS": (RemoteStatus.UNKNOWN, None),
    # UNDOCUMENTED (openapi ExternalStatus names only, §6.1); each mapping says why it is safe.
    # Still in flight: the shopper is being stepped up (3DS) or the bank has not answered.
    "STEP_UP": (RemoteStatus.CREATED, None),
    "PENDING": (RemoteStatus.CREATED, None),
    # The money is held but not taken: AUTHORIZED never credits, and capturing again is harmless
    # (the capture's merchantTxnId is derived from the gid, so PayGlocal sees one capture).
    "AUTHORIZED_PENDING_CAPTURE": (RemoteStatus.AUTHORIZED, None),
    "CAPTURE_STARTED": (RemoteStatus.AUTHORIZED, None),
    # A reversal under way: as REVERSED, money we will not hold.
    "AUTH_REVERSAL_STARTED": (RemoteStatus.REFUNDED, None),
    # A refund under way: the money is going back, so it must never be credited.
    "REFUND_STARTED": (RemoteStatus.REFUNDED, None),
    # The payment window ran out or the shopper left before paying: no money moved.
    "EXPIRED": (RemoteStatus.FAILED, FailureKind.WINDOW_CLOSED),
    "PRE_PAYNOW_ABANDONED": (RemoteStatus.FAILED, FailureKind.WINDOW_CLOSED),
    # Refused before any money was taken (the shopper failing 3DS is AUTHENTICATION_FAILED).
    "SYSTEM_DECLINED": (RemoteStatus.FAILED, FailureKind.DECLINED),
    "MARKED_AS_FRAUD": (RemoteStatus.FAILED, FailureKind.DECLINED),
    "ALTPAY_DECLINE": (RemoteStatus.FAILED, FailureKind.DECLINED),
    "AUTHENTICATION_FAILED": (RemoteStatus.FAILED, FailureKind.DECLINED),
    # Like CONFIG_ERROR: PayGlocal's rules for our MID are misconfigured.
    "RULE_CONFIG_ERROR": (RemoteStatus.FAILED, FailureKind.GATEWAY_ERROR),
    # Whether money comes back to the shopper is unknown (a voided refund may mean we keep it), and so
    # is the meaning of NOT_FOUND inside a successful answer: keep checking and alert, never close.
    "REFUND_VOIDED": (RemoteStatus.UNKNOWN, None),
    "NOT_FOUND": (RemoteStatus.UNKNOWN, None),
    # Not in the enum; seen elsewhere (§6.1). FAILURE is an SI webhook outcome and INITIATED a
    # refundStatus, neither a transaction state: unknown.
    "FAILURE": (RemoteStatus.UNKNOWN, None),
    "INITIATED": (RemoteStatus.UNKNOWN, None),
    # Only on PayGlocal's "coming soon" lifecycle page (§6.1): read by their names, safely as above.
    "FAILED": (RemoteStatus.FAILED, FailureKind.DECLINED),
    "CANCELLED": (RemoteStatus.FAILED, FailureKind.WINDOW_CLOSED),
    "REFUNDED": (RemoteStatus.REFUNDED, None),
    "REFUND_INITIATED": (RemoteStatus.REFUNDED, None),
    # A chargeback: whether we keep the money is open (no dispute API, §7): a person must look.
    "DISPUTED": (RemoteStatus.UNKNOWN, None),
}

#: A refund's status (after-capture.md §5.2–§5.4, §6.1) -> ours. ``SENT_FOR_REFUND`` is the strongest
#: confirmation PayGlocal gives ("final", "successful"; no API returns ``REFUNDED``): PROCESSED. ``INITIATED`` is
#: shape 4's ``refundStatus``, ``REFUND_STARTED`` an undocumented enum name: both in flight. The two errors are
#: documented as final refund outcomes: not refunded. Anything else (``SUCCESS``, ``REFUND_VOIDED``...) is UNKNOWN.
REFUND_STATUS_MAP: Mapping[str, RefundStatus] = {
    "SENT_FOR_REFUND": RefundStatus.PROCESSED,
    "INITIATED": RefundStatus.PENDING,
    "REFUND_STARTED": RefundStatus.PENDING,
    "REQUEST_ERROR": RefundStatus.FAILED,
    "SYSTEM_ERROR": RefundStatus.FAILED,
}

#: Wire statuses of an auth reversal: the whole hold is released (after-capture.md §5.4).
_REVERSALS = frozenset({"REVERSED", "AUTH_REVERSAL_STARTED"})

#: The browser callback's one form field.
CALLBACK_FIELD = "x-gl-token"

#: merchantTxnId length limit (the 2026 PayDirect schema says 4-50 characters).
MAX_TXN_ID_LENGTH = 50

_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def amount_to_minor(amount: object, currency: str) -> int:
    """An amount in major units (``"10.50"``, ``"10"``, ``10.5``) as exact integer minor units.

    Strings must be plain non-negative decimals; a JSON number is read through its shortest repr
    (``10.1`` -> ``"10.1"``), never through binary float arithmetic.

    Raises:
        GatewayPermanent: not a plain non-negative decimal, or more decimals than ``currency`` has.
    """
    currency = _currency(currency)
    if isinstance(amount, bool):
        raise GatewayPermanent(f"payglocal amount must be a decimal, got {amount!r}")
    if isinstance(amount, float):
        text = repr(amount)
    elif isinstance(amount, (int, Decimal)):
        text = str(amount)
    elif isinstance(amount, str):
        text = amount.strip()
    else:
        raise GatewayPermanent(f"payglocal amount must be a decimal string, got {type(amount).__name__}")
    if not _DECIMAL.match(text):
        raise GatewayPermanent(f"payglocal amount {amount!r} is not a plain non-negative decimal")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern already excludes this
        raise GatewayPermanent(f"payglocal amount {amount!r} is not a decimal") from None
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise GatewayPermanent(
            f"payglocal amount {amount!r} has more decimals than {currency} allows ({exponent(currency)})"
        )
    return int(scaled)


def minor_to_amount(amount_minor: int, currency: str) -> str:
    """Integer minor units as PayGlocal's decimal string: ``50000 INR -> "500.00"``, ``500 JPY -> "500"``."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"amount_minor must be an int in minor units, got {type(amount_minor).__name__}")
    if amount_minor < 0:
        raise ValueError("amount_minor must not be negative")
    places = exponent(_currency(currency))
    if places == 0:
        return str(amount_minor)
    whole, fraction = divmod(amount_minor, 10**places)
    return f"{whole}.{fraction:0{places}d}"


def capture_txn_id(gid: str) -> str:
    """A new, deterministic ``merchantTxnId`` for capturing ``gid`` (alphanumeric, <= 50 characters)."""
    base = re.sub(r"[^A-Za-z0-9]", "", gid)
    if len(base) + 3 > MAX_TXN_ID_LENGTH:
        base = hashlib.sha256(gid.encode("utf-8")).hexdigest()[:40]
    return f"{base}cap"


def transaction_status(envelope: Mapping[str, Any]) -> str:
    """The transaction state: ``data.status``, or the top-level ``status`` when ``data.status`` is missing."""
    data = envelope.get("data")
    if isinstance(data, Mapping):
        inner = data.get("status")
        if isinstance(inner, str) and inner.strip():
            return inner.strip()
    outer = envelope.get("status")
    return outer.strip() if isinstance(outer, str) else ""


def payment_from_status(envelope: Mapping[str, Any], *, gid: str | None = None) -> RemotePayment:
    """A status-enquiry response as the transaction's single :class:`RemotePayment`.

    Args:
        envelope: the parsed JSON of ``GET /gl/v1/payments/{id}/status``.
        gid: the gid we asked about (our stored id); by default the response's top-level ``gid``.

    Raises:
        GatewayPermanent: no ``data`` object, no gid, or a missing or malformed amount or currency.
    """
    data = _data(envelope)
    payment_gid = gid or _text(envelope.get("gid")) or _text(data.get("gid"))
    if payment_gid is None:
        raise GatewayPermanent("payglocal status response names no gid")
    wire_status = transaction_status(envelope)
    status, failure_kind = STATUS_MAP.get(wire_status.upper(), (RemoteStatus.UNKNOWN, None))
    amount_minor, currency = amount_and_currency(data)
    refunded = refunded_minor(data, wire_status, amount_minor, currency) if status is RemoteStatus.REFUNDED else 0
    failure_reason = None
    if status is RemoteStatus.FAILED:
        parts = (wire_status, _text(data.get("reasonCode")), _text(data.get("detailedMessage")))
        failure_reason = ": ".join(part for part in parts if part)
    return RemotePayment(
        gateway_payment_id=payment_gid,
        gateway_order_id=payment_gid,
        status=status,
        amount_minor=amount_minor,
        currency=currency,
        amount_refunded_minor=refunded,
        failure_kind=failure_kind,
        failure_reason=failure_reason,
        wire_status=wire_status,
    )


def amount_and_currency(data: Mapping[str, Any]) -> tuple[int, str]:
    """The transaction's amount in minor units and its currency, from any status answer's ``data``.

    The amount is the first present of ``totalAmount`` (payments-v2), ``Amount`` (v1, openapi) and
    ``amount`` (older openapi); the currency the first of ``txnCurrency``, ``Currency``, ``currency``
    (after-capture.md §6.2). ``txnCurrency`` comes first: openapi calls it the original payment's
    currency and ``Currency`` a settlement or display one. Which of the two ``Amount`` is in when they
    differ is UNDOCUMENTED (§6.2); its card example (``Amount "100"``, ``txnCurrency CAD``,
    ``Currency INR``) only makes sense in ``txnCurrency``, the currency we asked for. Were it a
    converted settlement amount, it would disagree with our order (review, no credit) rather than
    credit money we do not hold.

    Raises:
        GatewayPermanent: no amount or currency, or a malformed one.
    """
    currency = _currency(_first(data, "txnCurrency", "Currency", "currency"))
    return amount_to_minor(_first(data, "totalAmount", "Amount", "amount"), currency), currency


def refunded_minor(data: Mapping[str, Any], wire_status: str, amount_minor: int, currency: str) -> int:
    """How much of a REFUNDED transaction went back: all of it, unless the answer names a refund amount.

    The status call documents no refunded amount (after-capture.md §5.3), so a refund counts as full
    (no money kept). A reversal releases the whole hold (§5.4): always full. A ``refundAmount`` that
    is unreadable, in another currency or above the amount is ignored (full, never credited).
    """
    if wire_status.upper() in _REVERSALS or data.get("refundAmount") in (None, ""):
        return amount_minor
    if (_text(data.get("refundCurrency")) or currency).upper() != currency:
        return amount_minor
    try:
        refunded = amount_to_minor(data["refundAmount"], currency)
    except GatewayPermanent:
        return amount_minor
    return min(refunded, amount_minor)


def refund_wire_status(envelope: Mapping[str, Any]) -> str:
    """A refund's state: shape 4's ``data.refundStatus``, else as :func:`transaction_status` reads it."""
    data = envelope.get("data")
    inner = data.get("refundStatus") if isinstance(data, Mapping) else None
    return inner.strip() if isinstance(inner, str) and inner.strip() else transaction_status(envelope)


def refund_from_response(envelope: Mapping[str, Any], *, gateway_payment_id: str, amount_minor: int,
                         currency: str, idempotency_key: str) -> RemoteRefund:
    """The refund API's answer, in any of its four shapes (after-capture.md §5.2), as a :class:`RemoteRefund`.

    - id: the top-level ``gid`` (shapes 1–3: the refund's own gid), else ``data.refundId`` or ``data.gid``
      (shape 4). An answer naming none, or only the original gid, gets our key: the status call takes the
      ``merchantUniqueId`` sent with a refund (§5.3, old docs), so the key still finds it.
    - amount: ``data.refundAmount`` (shapes 1, 2, 4) or ``data.Amount`` (3), in ``refundCurrency`` /
      ``Currency`` / ``currency``; when absent or unreadable, the amount and currency we asked for (the
      refund was accepted: refusing its answer would hide a refund that happened).
    - status: :func:`refund_wire_status` through :data:`REFUND_STATUS_MAP`.

    Raises:
        GatewayPermanent: the answer is not a JSON object.
    """
    if not isinstance(envelope, Mapping):
        raise GatewayPermanent(f"payglocal refund response must be a JSON object, got {type(envelope).__name__}")
    inner = envelope.get("data")
    data: Mapping[str, Any] = inner if isinstance(inner, Mapping) else {}
    named = _text(envelope.get("gid")) or _text(data.get("refundId")) or _text(data.get("gid"))
    amount, money = _refund_amount(data, amount_minor, currency.upper())
    refund_id = _own_id(named, gateway_payment_id, idempotency_key) or idempotency_key
    return _refund(envelope, refund_id, gateway_payment_id, amount, money, idempotency_key)


def _own_id(named: str | None, gateway_payment_id: str, idempotency_key: str | None) -> str | None:
    """The refund's id: the gid an answer names, unless it is the original's; then our key (§5.3)."""
    return named if named and named != gateway_payment_id else idempotency_key


def _refund(envelope: Mapping[str, Any], refund_id: str, gateway_payment_id: str, amount: int, money: str,
            idempotency_key: str | None) -> RemoteRefund:
    wire_status = refund_wire_status(envelope)
    return RemoteRefund(gateway_refund_id=refund_id, gateway_payment_id=gateway_payment_id, amount_minor=amount,
                        currency=money, status=REFUND_STATUS_MAP.get(wire_status.upper(), RefundStatus.UNKNOWN),
                        wire_status=wire_status, idempotency_key=idempotency_key)


def refund_from_status(envelope: Mapping[str, Any], *, gateway_payment_id: str, refund_id: str | None = None,
                       idempotency_key: str | None = None) -> RemoteRefund:
    """A status enquiry of a refund (by its gid, or by our key) as a :class:`RemoteRefund`.

    ``refund_id`` is the id we asked by; without it, the answer's gid names the refund unless it is the
    original's, and then ``idempotency_key`` does (as in :func:`refund_from_response`). What the status of a
    refund shows is UNDOCUMENTED (after-capture.md §5.3): its amount is read from ``data.refundAmount`` when
    present, else as any status answer's (:func:`amount_and_currency`).

    Raises:
        GatewayPermanent: no ``data`` object, no id, or no readable amount and currency.
    """
    data = _data(envelope)
    if refund_id is None:
        refund_id = _own_id(_text(envelope.get("gid")) or _text(data.get("gid")), gateway_payment_id, idempotency_key)
    if not refund_id:
        raise GatewayPermanent("payglocal refund status names no refund id")
    if data.get("refundAmount") not in (None, ""):
        money = _currency(_text(data.get("refundCurrency")) or _first(data, "txnCurrency", "Currency", "currency"))
        amount = amount_to_minor(data["refundAmount"], money)
    else:
        amount, money = amount_and_currency(data)
    return _refund(envelope, refund_id, gateway_payment_id, amount, money, idempotency_key)


def names_refund(envelope: Mapping[str, Any], idempotency_key: str) -> bool:
    """Whether a status answer is about the refund we sent with ``idempotency_key`` (its merchantTxnId or
    merchantUniqueId), not about the original payment (whose merchantTxnId is our receipt)."""
    data = envelope.get("data") if isinstance(envelope, Mapping) else None
    if not isinstance(data, Mapping):
        return False
    return idempotency_key in (_text(data.get("merchantTxnId")), _text(data.get("merchantUniqueId")))


def _refund_amount(data: Mapping[str, Any], amount_minor: int, currency: str) -> tuple[int, str]:
    """A refund answer's amount and currency, or the requested ones when it names none we can read."""
    value = next((data[key] for key in ("refundAmount", "Amount") if data.get(key) not in (None, "")), None)
    if value is None:
        return amount_minor, currency
    named = next((data[key] for key in ("refundCurrency", "Currency", "currency") if _text(data.get(key))), currency)
    try:
        money = _currency(named)
        return amount_to_minor(value, money), money
    except GatewayPermanent:
        return amount_minor, currency


def order_from_status(envelope: Mapping[str, Any], *, gid: str | None = None) -> RemoteOrder:
    """A status-enquiry response as a :class:`RemoteOrder` holding its one payment."""
    payment = payment_from_status(envelope, gid=gid)
    return RemoteOrder(
        gateway_order_id=payment.gateway_payment_id,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        receipt=_text(_data(envelope).get("merchantTxnId")),
        wire_status=payment.wire_status,
        payments=(payment,),
    )


def initiated_order(
    envelope: Mapping[str, Any], *, receipt: str, amount_minor: int, currency: str
) -> RemoteOrder:
    """The ``initiate/paycollect`` response as a new :class:`RemoteOrder` with its checkout link.

    Raises:
        GatewayPermanent: no ``gid`` or no ``data.redirectUrl``.
    """
    gid = _text(envelope.get("gid"))
    data = envelope.get("data")
    redirect_url = _text(data.get("redirectUrl")) if isinstance(data, Mapping) else None
    if gid is None or redirect_url is None:
        raise GatewayPermanent("payglocal initiate response lacks gid or data.redirectUrl")
    return RemoteOrder(
        gateway_order_id=gid,
        amount_minor=amount_minor,
        currency=currency.upper(),
        receipt=receipt,
        wire_status=_text(envelope.get("status")) or "",
        payments=(),
        checkout={"redirect_url": redirect_url, "gid": gid},
    )


def callback_form_token(raw_body: bytes) -> str:
    """The one ``x-gl-token`` of the browser callback's form-encoded body. Raises MalformedEvent."""
    if not raw_body.strip():
        raise MalformedEvent("callback body is empty; expected a form-encoded x-gl-token")
    try:
        fields = parse_qs(raw_body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedEvent(f"callback body is not a form-encoded x-gl-token: {exc}") from None
    values = fields.get(CALLBACK_FIELD, [])
    if len(values) != 1 or not values[0]:
        raise MalformedEvent(f"callback form must carry exactly one non-empty {CALLBACK_FIELD} field")
    return values[0]


# Helpers -------------------------------------------------------------------------------


def _data(envelope: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(envelope, Mapping):
        raise GatewayPermanent(f"payglocal response must be a JSON object, got {type(envelope).__name__}")
    data = envelope.get("data")
    if not isinstance(data, Mapping):
        raise GatewayPermanent("payglocal status response has no 'data' object")
    return data


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = data.get(key)
        if value is not None and value != "":
            return value
    raise GatewayPermanent(f"payglocal status response lacks data.{' / data.'.join(keys)}")


def _currency(value: object) -> str:
    if not isinstance(value, str) or not _CURRENCY.match(value.strip().upper()):
        raise GatewayPermanent(f"payglocal currency must be an ISO 4217 code, got {value!r}")
    return value.strip().upper()


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
