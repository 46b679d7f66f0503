"""``create_order``: the Plan → Credits → Review steps, then the order at the gateway."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from db.models import Member, Order, Organisation
from gateways import registry
from gateways.errors import GatewayError
from worker.deps import Deps
from worker.domain.errors import GatewayUnavailable, OrderRejected
from worker.domain.money import exponent, format_major
from worker.domain.order_state import (
    INITIAL_STATE,
    OrderSnapshot,
    OrderState,
    Plan,
    decide_creation_failed,
    horizon_at,
    window_closes_at,
)
from worker.domain.pricing import parse_plan, quote
from worker.domain.schedule import next_check_at
from worker.logging import get_logger


@dataclass(frozen=True, slots=True)
class PurchaseRequest:
    organisation_id: str
    requested_by: str  #: the member id of the person paying
    plan: str
    refund_policy_accepted: bool
    credits: int | None = None
    custom_amount_minor: int | None = None


@dataclass(frozen=True, slots=True)
class CreatedOrder:
    order: Order
    checkout: dict[str, str]


def new_order_id() -> str:
    """``ord_`` and 20 random hex characters; also our receipt at the gateway (≤ 40 chars)."""
    return "ord_" + secrets.token_hex(10)


def create_order(request: PurchaseRequest, *, deps: Deps) -> CreatedOrder:
    """Validate, price and store the order, then create it at the region's gateway.

    Raises:
        OrderRejected: the purchase is not allowed (nothing is stored).
        GatewayUnavailable: the gateway failed; the order is kept, marked abandoned.
    """
    with deps.unit() as uow:
        order = _new_order(uow.session, request, deps=deps, now=uow.now)
        # Checked from the start: if this process dies before the gateway answers, the sweep closes it.
        order.next_check_at = first_check_at(order, deps=deps)
        uow.add_order(order)
        uow.commit()
    gateway = deps.gateway(order.gateway)
    log = get_logger(order_id=order.id, gateway=order.gateway)
    try:
        remote = gateway.create_order(receipt=order.id, amount_minor=order.amount_minor, currency=order.currency,
                                      notes={"order_id": order.id, "organisation_id": order.organisation_id},
                                      manual_capture=order.manual_capture)
    except GatewayError as exc:
        _close_after_gateway_error(order.id, deps=deps)
        log.warning("gateway_order_create_failed", error=str(exc), error_type=type(exc).__name__)
        raise GatewayUnavailable(order.id, f"{order.gateway} could not create the order: {exc}") from exc
    with deps.unit() as uow:
        stored = uow.order(order.id, lock=True)
        stored.gateway_order_id = remote.gateway_order_id
        stored.updated_at = uow.now
        stored.next_check_at = first_check_at(stored, deps=deps)
        uow.commit()
    log.info("order_created", gateway_order_id=remote.gateway_order_id, amount_minor=order.amount_minor,
             currency=order.currency, plan=order.plan)
    return CreatedOrder(stored, dict(remote.checkout))


def first_check_at(order: Order, *, deps: Deps) -> datetime | None:
    snapshot = OrderSnapshot(order_id=order.id, state=OrderState.CREATED, plan=Plan(order.plan),
                             amount_minor=order.amount_minor, currency=order.currency, gateway_order_id="",
                             created_at=order.created_at)
    return next_check_at(state=OrderState.CREATED, checks_done=0, now=deps.clock.now(),
                         window_closes_at=window_closes_at(snapshot, deps.policy),
                         horizon_at=horizon_at(snapshot, deps.policy), schedule=deps.schedule)


def _new_order(session, request: PurchaseRequest, *, deps: Deps, now: datetime) -> Order:
    organisation = session.get(Organisation, request.organisation_id)
    if organisation is None:
        raise OrderRejected("unknown_organisation", f"no organisation {request.organisation_id!r}")
    member = session.get(Member, request.requested_by)
    if member is None or member.organisation_id != organisation.id:
        raise OrderRejected("unknown_member", "the person paying is not a member of this organisation")
    if member.role != "admin":
        raise OrderRejected("not_admin", "only an organisation's admins can make payments; operators cannot")
    if request.refund_policy_accepted is not True:
        raise OrderRejected("refund_policy_not_accepted", "the refund policy must be accepted for every purchase")
    plan = parse_plan(request.plan)
    region = deps.regions.get(organisation.region)
    if region is None:
        raise OrderRejected("region_not_supported",
                            f"online payment is not available in region {organisation.region!r}")
    if region.gateway not in deps.gateways:
        raise OrderRejected("gateway_not_configured",
                            f"online payment through {region.gateway} is not configured "
                            f"for region {organisation.region}")
    if plan == Plan.PRO and organisation.plan == "enterprise":
        raise OrderRejected("enterprise_organisation",
                            "this organisation is on Enterprise: buying Pro online would downgrade it; "
                            "talk to your account manager")
    priced = quote(plan=plan, credits=request.credits, custom_amount_minor=request.custom_amount_minor,
                   currency=region.currency, tax_rate_bp=region.tax_rate_bp, prices=deps.prices)
    least = deps.gateway(region.gateway).min_amount_minor(priced.currency, exponent(priced.currency))
    if priced.total_minor < least:  # refused now, not by the gateway after the order was stored
        raise OrderRejected("below_gateway_minimum",
                            f"{region.gateway} accepts payments of at least {format_major(least, priced.currency)} "
                            f"{priced.currency}; this one is {format_major(priced.total_minor, priced.currency)}")
    return Order(
        id=new_order_id(), organisation_id=organisation.id, requested_by=member.id, plan=plan.value,
        credits=priced.credits if plan == Plan.PAYG else 0, currency=priced.currency,
        subtotal_minor=priced.subtotal_minor, tax_rate_bp=priced.tax_rate_bp, tax_minor=priced.tax_minor,
        amount_minor=priced.total_minor, gateway=region.gateway,
        manual_capture=registry.adapter(region.gateway).manual_capture_from(deps.settings),
        state=INITIAL_STATE.value, refund_policy_accepted_at=now, created_at=now, updated_at=now, check_count=0,
    )


def _close_after_gateway_error(order_id: str, *, deps: Deps) -> None:
    with deps.unit() as uow:
        order = uow.order(order_id, lock=True)
        uow.move(order, decide_creation_failed(uow.snapshot(order)), source="create")
        order.next_check_at = None  # there is no gateway order to check
        uow.commit()
