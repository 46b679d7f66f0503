"""PayGlocal settlement reports: PayGlocal has no settlement API (after-capture.md §7), so finance imports the
GCC dashboard's CSV export. Its columns are undocumented: a declared mapping (``settlement_report.toml``) names
them, so a real export is read by editing the mapping, not this code.

A report is read completely or refused: :class:`MalformedReport` names the line and the column."""

from __future__ import annotations

import csv
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from gateways import settlement_lines
from gateways.currency import exponent
from gateways.errors import GatewayPermanent
from gateways.payglocal.mapping import amount_to_minor
from gateways.port import SettlementLine

DEFAULT_MAPPING = Path(__file__).with_name("settlement_report.toml")
REQUIRED = ("entity_id", "kind", "currency", "amount", "settled_at")
OPTIONAL = ("fee", "tax", "net", "settlement_id", "utr", "payment_id", "merchant_txn_id")


class MalformedReport(ValueError):
    """The file is not a report the mapping can read: nothing of it is kept."""


@dataclass(frozen=True, slots=True)
class ReportMapping:
    columns: Mapping[str, str]  #: our field → the report's header
    kinds: Mapping[str, str]  #: the report's transaction type (upper case) → payment | refund | adjustment
    date_formats: tuple[str, ...]
    delimiter: str = ","
    fee_includes_tax: bool = False  #: else the row's fee is its fee column plus its tax column


def load_mapping(path: str | Path | None = None) -> ReportMapping:
    """The mapping at ``path`` (TOML), or the default one. Raises MalformedReport if it lacks a required field."""
    source = Path(path) if path else DEFAULT_MAPPING
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MalformedReport(f"report mapping {source}: {exc}") from None
    columns = data.get("columns", {})
    missing = [name for name in REQUIRED if not columns.get(name)]
    if missing:
        raise MalformedReport(f"report mapping {source} names no column for {missing}")
    return ReportMapping(columns=dict(columns), kinds={k.upper(): v for k, v in data.get("kinds", {}).items()},
                         date_formats=tuple(data.get("dates", {}).get("formats", ["%Y-%m-%d"])),
                         delimiter=data.get("delimiter", ","), fee_includes_tax=bool(data.get("fee_includes_tax")))


