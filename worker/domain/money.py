"""Money as integer minor units plus an ISO 4217 currency code. No floats anywhere."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, DecimalException
from typing import cast

from gateways.currency import EXPONENTS as EXPONENTS  # one table for the domain and every adapter
from gateways.currency import exponent as exponent

#: Three ASCII upper-case letters (``str.isupper`` would also accept ``ÄÖÜ``).
CURRENCY_CODE = re.compile(r"[A-Z]{3}")
#: More decimal places of scale than any real amount has: beyond it an input is refused.
MAX_SCALE = 40


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units (paise, cents) of one currency."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise TypeError(f"amount must be an integer number of minor units, got {self.minor!r}")
        if not isinstance(self.currency, str) or not CURRENCY_CODE.fullmatch(self.currency):
            raise ValueError(f"currency must be an upper-case ISO 4217 code, got {self.currency!r}")

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.minor + other.minor, self.currency)

    def __str__(self) -> str:
        return f"{format_major(self.minor, self.currency)} {self.currency}"


def format_major(minor: int, currency: str) -> str:
    """Minor units as a decimal string in major units: 29500 INR -> '295.00'."""
    exp = exponent(currency)
    if exp == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}"


def parse_major(text: str, currency: str) -> Money:
    """A decimal string in major units ('295.00') as exact minor units. Raises ValueError."""
    try:
        value = Decimal(text.strip())
    except (DecimalException, AttributeError) as exc:
        raise ValueError(f"not a decimal amount: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {text!r}")
    sign, digits, exp = value.as_tuple()  # exact integer arithmetic: no 28-digit context, no rounding
    shift = cast(int, exp) + exponent(currency)  # an int once finite ("n"/"N"/"F" are NaN and infinity)
    if abs(shift) > MAX_SCALE:
        raise ValueError(f"{text!r} is out of any plausible range")
    coefficient = int("".join(map(str, digits)) or "0")
    if shift >= 0:
        minor = coefficient * 10**shift
    elif coefficient % 10**-shift:
        raise ValueError(f"{text!r} has more decimals than {currency} allows")
    else:
        minor = coefficient // 10**-shift
    return Money(-minor if sign else minor, currency.upper())


def apply_rate_bp(minor: int, rate_bp: int) -> int:
    """``minor`` times a rate in basis points, rounded half up, in integers."""
    return (minor * rate_bp + 5_000) // 10_000
