"""Money: integer minor units, currency exponents, exact decimal parsing and formatting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.domain.money import EXPONENTS, Money, apply_rate_bp, exponent, format_major, parse_major


@pytest.mark.parametrize(("currency", "expected"), [
    pytest.param("JPY", 0, id="yen has no minor unit"),
    pytest.param("KRW", 0, id="won has no minor unit"),
    pytest.param("KWD", 3, id="Kuwaiti dinar has three decimals"),
    pytest.param("BHD", 3, id="Bahraini dinar has three decimals"),
    pytest.param("INR", 2, id="rupee has two decimals"),
    pytest.param("USD", 2, id="dollar has two decimals"),
    pytest.param("GBP", 2, id="pound (unlisted) defaults to two decimals"),
    pytest.param("jpy", 0, id="lower-case codes are looked up case-insensitively"),
    pytest.param("kwd", 3, id="lower-case three-decimal code is found too"),
])
def test_exponent(currency: str, expected: int) -> None:
    assert exponent(currency) == expected


#: ISO 4217 (list one, "minor unit" column, 2024 edition): every active code whose minor unit is not 2.
ISO_4217_NOT_TWO = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0,
    "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}


def test_the_exponent_table_is_iso_4217() -> None:
    assert dict(EXPONENTS) == ISO_4217_NOT_TWO
    assert exponent("INR") == exponent("usd") == 2


@pytest.mark.parametrize("currency", [*sorted(ISO_4217_NOT_TWO), "INR", "USD", "GBP"])
def test_every_adapter_codec_agrees_with_the_domain_on_minor_units(currency: str) -> None:
    """Issue "Structure" §4: PayGlocal knew only JPY as zero-decimal, so a KRW price was sent as 1/100."""
    from gateways.payglocal.mapping import amount_to_minor, minor_to_amount

    text = format_major(123_000, currency)
    assert minor_to_amount(123_000, currency) == text
    assert amount_to_minor(text, currency) == 123_000 == parse_major(text, currency).minor


@pytest.mark.parametrize(("minor", "currency", "text"), [
    pytest.param(29_500, "INR", "295.00", id="rupees keep two decimals"),
    pytest.param(5, "INR", "0.05", id="paise below one rupee are zero padded"),
    pytest.param(0, "USD", "0.00", id="zero in a two-decimal currency"),
    pytest.param(-150, "USD", "-1.50", id="negative amounts keep their sign"),
    pytest.param(-5, "USD", "-0.05", id="a negative amount below one keeps its sign"),
    pytest.param(1_500, "JPY", "1500", id="yen has no decimal point"),
    pytest.param(-7, "JPY", "-7", id="negative yen"),
    pytest.param(99_990, "KWD", "99.990", id="dinar shows three decimals"),
    pytest.param(1, "KWD", "0.001", id="one fils"),
])
def test_format_major(minor: int, currency: str, text: str) -> None:
    assert format_major(minor, currency) == text


@pytest.mark.parametrize(("text", "currency", "minor"), [
    pytest.param("295.00", "INR", 29_500, id="rupees with two decimals"),
    pytest.param("295", "INR", 29_500, id="whole rupees"),
    pytest.param("295.5", "INR", 29_550, id="one decimal is fine"),
    pytest.param("  12.34\n", "USD", 1_234, id="surrounding whitespace is ignored"),
    pytest.param("-1.50", "USD", -150, id="negative amounts"),
    pytest.param("1500", "JPY", 1_500, id="whole yen"),
    pytest.param("1500.0", "JPY", 1_500, id="yen with a zero fraction is still whole"),
    pytest.param("99.991", "KWD", 99_991, id="three dinar decimals"),
    pytest.param("0.001", "KWD", 1, id="one fils"),
])
def test_parse_major(text: str, currency: str, minor: int) -> None:
    assert parse_major(text, currency) == Money(minor, currency)


def test_parse_major_upper_cases_the_currency() -> None:
    assert parse_major("1.00", "inr") == Money(100, "INR")


@pytest.mark.parametrize(("text", "currency"), [
    pytest.param("295.001", "INR", id="three decimals in rupees"),
    pytest.param("0.001", "USD", id="a tenth of a cent"),
    pytest.param("1.5", "JPY", id="half a yen"),
    pytest.param("0.0001", "KWD", id="four decimals in dinar"),
    pytest.param("", "INR", id="empty text"),
    pytest.param("   ", "INR", id="only spaces"),
    pytest.param("abc", "INR", id="letters"),
    pytest.param("1,000.00", "INR", id="thousands separators"),
    pytest.param("12.34.56", "INR", id="two decimal points"),
    pytest.param("₹100", "INR", id="a currency symbol"),
    pytest.param("100 INR", "INR", id="a trailing currency code"),
    pytest.param("NaN", "INR", id="not a number"),
    pytest.param("Infinity", "INR", id="infinity"),
    pytest.param("-Infinity", "USD", id="minus infinity"),
])
def test_parse_major_rejects(text: str, currency: str) -> None:
    with pytest.raises(ValueError):
        parse_major(text, currency)


@pytest.mark.parametrize("value", [None, 100, 1.5], ids=["None", "an int", "a float"])
def test_parse_major_rejects_non_text_with_value_error(value: object) -> None:
    with pytest.raises(ValueError):
        parse_major(value, "INR")  # type: ignore[arg-type]


def test_parse_major_rejects_a_signalling_nan_with_value_error() -> None:
    with pytest.raises(ValueError):
        parse_major("sNaN", "INR")


def test_parse_major_rejects_an_absurd_exponent_with_value_error() -> None:
    with pytest.raises(ValueError):
        parse_major("1e999999", "INR")


def test_parse_major_rejects_too_many_decimals_even_on_a_very_long_number() -> None:
    with pytest.raises(ValueError):
        parse_major("10000000000000000000000000000.001", "INR")


def test_format_then_parse_is_exact_for_very_large_amounts() -> None:
    minor = 10**30 + 1
    assert parse_major(format_major(minor, "INR"), "INR").minor == minor


CURRENCIES = st.sampled_from(["INR", "USD", "GBP", "JPY", "KRW", "KWD", "BHD", "OMR"])
#: Anything a payment could plausibly carry (well inside Decimal's 28-digit context).
AMOUNTS = st.integers(min_value=-(10**18), max_value=10**18)


@settings(max_examples=300, deadline=None)
@given(minor=AMOUNTS, currency=CURRENCIES)
def test_format_then_parse_round_trips(minor: int, currency: str) -> None:
    text = format_major(minor, currency)
    assert parse_major(text, currency) == Money(minor, currency)
    decimals = exponent(currency)
    if decimals:
        assert len(text.split(".")[1]) == decimals
    else:
        assert "." not in text


@settings(max_examples=300, deadline=None)
@given(minor=AMOUNTS, currency=CURRENCIES, extra=st.integers(min_value=1, max_value=9))
def test_parse_rejects_one_decimal_more_than_the_currency_has(minor: int, currency: str, extra: int) -> None:
    text = format_major(minor, currency)
    text = f"{text}{extra}" if "." in text else f"{text}.{extra}"
    with pytest.raises(ValueError):
        parse_major(text, currency)


# --- Money -------------------------------------------------------------------------------------------------

def test_money_holds_minor_units_and_prints_in_major_units() -> None:
    assert Money(29_500, "INR").minor == 29_500
    assert str(Money(29_500, "INR")) == "295.00 INR"
    assert str(Money(1_500, "JPY")) == "1500 JPY"
    assert str(Money(99_990, "KWD")) == "99.990 KWD"


@pytest.mark.parametrize("minor", [1.0, 2.5, True, False, "100", None],
                         ids=["a whole float", "a fractional float", "True", "False", "a string", "None"])
def test_money_rejects_amounts_that_are_not_int(minor: object) -> None:
    with pytest.raises(TypeError):
        Money(minor, "INR")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["inr", "Inr", "iNR", "IN", "INRR", "", "1NR", "I R", "US$"],
                         ids=["lower case", "mixed case", "one lower-case letter", "two letters", "four letters",
                              "empty", "a digit", "a space", "a symbol"])
def test_money_rejects_currency_that_is_not_an_upper_case_iso_code(currency: str) -> None:
    with pytest.raises(ValueError):
        Money(100, currency)


def test_money_rejects_non_ascii_letters_as_currency() -> None:
    with pytest.raises(ValueError):
        Money(100, "ÄÖÜ")


def test_money_adds_within_one_currency() -> None:
    assert Money(100, "INR") + Money(250, "INR") == Money(350, "INR")


def test_money_refuses_to_add_two_currencies() -> None:
    with pytest.raises(ValueError):
        Money(100, "INR") + Money(100, "USD")


def test_money_is_immutable() -> None:
    money = Money(100, "INR")
    with pytest.raises(AttributeError):
        money.minor = 5  # type: ignore[misc]


# --- apply_rate_bp -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("minor", "rate_bp", "expected"), [
    pytest.param(1_000_000, 1_800, 180_000, id="18 percent of 10,000.00 rupees is exact"),
    pytest.param(100, 1_800, 18, id="18 percent of one rupee is 18 paise"),
    pytest.param(1, 5_000, 1, id="half a paisa rounds up"),
    pytest.param(3, 5_000, 2, id="one and a half rounds up to two"),
    pytest.param(1, 4_999, 0, id="just under half rounds down"),
    pytest.param(25, 1_000, 3, id="2.5 rounds up to 3"),
    pytest.param(24, 1_000, 2, id="2.4 rounds down to 2"),
    pytest.param(26, 1_000, 3, id="2.6 rounds up to 3"),
    pytest.param(12_345, 0, 0, id="a zero rate is zero"),
    pytest.param(12_345, 10_000, 12_345, id="a 100 percent rate is the amount"),
    pytest.param(0, 1_800, 0, id="nothing taxed is nothing"),
])
def test_apply_rate_bp(minor: int, rate_bp: int, expected: int) -> None:
    assert apply_rate_bp(minor, rate_bp) == expected


@settings(max_examples=300, deadline=None)
@given(minor=st.integers(min_value=0, max_value=10**15), rate_bp=st.integers(min_value=0, max_value=100_000))
def test_apply_rate_bp_is_exact_half_up(minor: int, rate_bp: int) -> None:
    from fractions import Fraction

    exact = Fraction(minor * rate_bp, 10_000)
    result = apply_rate_bp(minor, rate_bp)
    assert isinstance(result, int)
    assert result - Fraction(1, 2) <= exact < result + Fraction(1, 2)
