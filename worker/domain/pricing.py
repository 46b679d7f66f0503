"""The Plan → Credits → Review steps as pure rules: what may be bought, and what it costs."""

from __future__ import annotations

from dataclasses import dataclass

from worker.domain.errors import OrderRejected
from worker.domain.money import apply_rate_bp, exponent
from worker.domain.order_state import Plan


@dataclass(frozen=True, slots=True)
class PriceList:
    credit_price_minor: dict[str, int]
    pro_price_minor: dict[str, int]
    min_credits: int
    max_credits: int
    max_custom_amount_minor: int


@dataclass(frozen=True, slots=True)
class Quote:
    """The Review step: what the customer will be charged, in minor units of ``currency``."""

    plan: Plan
    credits: int
    currency: str
    subtotal_minor: int
    tax_rate_bp: int
    tax_minor: int
    total_minor: int


def parse_plan(value: str) -> Plan:
    try:
        plan = Plan(value)
    except ValueError:
        raise OrderRejected("unknown_plan", f"unknown plan {value!r}; choose payg, pro or custom") from None
    if plan == Plan.ENTERPRISE:
        raise OrderRejected("enterprise_not_purchasable",
                            "Enterprise cannot be bought online; talk to our team at 9pic.ai/contact")
    return plan


def quote(*, plan: Plan, credits: int | None, custom_amount_minor: int | None, currency: str, tax_rate_bp: int,
          prices: PriceList) -> Quote:
    """Price a purchase. Raises OrderRejected with a clear message for anything not allowed."""
    credits = credits or 0
    if plan == Plan.ENTERPRISE:
        raise OrderRejected("enterprise_not_purchasable",
                            "Enterprise cannot be bought online; talk to our team at 9pic.ai/contact")
    if plan == Plan.PAYG:
        if isinstance(credits, bool) or not isinstance(credits, int):
            raise OrderRejected("invalid_credits", "credits must be a whole number")
        if credits < prices.min_credits:
            raise OrderRejected("below_minimum", f"the minimum is {prices.min_credits:,} credits per purchase")
        if credits > prices.max_credits:
            raise OrderRejected("above_maximum", f"at most {prices.max_credits:,} credits per purchase")
        subtotal = credits * _price(prices.credit_price_minor, currency)
    elif plan == Plan.PRO:
        credits, subtotal = 0, _price(prices.pro_price_minor, currency)
    else:
        credits = 0
        if (not isinstance(custom_amount_minor, int) or isinstance(custom_amount_minor, bool)
                or custom_amount_minor <= 0):
            raise OrderRejected("invalid_amount", "a custom payment needs a positive amount in minor units")
        if custom_amount_minor > prices.max_custom_amount_minor:
            raise OrderRejected("above_maximum", "the custom amount is larger than we accept online")
        subtotal = custom_amount_minor
    if exponent(currency) == 3 and subtotal % 10:
        raise OrderRejected("invalid_amount", f"{currency} amounts must be whole multiples of 0.010")
    tax = _round_for_currency(apply_rate_bp(subtotal, tax_rate_bp), currency)
    return Quote(plan, credits, currency, subtotal, tax_rate_bp, tax, subtotal + tax)


def _price(table: dict[str, int], currency: str) -> int:
    if currency not in table:
        raise OrderRejected("currency_not_priced", f"no price is configured for {currency}")
    return table[currency]


def _round_for_currency(minor: int, currency: str) -> int:
    """Three-decimal currencies must end in 0 at Razorpay (99.991 KWD is sent as 99990)."""
    return (minor + 5) // 10 * 10 if exponent(currency) == 3 else minor
