"""PayGlocal settlement reports: PayGlocal has no settlement API (after-capture.md §7), so finance imports the
GCC dashboard's CSV export. Its columns are undocumented: a declared mapping (``settlement_report.toml``) names
them, so a real export is read by editing the mapping, not this code.

A report is read completely or refused: :class:`MalformedReport` names the line and the column."""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from gateways import settlement_lines
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
    reader = csv.DictReader(lines, delimiter=mapping.delimiter)
    header = [name.strip() for name in (reader.fieldnames or [])]
    wanted = {field: column for field, column in mapping.columns.items() if field in REQUIRED or column in header}
    absent = [column for field, column in wanted.items() if column not in header]
    if absent:
        raise MalformedReport(f"line 1: the header lacks the columns {absent} (it has {header})")
    for number, row in enumerate(reader, start=2):
        if None in row:  # more cells than the header has
            raise MalformedReport(f"line {number}: {len(row[None]) + len(header)} cells, the header has {len(header)}")
        line = _line(number, {key.strip(): (value or "").strip() for key, value in row.items()}, wanted, mapping)
        wrong = settlement_lines.problem(line)
        if wrong:
            raise MalformedReport(f"line {number}: {wrong}")
        yield line


def _line(number: int, row: Mapping[str, str], columns: Mapping[str, str], mapping: ReportMapping) -> SettlementLine:
    def cell(field: str) -> str:
        return row.get(columns[field], "") if field in columns else ""

    def required(field: str) -> str:
        value = cell(field)
        if not value:
            raise MalformedReport(f"line {number}, column {columns[field]!r}: empty")
        return value

    currency = required("currency").upper()
    if len(currency) != 3 or not currency.isalpha():
        raise MalformedReport(f"line {number}, column {columns['currency']!r}: {currency!r} is not an ISO currency")

    def money(field: str, *, needed: bool = False) -> int:
        text = required(field) if needed else cell(field)
        if not text:
            return 0
        try:
            return amount_to_minor(text.lstrip("-"), currency) * (-1 if text.startswith("-") else 1)
        except GatewayPermanent as exc:
            raise MalformedReport(f"line {number}, column {columns[field]!r}: {exc}") from None

    kind = mapping.kinds.get(required("kind").upper(), "other")
    if kind == "payment" and required("amount").startswith("-"):
        raise MalformedReport(f"line {number}, column {columns['amount']!r}: a payment of a negative amount")
    amount, fee, tax = abs(money("amount", needed=True)), abs(money("fee")), abs(money("tax"))
    fee = fee if mapping.fee_includes_tax else fee + tax
    net = abs(money("net")) if cell("net") else (amount - fee if kind == "payment" else amount)
    credit, debit = (net, 0) if kind == "payment" else (0, net)  # exports sign refunds either way: the kind decides
    return SettlementLine(
        entity_id=required("entity_id"), kind=kind, amount_minor=amount, currency=currency, fee_minor=fee,
        tax_minor=tax, credit_minor=credit, debit_minor=debit,
        settlement_id=cell("settlement_id") or None, utr=cell("utr") or None,
        settled_at=_when(number, required("settled_at"), columns["settled_at"], mapping),
        payment_id=cell("payment_id") or None, raw=dict(row))


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
