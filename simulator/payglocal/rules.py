"""PayGlocal's request rules as pydantic models, its statuses, and the simulated checkout outcomes.

Status names and meanings follow payglocal.md §3 and after-capture.md §6.1. Each validator raises a
``ValueError`` with PayGlocal-style text; :func:`parse` turns the first into PayGlocal's 400 envelope.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulator.payglocal.codec import PayGlocalApiError, major_to_minor

#: The transaction state each checkout outcome leads to (``success`` on an auth-only txn: AUTHORIZED).
#: payglocal.md §3: ISSUER_DECLINE (issuing bank declined), SYSTEM_ERROR (PayGlocal-side error),
#: CONDITIONAL_DECLINE (processing error / timeout, <1 % later succeed), ABANDONED (shopper closed window /
#: timed out), CUSTOMER_CANCELLED (shopper cancelled on page), INPROGRESS (shopper on the hosted page).
OUTCOME_STATUS = {
    "success": "SENT_FOR_CAPTURE",
    "authorize_only": "AUTHORIZED",
    "decline": "ISSUER_DECLINE",
    "gateway_error": "SYSTEM_ERROR",
    "timeout": "CONDITIONAL_DECLINE",
    "close_window": "ABANDONED",
    "cancel": "CUSTOMER_CANCELLED",
    "no_response": "INPROGRESS",
}
REASONS = {
    "CREATED": ("GL-201-001", "Transaction created"),
    "INPROGRESS": ("GL-201-001", "Transaction in progress"),
    "AUTHORIZED": ("GL-201-002", "Transaction authorized"),
    "SENT_FOR_CAPTURE": ("GL-201-001", "Transaction captured"),
    "ISSUER_DECLINE": ("GL-402-001", "Declined by the issuing bank"),
    "SYSTEM_ERROR": ("GL-500-001", "System error, please retry later"),
    "CONDITIONAL_DECLINE": ("GL-402-005", "Processing error or timeout"),
    "ABANDONED": ("GL-402-010", "Customer abandoned the payment page"),
    "CUSTOMER_CANCELLED": ("GL-402-011", "Customer cancelled the payment"),
    "SENT_FOR_REFUND": ("GL-201-001", "Refund sent"),
    "REQUEST_ERROR": ("GL-400-001", "Refund request failed"),
}
#: Status-answer shapes: ``v1`` (top-level status = the call's outcome, ``data.Amount``/``Currency``;
#: payglocal.md §3) and ``v2`` (payments-v2: top-level status = the transaction state,
#: ``data.totalAmount``/``txnCurrency``; after-capture.md §6.2).
STATUS_SHAPES = ("v1", "v2")
StatusShape = Literal["v1", "v2"]
#: States a capture is accepted in; AUTHORIZED_PENDING_CAPTURE is undocumented, read by its name
#: (after-capture.md §6.1).
CAPTURABLE = frozenset({"AUTHORIZED", "AUTHORIZED_PENDING_CAPTURE"})
#: States a late authorisation can leave: "CONDITIONAL_DECLINE ... in under 1% of cases a payment still lands
#: later" (payglocal.md §0.2), and an order we marked Abandoned may still be paid (§0.2 [guess/design]).
LATE_FROM = frozenset({"CONDITIONAL_DECLINE", "ISSUER_DECLINE", "SYSTEM_ERROR", "ABANDONED", "INPROGRESS"})
#: merchantTxnId: "2026 PayDirect schema says 4-50 chars" (payglocal.md §5); the simulator takes 1-50.
MAX_TXN_ID = 50


class PaymentData(BaseModel):
    """``paymentData``: ``totalAmount`` (major units, string or number) and ``txnCurrency`` (payglocal.md §5)."""

    model_config = ConfigDict(extra="ignore")

    totalAmount: Any = None
    txnCurrency: str = Field(None, validate_default=True)

    @field_validator("txnCurrency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> str:
        if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
            raise ValueError("paymentData.txnCurrency must be an ISO 4217 code")
        return value.upper()

    def amount_minor(self) -> int:
        """``totalAmount`` in minor units of ``txnCurrency``."""
        try:
            return major_to_minor(self.totalAmount, self.txnCurrency)
        except ValueError as exc:
            raise ValueError(f"paymentData.totalAmount is invalid: {exc}") from None


def _txn_id(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TXN_ID:
        raise ValueError(f"merchantTxnId is required (1 to {MAX_TXN_ID} characters)")
    return value


class InitiateRequest(BaseModel):
    """``POST /gl/v1/payments/initiate/paycollect`` (payglocal.md §2), once decrypted."""

    model_config = ConfigDict(extra="ignore")

    merchantTxnId: str = Field(None, validate_default=True)
    merchantUniqueId: str | None = None
    paymentData: PaymentData = Field(None, validate_default=True)
    captureTxn: bool = True
    merchantCallbackURL: str | None = None

    _txn = field_validator("merchantTxnId", mode="before")(classmethod(lambda cls, value: _txn_id(value)))

    @field_validator("paymentData", mode="before")
    @classmethod
    def _data(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("paymentData is required")
        return value

    @field_validator("captureTxn", mode="before")
    @classmethod
    def _capture(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError("captureTxn must be a boolean")
        return value

    @field_validator("merchantCallbackURL", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        if not (value is None or isinstance(value, str)):
            raise ValueError("merchantCallbackURL must be a string")
        return value or None

    @model_validator(mode="after")
    def _amount(self) -> InitiateRequest:
        if self.paymentData.amount_minor() <= 0:
            raise ValueError("paymentData.totalAmount must be positive")
        return self

    @property
    def unique_id(self) -> str:
        """``merchantUniqueId``, "described as the idempotency key" (payglocal.md §0.6); the txn id without one."""
        return str(self.merchantUniqueId or self.merchantTxnId)


class CaptureRequest(BaseModel):
    """``POST /gl/v1/payments/{gid}/capture``: ``{merchantTxnId, captureType F/P, paymentData.totalAmount}``
    (payglocal.md §2); a capture needs its own new merchantTxnId (§0.6)."""

    model_config = ConfigDict(extra="ignore")

    merchantTxnId: str = Field(None, validate_default=True)
    captureType: Literal["F", "P"] = Field(None, validate_default=True)
    paymentData: dict[str, Any] = Field(default_factory=dict)

    _txn = field_validator("merchantTxnId", mode="before")(classmethod(lambda cls, value: _txn_id(value)))

    @field_validator("captureType", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        if value not in ("F", "P"):
            raise ValueError("captureType must be F or P")
        return value


class RefundRequest(BaseModel):
    """``POST /gl/v1/payments/{gid}/refund`` (after-capture.md §5.1): a new ``merchantTxnId``, an optional
    ``merchantUniqueId``, ``refundType`` ``F`` | ``P`` and, for ``P``, ``paymentData.totalAmount`` (a decimal
    string; a number is accepted too). ``txnCurrency`` / ``merchantCallbackURL`` (sent by the SDKs) are ignored."""

    model_config = ConfigDict(extra="ignore")

    merchantTxnId: str = Field(None, validate_default=True)
    merchantUniqueId: str | None = None
    refundType: Literal["F", "P"] = Field(None, validate_default=True)
    paymentData: dict[str, Any] = Field(default_factory=dict)

    _txn = field_validator("merchantTxnId", mode="before")(classmethod(lambda cls, value: _txn_id(value)))

    @field_validator("refundType", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        if value not in ("F", "P"):
            raise ValueError("refundType must be F or P")
        return value

    @field_validator("paymentData", mode="before")
    @classmethod
    def _data(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("paymentData must be an object")
        return value

    @model_validator(mode="after")
    def _amount(self) -> RefundRequest:
        if self.refundType == "P" and self.paymentData.get("totalAmount") in (None, ""):
            raise ValueError("paymentData.totalAmount is required for a partial refund")  # §5.4: 400
        return self


Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], payload: Any) -> Model:
    """``payload`` as ``model``, or PayGlocal's 400 for its first refused field."""
    if not isinstance(payload, dict):
        raise PayGlocalApiError(400, "Request payload must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        error = (first.get("ctx") or {}).get("error")
        message = str(error) if error is not None else f"{'.'.join(map(str, first['loc']))} is invalid"
        raise PayGlocalApiError(400, message) from None
