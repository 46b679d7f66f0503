"""The message contract for the billing backend and support tools: one model per actor.

A message that breaks the contract raises :class:`BadMessage`, which the actors list in
``throws=``: it goes straight to the dead-letter queue with the reason, and never crashes a worker.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class BadMessage(Exception):
    """A queue message whose arguments break the documented contract."""


#: Identifiers: letters, digits and ``_ . : -`` only; free text: anything but NUL.
ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
TEXT_PATTERN = r"^[^\x00]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class VerifyPaymentArgs(_Strict):
    order_id: str = Field(min_length=1, max_length=40, pattern=ID_PATTERN)
    payment_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    signature: str = Field(min_length=1, max_length=4_096, pattern=TEXT_PATTERN)


class RecheckOrderArgs(_Strict):
    order_id: str = Field(min_length=1, max_length=40, pattern=ID_PATTERN)
    requested_by: str = Field(min_length=1, max_length=120, pattern=TEXT_PATTERN)
    reason: str | None = Field(default=None, max_length=2_000, pattern=TEXT_PATTERN)


#: A coalesce key: ``<gateway>:<payment id>`` (worker.services.intake.coalesce_key).
COALESCE_KEY_MAX = 100


class InboxEventArgs(_Strict):
    inbox_id: int = Field(ge=1)
    #: Set when the sender claimed the payment's "message queued" marker: the worker releases it first.
    coalesce_key: str | None = Field(default=None, min_length=3, max_length=COALESCE_KEY_MAX, pattern=ID_PATTERN)


class RefundArgs(_Strict):
    refund_id: int = Field(ge=1)


class DeliveryArgs(_Strict):
    endpoint: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]{1,64}$")
    order_id: str = Field(min_length=1, max_length=40, pattern=ID_PATTERN)


class SettlementsArgs(_Strict):
    """``reconcile_settlements()``: no arguments (every due day of every gateway with a settlement API)."""


class OrderArgs(_Strict):
    order_id: str = Field(min_length=1, max_length=40, pattern=ID_PATTERN)


def problems(exc: ValidationError) -> str:
    """pydantic's errors as one line: ``field: what is wrong; …``."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())


def parse(model: type[BaseModel], **kwargs: object) -> BaseModel:
    try:
        return model(**kwargs)
    except ValidationError as exc:
        raise BadMessage(f"{model.__name__}: {problems(exc)}") from None
