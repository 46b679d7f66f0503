"""The one table of minor units: how many decimals each ISO 4217 currency has. Standard library only.

Every adapter and the domain's money codec use it, so a currency cannot be 1/100 in one place and
whole units in another (a KRW region on PayGlocal would otherwise be charged a hundredth of its price).
"""

from __future__ import annotations

from collections.abc import Mapping

#: ISO 4217 currencies whose minor unit is not 1/100 (the standard's "minor unit" column; fund codes
#: included). Every other currency has 2 decimals.
EXPONENTS: Mapping[str, int] = {
    **{code: 0 for code in "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()},
    **{code: 3 for code in "BHD IQD JOD KWD LYD OMR TND".split()},
    **{code: 4 for code in "CLF UYW".split()},
}
DEFAULT_EXPONENT = 2


def exponent(currency: str) -> int:
    """How many decimal places ``currency``'s minor unit has (2 unless :data:`EXPONENTS` says otherwise)."""
    return EXPONENTS.get(currency.upper(), DEFAULT_EXPONENT)
