"""Pricing: the Plan -> Credits -> Review steps of the Buy More Credits flow as pure rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.domain.errors import OrderRejected, ReconError
from worker.domain.order_state import Plan
from worker.domain.pricing import PriceList, Quote, parse_plan, quote

PRICES = PriceList(
    credit_price_minor={"INR": 200, "USD": 3, "GBP": 2, "JPY": 3, "KWD": 10},
    pro_price_minor={"INR": 4_999_900, "USD": 59_900, "GBP": 49_900, "KWD": 18_500},
    min_credits=1_000,
    max_credits=10_000_000,
    max_custom_amount_minor=100_000_000,
)
GST_BP = 1_800


def price(plan: Plan = Plan.PAYG, *, credits: int | None = None, custom: int | None = None, currency: str = "INR",
          tax_bp: int = GST_BP, prices: PriceList = PRICES) -> Quote:
    return quote(plan=plan, credits=credits, custom_amount_minor=custom, currency=currency, tax_rate_bp=tax_bp,
                 prices=prices)


def rejected(code: str, **kwargs) -> OrderRejected:
    with pytest.raises(OrderRejected) as raised:
        price(**kwargs)
    assert raised.value.code == code
    assert raised.value.message and str(raised.value) == raised.value.message
    return raised.value


# --- Plan step ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "plan"), [
    pytest.param("payg", Plan.PAYG, id="pay as you go"),
    pytest.param("pro", Plan.PRO, id="pro subscription"),
    pytest.param("custom", Plan.CUSTOM, id="custom payment"),
])
def test_parse_plan_accepts_the_purchasable_plans(text: str, plan: Plan) -> None:
    assert parse_plan(text) is plan


def test_parse_plan_refuses_enterprise_with_a_pointer_to_sales() -> None:
    with pytest.raises(OrderRejected) as raised:
        parse_plan("enterprise")
    assert raised.value.code == "enterprise_not_purchasable"
    assert "9pic.ai/contact" in raised.value.message


@pytest.mark.parametrize("text", ["", "PAYG", "free", "pay as you go", "enterprise "],
                         ids=["empty", "upper case", "an unknown plan", "the display name", "a trailing space"])
def test_parse_plan_refuses_unknown_plans(text: str) -> None:
    with pytest.raises(OrderRejected) as raised:
        parse_plan(text)
    assert raised.value.code == "unknown_plan"
    assert isinstance(raised.value, ReconError)


def test_quote_refuses_enterprise_even_when_called_directly() -> None:
    rejected("enterprise_not_purchasable", plan=Plan.ENTERPRISE, custom=100_000)


# --- Credits step (Pay As You Go) --------------------------------------------------------------------------

def test_payg_minimum_is_1000_credits_and_999_is_rejected() -> None:
    error = rejected("below_minimum", credits=999)
    assert "1,000" in error.message


def test_payg_accepts_exactly_the_minimum() -> None:
    assert price(credits=1_000).credits == 1_000


@pytest.mark.parametrize("credits", [None, 0, -1, -5_000], ids=["missing", "zero", "minus one", "negative"])
def test_payg_without_a_positive_count_is_below_minimum(credits: int | None) -> None:
    rejected("below_minimum", credits=credits)


def test_payg_accepts_exactly_the_maximum() -> None:
    assert price(credits=10_000_000).credits == 10_000_000


def test_payg_above_the_maximum_is_rejected() -> None:
    error = rejected("above_maximum", credits=10_000_001)
    assert "10,000,000" in error.message


@pytest.mark.parametrize("credits", [1_000.0, 1_500.5, "1000", True],
                         ids=["a whole float", "a fractional float", "a numeric string", "True"])
def test_payg_credits_must_be_an_int(credits: object) -> None:
    rejected("invalid_credits", credits=credits)


@pytest.mark.parametrize("currency", ["EUR", "inr", "AUD"], ids=["euro", "lower-case rupee", "australian dollar"])
def test_payg_in_a_currency_without_a_credit_price_is_rejected(currency: str) -> None:
    rejected("currency_not_priced", credits=1_000, currency=currency)


def test_min_and_max_come_from_the_price_list() -> None:
    strict = PriceList(PRICES.credit_price_minor, PRICES.pro_price_minor, min_credits=5_000, max_credits=6_000,
                       max_custom_amount_minor=PRICES.max_custom_amount_minor)
    rejected("below_minimum", credits=4_999, prices=strict)
    rejected("above_maximum", credits=6_001, prices=strict)
    assert price(credits=5_000, prices=strict).credits == 5_000


# --- Review step: totals and tax -----------------------------------------------------------------------------

def test_payg_5000_credits_in_india_is_10000_rupees_plus_18_percent_gst() -> None:
    assert price(credits=5_000) == Quote(plan=Plan.PAYG, credits=5_000, currency="INR", subtotal_minor=1_000_000,
                                         tax_rate_bp=1_800, tax_minor=180_000, total_minor=1_180_000)


def test_payg_in_a_zero_tax_region_charges_the_subtotal() -> None:
    assert price(credits=1_000, currency="USD", tax_bp=0) == Quote(Plan.PAYG, 1_000, "USD", 3_000, 0, 0, 3_000)


def test_payg_tax_rounds_half_up_to_the_minor_unit() -> None:
    # 1,001 credits at 3 cents = 3,003 cents; 20 % = 600.6 cents -> 601
    assert price(credits=1_001, currency="USD", tax_bp=2_000).tax_minor == 601
    # 1,001 credits at 2 pence = 2,002 pence; 12.5 % = 250.25 -> 250
    assert price(credits=1_001, currency="GBP", tax_bp=1_250).tax_minor == 250


def test_payg_in_yen_is_whole_yen() -> None:
    quoted = price(credits=1_234, currency="JPY", tax_bp=1_000)
    assert (quoted.subtotal_minor, quoted.tax_minor, quoted.total_minor) == (3_702, 370, 4_072)


def test_tax_in_a_three_decimal_currency_is_rounded_to_a_multiple_of_ten() -> None:
    # 1,000 credits at 0.010 KWD = 10.000 KWD; 5.55 % = 0.555 KWD -> 0.560 KWD
    quoted = price(credits=1_000, currency="KWD", tax_bp=555)
    assert (quoted.subtotal_minor, quoted.tax_minor, quoted.total_minor) == (10_000, 560, 10_560)


@settings(max_examples=300, deadline=None)
@given(credits=st.integers(min_value=1_000, max_value=10_000_000),
       currency=st.sampled_from(["INR", "USD", "GBP", "JPY"]),
       tax_bp=st.integers(min_value=0, max_value=3_000))
def test_payg_total_is_subtotal_plus_tax_in_integers(credits: int, currency: str, tax_bp: int) -> None:
    quoted = price(credits=credits, currency=currency, tax_bp=tax_bp)
    assert quoted.credits == credits
    assert quoted.subtotal_minor == credits * PRICES.credit_price_minor[currency]
    assert quoted.total_minor == quoted.subtotal_minor + quoted.tax_minor
    assert all(isinstance(v, int) for v in (quoted.subtotal_minor, quoted.tax_minor, quoted.total_minor))
    # half-up: 2 * tax is within one minor unit of the exact 2 * subtotal * rate
    assert abs(2 * quoted.tax_minor * 10_000 - 2 * quoted.subtotal_minor * tax_bp) <= 10_000


# --- Pro --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("currency", "subtotal"), [
    pytest.param("INR", 4_999_900, id="pro in rupees"),
    pytest.param("USD", 59_900, id="pro in dollars"),
    pytest.param("GBP", 49_900, id="pro in pounds"),
])
def test_pro_is_priced_per_currency_and_adds_no_credits(currency: str, subtotal: int) -> None:
    quoted = price(Plan.PRO, credits=5_000, currency=currency, tax_bp=0)
    assert (quoted.plan, quoted.credits, quoted.subtotal_minor, quoted.total_minor) == (Plan.PRO, 0, subtotal,
                                                                                         subtotal)


def test_pro_adds_the_region_tax() -> None:
    quoted = price(Plan.PRO, currency="INR")
    assert (quoted.tax_minor, quoted.total_minor) == (899_982, 5_899_882)


def test_pro_ignores_the_credit_minimum() -> None:
    assert price(Plan.PRO, credits=1, currency="USD").credits == 0


def test_pro_in_a_currency_without_a_pro_price_is_rejected() -> None:
    rejected("currency_not_priced", plan=Plan.PRO, currency="JPY")


# --- Custom payment -----------------------------------------------------------------------------------------

def test_custom_payment_charges_the_amount_plus_tax_and_adds_no_credits() -> None:
    quoted = price(Plan.CUSTOM, credits=9_999, custom=50_000)
    assert quoted == Quote(Plan.CUSTOM, 0, "INR", 50_000, 1_800, 9_000, 59_000)


@pytest.mark.parametrize("amount", [None, 0, -100, 10.5, 100.0, "5000", True],
                         ids=["missing", "zero", "negative", "a fractional float", "a whole float",
                              "a numeric string", "True"])
def test_custom_payment_needs_a_positive_int_amount(amount: object) -> None:
    rejected("invalid_amount", plan=Plan.CUSTOM, custom=amount)


def test_custom_payment_accepts_the_maximum_and_rejects_one_more() -> None:
    assert price(Plan.CUSTOM, custom=100_000_000, tax_bp=0).total_minor == 100_000_000
    rejected("above_maximum", plan=Plan.CUSTOM, custom=100_000_001)


def test_custom_payment_accepts_one_minor_unit() -> None:
    assert price(Plan.CUSTOM, custom=1, tax_bp=0).total_minor == 1


def test_a_three_decimal_total_ends_in_zero_or_is_refused() -> None:
    try:
        quoted = price(Plan.CUSTOM, custom=99_991, currency="KWD", tax_bp=0)
    except OrderRejected:
        return
    assert quoted.total_minor % 10 == 0
