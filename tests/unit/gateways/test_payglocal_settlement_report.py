"""The report reader's integer arithmetic gives what ``amount_to_minor`` (Decimal) gives, for every amount text,
and refuses what it refuses, with its words."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateways.errors import GatewayPermanent
from gateways.payglocal.mapping import amount_to_minor
from gateways.payglocal.settlement_report import MalformedReport, _minor, load_mapping, read_report

AMOUNTS = st.one_of(
    st.from_regex(r"-{0,2}[0-9]{1,22}(\.[0-9]{0,6})?", fullmatch=True),
    st.text(alphabet="0123456789.-+e, ", max_size=12),
)


def _decimal_way(text: str, currency: str) -> int | str:
    try:
        return amount_to_minor(text.lstrip("-"), currency) * (-1 if text.startswith("-") else 1)
    except GatewayPermanent as exc:
        return str(exc)


@settings(max_examples=600, deadline=None)
@given(text=AMOUNTS, currency=st.sampled_from(["INR", "USD", "JPY", "KWD", "BHD"]))
def test_integer_amounts_are_the_decimal_ones(text, currency):
    from gateways.currency import exponent

    expected = _decimal_way(text, currency)
    try:
        found: int | str = _minor(7, "Gross Amount", text, currency, exponent(currency))
    except MalformedReport as exc:
        assert str(exc) == f"line 7, column 'Gross Amount': {expected}"
        return
    assert found == expected


def test_a_currency_that_is_not_ascii_is_named_at_its_column():
    mapping = load_mapping()
    header = ",".join(f'"{c}"' for c in mapping.columns.values())
    cells = {"currency": "ÄBC", "amount": "10.00", "kind": "SALE", "entity_id": "gl_x", "settled_at": "01/02/2026"}
    row = ",".join(f'"{cells.get(field, "")}"' for field in mapping.columns)
    with pytest.raises(MalformedReport, match=r"line 2, column 'Currency': 'ÄBC' is not an ISO currency"):
        list(read_report(io.StringIO(f"{header}\n{row}\n"), mapping))
