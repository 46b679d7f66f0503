"""The one table of minor units (``gateways/currency.py``) against ISO 4217, and every adapter using it."""

from __future__ import annotations

import ast
import pathlib

import pytest

from gateways.currency import DEFAULT_EXPONENT, EXPONENTS, exponent
from gateways.payglocal.mapping import amount_to_minor, minor_to_amount

GATEWAYS = pathlib.Path(__file__).resolve().parents[3] / "gateways"

#: ISO 4217 list one (the "minor unit" column, current edition), written out here from the standard and not
#: from our table: every code whose minor unit is not 2, fund codes (UYI, CLF, UYW) included.
ISO_4217_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()
ISO_4217_THREE = "BHD IQD JOD KWD LYD OMR TND".split()
ISO_4217_FOUR = "CLF UYW".split()
#: A sample of two-decimal codes, the ones we sell in first.
ISO_4217_TWO = "INR USD GBP EUR AED SGD AUD CAD CHF".split()


def test_the_table_is_iso_4217_exactly() -> None:
    expected = {**dict.fromkeys(ISO_4217_ZERO, 0), **dict.fromkeys(ISO_4217_THREE, 3),
                **dict.fromkeys(ISO_4217_FOUR, 4)}
    assert dict(EXPONENTS) == expected
    assert DEFAULT_EXPONENT == 2 and all(exponent(code) == 2 for code in ISO_4217_TWO)


@pytest.mark.parametrize("code", ISO_4217_ZERO + ISO_4217_THREE + ISO_4217_FOUR + ISO_4217_TWO)
def test_payglocal_amounts_have_the_iso_number_of_decimals(code: str) -> None:
    """PayGlocal sends decimal strings: a KRW or VND price must not become a hundredth of itself."""
    places = exponent(code)
    text = minor_to_amount(123_456, code)
    assert (len(text.split(".")[1]) if "." in text else 0) == places
    assert amount_to_minor(text, code) == 123_456
    assert amount_to_minor(text, code.lower()) == 123_456


def test_no_adapter_keeps_a_second_exponent_table() -> None:
    """No module under gateways/ but currency.py lists non-two-decimal currency codes in a literal."""
    special = set(EXPONENTS)
    found = []
    for path in GATEWAYS.rglob("*.py"):
        if "simulator" in path.parts or path.name == "currency.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Set, ast.List, ast.Tuple, ast.Dict)):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                codes = {item.value for item in items if isinstance(item, ast.Constant) and item.value in special}
                if codes:
                    found.append(f"{path.relative_to(GATEWAYS)}:{node.lineno} {sorted(codes)}")
    assert found == []