def read_report(lines: Iterable[str], mapping: ReportMapping) -> Iterator[SettlementLine]:
    """Each row of a report as a settlement line, in file order. Raises MalformedReport at the first bad row
    (the caller keeps nothing of the file then)."""
    try:
        yield from _rows(lines, mapping)
    except UnicodeDecodeError as exc:
        raise MalformedReport(f"the file is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except csv.Error as exc:
        raise MalformedReport(f"not a readable CSV: {exc}") from None


def _rows(lines: Iterable[str], mapping: ReportMapping) -> Iterator[SettlementLine]:
    reader = csv.reader(lines, delimiter=mapping.delimiter)
    header = [name.strip() for name in next(reader, [])]
    wanted = {field: column for field, column in mapping.columns.items() if field in REQUIRED or column in header}
    absent = [column for field, column in wanted.items() if column not in header]
    if absent:
        raise MalformedReport(f"line 1: the header lacks the columns {absent} (it has {header})")
    last = {name: index for index, name in enumerate(header)}  # a repeated column: its last cell (as a dict)
    read = _LineReader(header, {field: last[column] for field, column in wanted.items()}, wanted, mapping)
    number = 1
    for cells in reader:
        if not cells:
            continue  # a blank line is no row, and no line number
        number += 1
        line = read(number, cells)
        wrong = settlement_lines.problem(line)
        if wrong:
            raise MalformedReport(f"line {number}: {wrong}")
        yield line


#: A plain decimal, read by integer arithmetic; anything else goes through ``amount_to_minor`` (its errors).
_PLAIN_AMOUNT = re.compile(r"^(-?)([0-9]+)(?:\.([0-9]+))?$")


class _LineReader:
    """One row's cells → a settlement line, by column positions found once per file (a million rows are read
    in a minute: positions, not a dict per row; integers, not Decimals; each distinct currency checked once)."""

    def __init__(self, header: list[str], at: Mapping[str, int], columns: Mapping[str, str], mapping: ReportMapping):
        self.header, self.width, self.at, self.columns, self.mapping = header, len(header), at, columns, mapping
        self.places: dict[str, int] = {}

    def __call__(self, number: int, cells: list[str]) -> SettlementLine:
        if len(cells) > self.width:
            raise MalformedReport(f"line {number}: {len(cells)} cells, the header has {self.width}")
        cells = [cell.strip() for cell in cells] + [""] * (self.width - len(cells))
        at, columns = self.at, self.columns

        def cell(field: str) -> str:
            index = at.get(field)
            return cells[index] if index is not None else ""

        def required(field: str) -> str:
            value = cells[at[field]]
            if not value:
                raise MalformedReport(f"line {number}, column {columns[field]!r}: empty")
            return value

        currency = required("currency").upper()
        places = self.places.get(currency)
        if places is None:
            if len(currency) != 3 or not currency.isalpha() or not currency.isascii():
                raise MalformedReport(f"line {number}, column {columns['currency']!r}: {currency!r} is not an ISO "
                                      "currency")
            places = self.places[currency] = exponent(currency)

        def money(field: str, *, needed: bool = False) -> int:
            text = required(field) if needed else cell(field)
            return _minor(number, columns.get(field, field), text, currency, places) if text else 0

        kind = self.mapping.kinds.get(required("kind").upper(), "other")
        if kind == "payment" and required("amount").startswith("-"):
            raise MalformedReport(f"line {number}, column {columns['amount']!r}: a payment of a negative amount")
        amount, fee, tax = abs(money("amount", needed=True)), abs(money("fee")), abs(money("tax"))
        fee = fee if self.mapping.fee_includes_tax else fee + tax
        net = abs(money("net")) if cell("net") else (amount - fee if kind == "payment" else amount)
        credit, debit = (net, 0) if kind == "payment" else (0, net)  # exports sign refunds either way: the kind decides
        return SettlementLine(
            entity_id=required("entity_id"), kind=kind, amount_minor=amount, currency=currency, fee_minor=fee,
            tax_minor=tax, credit_minor=credit, debit_minor=debit,
            settlement_id=cell("settlement_id") or None, utr=cell("utr") or None,
            settled_at=_when(number, required("settled_at"), columns["settled_at"], self.mapping),
            payment_id=cell("payment_id") or None, raw=dict(zip(self.header, cells, strict=True)))


def _minor(number: int, column: str, text: str, currency: str, places: int) -> int:
    """``text`` (major units, maybe signed) in minor units: what ``amount_to_minor`` gives, without its Decimal."""
    plain = _PLAIN_AMOUNT.match(text)
    if plain is not None:
        sign, whole, fraction = plain.groups()
        fraction = (fraction or "").rstrip("0")
        if len(fraction) <= places:
            minor = int(whole) * 10**places + (int(fraction.ljust(places, "0")) if fraction else 0)
            return -minor if sign else minor
    try:
        return amount_to_minor(text.lstrip("-"), currency) * (-1 if text.startswith("-") else 1)
    except GatewayPermanent as exc:
        raise MalformedReport(f"line {number}, column {column!r}: {exc}") from None


def _when(number: int, text: str, column: str, mapping: ReportMapping) -> int:
    found = _parsed_date(text, mapping.date_formats)
    if found is None:
        raise MalformedReport(f"line {number}, column {column!r}: {text!r} is not a date "
                              f"({list(mapping.date_formats)})")
    return found


@lru_cache(maxsize=4_096)
def _parsed_date(text: str, formats: tuple[str, ...]) -> int | None:
    """Once per distinct date of a report (a day's report has a few): strptime was a fifth of an import's CPU."""
    for pattern in formats:
        try:
            return int(datetime.strptime(text, pattern).replace(tzinfo=UTC).timestamp())
        except ValueError:
            continue
    return None
