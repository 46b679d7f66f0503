"""Request bodies and path parameters of the HTTP API and the console (they make its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

#: Identifiers: letters, digits and ``_ . : -`` only.
ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
#: Free text: anything but NUL, which no database column can hold.
TEXT_PATTERN = r"^[^\x00]*$"
#: An order in a path: ``/orders/{order_id}`` of the API and of the console.
OrderId = Annotated[str, Path(min_length=1, max_length=40, pattern=ID_PATTERN, description="our order id, ord_…")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateOrderBody(_Body):
    organisation_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    requested_by: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN,
                              description="member id of the admin paying")
    plan: str = Field(max_length=32, pattern=TEXT_PATTERN, description="payg, pro or custom (enterprise is refused)")
    credits: int | None = Field(default=None, description="payg: credits to buy, at least 1,000")
    custom_amount_minor: int | None = Field(default=None, description="custom: amount in minor units before tax")
    refund_policy_accepted: bool = Field(description="must be true for every purchase")


class VerifyPaymentBody(_Body):
    payment_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    signature: str = Field(min_length=1, max_length=4_096, pattern=TEXT_PATTERN)
    wait: bool = Field(default=False, description="answer with the outcome (the order, the balance) once a worker "
                                                  "has processed the callback, instead of 202 at once")
    wait_timeout_s: float = Field(default=10.0, gt=0, le=30, description="how long to wait for the outcome")


class RecheckBody(_Body):
    requested_by: str = Field(min_length=1, max_length=120, pattern=TEXT_PATTERN,
                              description="the person asking (audited)")
    reason: str | None = Field(default=None, max_length=2_000, pattern=TEXT_PATTERN)
    wait: bool = Field(default=True, description="answer with the outcome instead of enqueueing")
    wait_timeout_s: float = Field(default=10.0, gt=0, le=60, description="how long to wait for the outcome")


class ReviewBody(_Body):
    decision: Literal["credit", "close", "refund"] = Field(
        description="credit the order, close it without credit, or close it and refund the money at the gateway")
    reason: str = Field(min_length=3, max_length=2_000, pattern=TEXT_PATTERN, description="mandatory: why (audited)")
    requested_by: str = Field(min_length=1, max_length=120, pattern=TEXT_PATTERN)


class RefundBody(_Body):
    amount_minor: int | None = Field(default=None, gt=0, lt=2**63,
                                     description="minor units; omitted: everything still refundable")
    reason: str = Field(max_length=2_000, pattern=TEXT_PATTERN,
                        description="mandatory: why (audited); a blank one is refused with code reason_required")
    requested_by: str = Field(min_length=1, max_length=80, pattern=TEXT_PATTERN, description="the person asking")
    override_spent: bool = Field(default=False, description="refund credits the customer already spent (say why)")
    payment_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=ID_PATTERN,
                                   description="the gateway payment to refund; omitted: the order's credited payment")


class ChargebackBody(_Body):
    amount_minor: int | None = Field(default=None, gt=0, lt=2**63, description="minor units; omitted: the whole order")
    reason: str = Field(max_length=2_000, pattern=TEXT_PATTERN,
                        description="mandatory: the case (audited); a blank one is refused with code reason_required")
    requested_by: str = Field(min_length=1, max_length=80, pattern=TEXT_PATTERN, description="the person recording it")


class EventReplayBody(_Body):
    delivery_ids: list[Annotated[int, Field(ge=1, lt=2**63)]] | None = Field(
        default=None, max_length=1_000, description="deliveries to send again")
    order_id: str | None = Field(default=None, max_length=40, pattern=ID_PATTERN,
                                 description="every dead delivery of this order")
    all_dead: bool = Field(default=False, description="every dead delivery")
    again: bool = Field(default=False, description="delivered ones too (the same webhook-id: receivers dedupe)")
    reason: str = Field(min_length=1, max_length=2_000, pattern=TEXT_PATTERN, description="mandatory (audited)")
    requested_by: str = Field(min_length=1, max_length=80, pattern=TEXT_PATTERN, description="the person replaying")
