"""Razorpay's request rules as pydantic models, and what a failed checkout looks like.

Messages follow Razorpay's documented wording where it is known (razorpay.md §1, §2, §3.4, §6;
after-capture.md §1.1-1.2). Each validator raises :class:`WireError` with Razorpay's text and field;
:func:`parse` turns the first one into the 400 Razorpay answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulator.razorpay.codec import RazorpayApiError, exponent

_CURRENCY = re.compile(r"^[A-Z]{3}$")

#: The Dashboard's default and maximum capture window, 3 days in minutes (after-capture.md §1.2): used for
#: orders that carry no ``capture_options``.
DASHBOARD_EXPIRY_MINUTES = 3 * 24 * 60
#: ``automatic_expiry_period`` may not be shorter than 12 minutes (after-capture.md §1.1).
MIN_AUTOMATIC_EXPIRY_MINUTES = 12


class WireError(ValueError):
    """A request field Razorpay refuses, with its documented text."""

    def __init__(self, description: str, field: str | None):
        super().__init__(description)
        self.field = field


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _amount(value: Any) -> int:
    """razorpay.md §1: "Amounts must be integers ("The amount must be an integer")"."""
    if value in (None, ""):
        raise WireError("The amount field is required.", "amount")
    if not _is_int(value):
        raise WireError("The amount must be an integer.", "amount")
    return int(value)


def check_minimum(amount: int, currency: str) -> None:
    """razorpay.md §1: at least one major unit ("The amount must be at least INR 1.00"); exponent-3 amounts
    end in 0."""
    places = exponent(currency)
    if amount < 10**places:
        raise WireError(f"The amount must be at least {currency} {1:.{places}f}", "amount")
    if places == 3 and amount % 10:
        raise WireError(f"The amount for {currency} must end in 0.", "amount")


def _receipt(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or len(value) > 40):
        raise WireError("The receipt may not be greater than 40 characters.", "receipt")
    return value


def _notes(value: Any) -> Any:
    """razorpay.md §1: at most 15 pairs of 256 characters; empty notes are serialised as ``[]``."""
    if value in (None, [], {}):
        return []
    if not isinstance(value, dict):
        raise WireError("The notes field must be an object.", "notes")
    if len(value) > 15:
        raise WireError("Number of notes must not exceed 15.", "notes")
    if any(not isinstance(v, (str, int, float)) or len(str(v)) > 256 for v in value.values()):
        raise WireError("Each note must be a string of at most 256 characters.", "notes")
    return value


class CaptureOptions(BaseModel):
    """``payment.capture_options`` (razorpay.md §3.4; after-capture.md §1.1)."""

    automatic_expiry_period: int | None = None
    manual_expiry_period: int | None = None
    refund_speed: str | None = None


class PaymentSettings(BaseModel):
    """``payment`` on order create: the per-order capture settings (razorpay.md §3.4)."""

    capture: Literal["automatic", "manual"]
    capture_options: CaptureOptions = Field(default_factory=CaptureOptions)

    @field_validator("capture", mode="before")
    @classmethod
    def _capture(cls, value: Any) -> Any:
        if value not in ("automatic", "manual"):
            raise WireError("The payment.capture field must be automatic or manual.", "payment.capture")
        return value

    @field_validator("capture_options", mode="before")
    @classmethod
    def _options(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {}


class CaptureWindows(BaseModel):
    """A (automatic, manual) window pair in minutes, both counted from the payment's creation
    (after-capture.md §1.2): authorised within A -> captured; before M -> stays authorized; after M -> refunded."""

    automatic: int | None  #: None on manual-capture orders
    manual: int

    @classmethod
    def of(cls, settings: PaymentSettings | None) -> CaptureWindows:
        """The windows an order's settings give (the Dashboard's 3 days when it sets none)."""
        options = settings.capture_options if settings else CaptureOptions()
        manual = settings is not None and settings.capture == "manual"
        automatic = options.automatic_expiry_period
        if automatic is None and not manual:
            automatic = DASHBOARD_EXPIRY_MINUTES
        if automatic is not None and (not _is_int(automatic) or automatic < MIN_AUTOMATIC_EXPIRY_MINUTES):
            raise WireError("The automatic expiry period must be at least 12 minutes.", "payment.capture_options")
        limit = options.manual_expiry_period
        if limit is None:
            limit = DASHBOARD_EXPIRY_MINUTES if automatic is None else max(automatic, DASHBOARD_EXPIRY_MINUTES)
        if not _is_int(limit) or (automatic is not None and limit < automatic):
            raise WireError("The manual expiry period must be at least the automatic expiry period.",
                            "payment.capture_options")
        return cls(automatic=None if manual else automatic, manual=limit)


class OrderRequest(BaseModel):
    """``POST /v1/orders`` (razorpay.md §2)."""

    model_config = ConfigDict(extra="ignore")

    currency: str = Field(None, validate_default=True)
    amount: int = Field(None, validate_default=True)
    receipt: str | None = None
    notes: dict[str, Any] | list[Any] = Field(default_factory=list)
    payment: PaymentSettings | None = None
    payment_capture: bool | None = None
    #: razorpay.md §2: with ``unique_receipt: true`` a retried create with the same receipt returns the same
    #: order (the S2S docs; the exact behaviour is unconfirmed). Without it every create is a new order.
    unique_receipt: bool = False

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> Any:
        if value in (None, ""):
            raise WireError("The currency field is required.", "currency")
        if not isinstance(value, str) or not _CURRENCY.match(value):
            raise WireError("The currency is invalid.", "currency")
        return value

    _amount = field_validator("amount", mode="before")(classmethod(lambda cls, value: _amount(value)))

    _receipt = field_validator("receipt", mode="before")(classmethod(lambda cls, value: _receipt(value)))
    _notes = field_validator("notes", mode="before")(classmethod(lambda cls, value: _notes(value)))

    @field_validator("payment_capture", mode="before")
    @classmethod
    def _payment_capture(cls, value: Any) -> Any:
        """The older ``payment_capture`` (0/1 or boolean), "being deprecated" (razorpay.md §2)."""
        if value is None:
            return None
        if value not in (0, 1, True, False, "0", "1"):
            raise WireError("The payment capture field is invalid.", "payment_capture")
        return value in (1, True, "1")

    @field_validator("unique_receipt", mode="before")
    @classmethod
    def _unique(cls, value: Any) -> Any:
        return bool(value)

    @model_validator(mode="after")
    def _rules(self) -> OrderRequest:
        check_minimum(self.amount, self.currency)
        self.windows()
        return self

    @property
    def capture(self) -> str | None:
        """``automatic``, ``manual`` or None (the account's default)."""
        if self.payment is not None:
            return self.payment.capture
        if self.payment_capture is not None:
            return "automatic" if self.payment_capture else "manual"
        return None

    def windows(self) -> CaptureWindows:
        """The order's capture windows (after-capture.md §1.2)."""
        settings = self.payment or (PaymentSettings(capture=self.capture) if self.capture else None)  # type: ignore[arg-type]
        return CaptureWindows.of(settings)


class CaptureRequest(BaseModel):
    """``POST /v1/payments/{id}/capture`` body ``{"amount": <int>, "currency": "INR"}`` (razorpay.md §3.1)."""

    amount: int = Field(None, validate_default=True)
    currency: str | None = None

    _amount = field_validator("amount", mode="before")(classmethod(lambda cls, value: _amount(value)))


#: after-capture.md §2.1: ``X-Refund-Idempotency`` is "≥10 chars of ``[A-Za-z0-9_-]``".
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{10,}$")


class RefundRequest(BaseModel):
    """``POST /v1/payments/{id}/refund`` (after-capture.md §2.1): ``amount`` in sub-units (omitted: all that is
    left), ``speed`` ``normal`` (default) | ``optimum``, ``notes`` (≤15), ``receipt``."""

    model_config = ConfigDict(extra="ignore")

    amount: int | None = None
    speed: Literal["normal", "optimum"] = "normal"
    notes: dict[str, Any] | list[Any] = Field(default_factory=list)
    receipt: str | None = None

    _receipt = field_validator("receipt", mode="before")(classmethod(lambda cls, value: _receipt(value)))
    _notes = field_validator("notes", mode="before")(classmethod(lambda cls, value: _notes(value)))

    @field_validator("amount", mode="before")
    @classmethod
    def _refund_amount(cls, value: Any) -> Any:
        return None if value is None else _amount(value)

    @field_validator("speed", mode="before")
    @classmethod
    def _speed(cls, value: Any) -> Any:
        if value is None:
            return "normal"
        if value not in ("normal", "optimum"):
            raise WireError("The selected speed is invalid.", "speed")
        return value


#: after-capture.md §3.1: a dispute's phases and statuses; ``closed`` is for fraud only.
DISPUTE_PHASES = ("fraud", "retrieval", "chargeback", "pre_arbitration", "arbitration")
#: The moves ``Simulator.move_dispute`` makes, each sending ``payment.dispute.<move>`` (after-capture.md §3.2).
DISPUTE_MOVES = ("under_review", "action_required", "won", "lost", "closed")
#: "pre_arbitration/arbitration (re-challenges of a won case)" (after-capture.md §3.1).
REOPENING_PHASES = ("pre_arbitration", "arbitration")
#: Days to respond: "chargeback T+3 business days, pre-arbitration T+2, arbitration T+1" (after-capture.md §3.4);
#: how ``respond_by`` maps to T+N is UNDOCUMENTED, so the simulator counts calendar days (3 for the others).
RESPOND_DAYS = {"fraud": 3, "retrieval": 3, "chargeback": 3, "pre_arbitration": 2, "arbitration": 1}


class ListParams(BaseModel):
    """``count`` (1..100, default 10), ``skip``, ``from``, ``to`` of a list call (razorpay.md §2)."""

    count: int = 10
    skip: int = 0
    from_: int = Field(0, alias="from")
    to: int = 2**62

    @field_validator("count", "skip", "from_", "to", mode="before")
    @classmethod
    def _integer(cls, value: Any, info: Any) -> int:
        name = "from" if info.field_name == "from_" else info.field_name
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise WireError(f"The {name} must be an integer.", name) from None
        if number < 0:
            raise WireError(f"The {name} must be at least 0.", name)
        if name == "count" and number < 1:
            raise WireError("The count must be at least 1.", "count")
        if name == "count" and number > 100:
            raise WireError("The count may not be greater than 100.", "count")
        return number


#: ``GET /v1/settlements/recon/combined``: the default ``count`` is UNDOCUMENTED (after-capture.md §4.2); ours.
RECON_DEFAULT_COUNT = 100
RECON_MAX_COUNT = 1000
_DIGITS = re.compile(r"^[0-9]+$")


class ReconParams(BaseModel):
    """``year`` and ``month`` (mandatory), ``day``, ``count`` (1..1000), ``skip`` of the recon call, with the
    documented texts (after-capture.md §4.2): "The year must be 4 digits", "The month is not a valid month",
    "The day must be between 1 and 2 digits", "The count must be at least 1". The other texts are ours."""

    model_config = ConfigDict(extra="ignore")

    year: int = Field(None, validate_default=True)
    month: int = Field(None, validate_default=True)
    day: int | None = None
    count: int = RECON_DEFAULT_COUNT
    skip: int = 0

    @field_validator("year", mode="before")
    @classmethod
    def _year(cls, value: Any) -> int:
        if value in (None, ""):
            raise WireError("The year field is required.", "year")
        if not isinstance(value, str | int) or isinstance(value, bool) or not re.fullmatch(r"[0-9]{4}", str(value)):
            raise WireError("The year must be 4 digits", "year")
        return int(value)

    @field_validator("month", mode="before")
    @classmethod
    def _month(cls, value: Any) -> int:
        if value in (None, ""):
            raise WireError("The month field is required.", "month")
        text = str(value)
        if not re.fullmatch(r"[0-9]{1,2}", text) or not 1 <= int(text) <= 12:
            raise WireError("The month is not a valid month", "month")
        return int(text)

    @field_validator("day", mode="before")
    @classmethod
    def _day(cls, value: Any) -> int | None:
        if value is None:
            return None
        if not re.fullmatch(r"[0-9]{1,2}", str(value)):
            raise WireError("The day must be between 1 and 2 digits", "day")
        return int(str(value))

    @field_validator("count", "skip", mode="before")
    @classmethod
    def _integer(cls, value: Any, info: Any) -> int:
        name = info.field_name
        if not _DIGITS.match(str(value).lstrip("-")) or isinstance(value, bool):
            raise WireError(f"The {name} must be an integer.", name)
        number = int(str(value))
        if name == "count" and number < 1:
            raise WireError("The count must be at least 1", "count")
        if name == "count" and number > RECON_MAX_COUNT:
            raise WireError(f"The count may not be greater than {RECON_MAX_COUNT}", "count")
        if number < 0:
            raise WireError(f"The {name} must be at least 0", name)
        return number

    @model_validator(mode="after")
    def _calendar_day(self) -> ReconParams:
        if self.day is not None:
            try:
                date(self.year, self.month, self.day)
            except ValueError:
                raise WireError("The day is not a valid day", "day") from None
        return self

    def period(self) -> tuple[date, date]:
        """The first day asked for and the day after the last one."""
        if self.day is not None:
            first = date(self.year, self.month, self.day)
            return first, first + timedelta(days=1)
        first = date(self.year, self.month, 1)
        return first, date(self.year + self.month // 12, self.month % 12 + 1, 1)


class PaymentFailure(BaseModel):
    """The error fields of a failed payment (razorpay.md §3.3)."""

    error_code: str
    error_description: str
    error_source: str
    error_step: str
    error_reason: str


#: The error fields of a failed payment, per failing checkout outcome (razorpay.md §3.3, §5.2 samples).
FAILURES: dict[str, PaymentFailure] = {
    "decline": PaymentFailure(error_code="BAD_REQUEST_ERROR", error_source="bank",
                              error_description="Your payment has been declined by the bank",
                              error_step="payment_authorization", error_reason="payment_failed"),
    "gateway_error": PaymentFailure(
        error_code="GATEWAY_ERROR", error_source="gateway", error_step="payment_authorization",
        error_description="Payment was unsuccessful due to a temporary issue. If amount got deducted, it will be "
                          "refunded within 5-7 working days.", error_reason="payment_failed"),
    # razorpay.md §3.4: no bank response -> after 10 minutes the payment is marked failed (timeout).
    "timeout": PaymentFailure(error_code="BAD_REQUEST_ERROR", error_description="Payment was not completed on time.",
                              error_source="internal", error_step="payment_authorization",
                              error_reason="payment_timed_out"),
    # razorpay.md §3.3: error_reason payment_cancelled, error_source customer: the shopper closed the checkout.
    "cancel": PaymentFailure(error_code="BAD_REQUEST_ERROR", error_description="Payment processing cancelled by user",
                             error_source="customer", error_step="payment_authentication",
                             error_reason="payment_cancelled"),
}

Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], data: Any) -> Model:
    """``data`` as ``model``, or the 400 Razorpay answers for its first refused field."""
    if isinstance(data, Mapping) and not isinstance(data, dict):
        data = dict(data)
    if not isinstance(data, dict):
        raise RazorpayApiError(400, "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        error = (first.get("ctx") or {}).get("error")
        location = ".".join(str(part) for part in first["loc"]) or None
        if isinstance(error, WireError):
            raise RazorpayApiError(400, str(error), field=error.field or location) from None
        raise RazorpayApiError(400, f"The {location} field is invalid.", field=location) from None
