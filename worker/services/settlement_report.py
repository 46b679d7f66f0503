"""The settlement report finance reads (``recon settlements report``, ``GET /settlements/report``, the
console): per settlement day and currency the gross, fees, tax, refunds, disputes and net, then every bucket
with its rows."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import case, func, select

from db.models import SettlementRow
from worker.deps import Deps
from worker.domain.money import format_major
from worker.domain.settlement import GOOD, Bucket
from worker.services.settlement_match import credited_not_settled

ROW_FIELDS = ("gateway", "kind", "entity_id", "order_id", "amount_minor", "currency", "fee_minor", "tax_minor",
              "credit_minor", "debit_minor", "settlement_id", "utr", "settled_at", "payment_id", "dispute_id")


@dataclass(frozen=True, slots=True)
class DayTotal:
    day: str
    gateway: str
    currency: str
    gross_minor: int  #: payments settled, before fees
    fees_minor: int  #: fees, tax included
    tax_minor: int
    refunds_minor: int
    disputes_minor: int  #: dispute deductions and other adjustments taken
    net_minor: int  #: credits − debits: what the bank should have received
    rows: int


@dataclass
class Report:
    start: date
    end: date
    totals: list[DayTotal]
    buckets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def attention(self) -> dict[str, int]:
        """Rows per bucket that needs a person."""
        return {bucket: len(rows) for bucket, rows in self.buckets.items() if rows and bucket not in GOOD}


def _day(deps: Deps):
    column = SettlementRow.settled_at
    if deps.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


def report(*, deps: Deps, start: date, end: date, gateway: str | None = None,
           rows_per_bucket: int | None = 1_000) -> Report:
    """Settlements from ``start`` to ``end`` (inclusive, UTC days of ``settled_at``)."""
    lower = datetime.combine(start, time.min, UTC)
    upper = datetime.combine(end + timedelta(days=1), time.min, UTC)
    window = [SettlementRow.settled_at >= lower, SettlementRow.settled_at < upper]
    if gateway:
        window.append(SettlementRow.gateway == gateway)
    day = _day(deps).label("day")

    def total(kind: str | None, column) -> Any:
        picked = column if kind is None else case((SettlementRow.kind == kind, column), else_=0)
        return func.coalesce(func.sum(picked), 0)

    query = (select(day, SettlementRow.gateway, SettlementRow.currency,
                    total("payment", SettlementRow.amount_minor), total(None, SettlementRow.fee_minor),
                    total(None, SettlementRow.tax_minor), total("refund", SettlementRow.debit_minor),
                    total("adjustment", SettlementRow.debit_minor),
                    total(None, SettlementRow.credit_minor) - total(None, SettlementRow.debit_minor), func.count())
             .where(*window).group_by(day, SettlementRow.gateway, SettlementRow.currency)
             .order_by(day, SettlementRow.gateway, SettlementRow.currency))
    buckets: dict[str, list[dict[str, Any]]] = {bucket.value: [] for bucket in Bucket}
    with deps.sessions() as session:
        totals = [DayTotal(day, gateway_name, currency, *(int(v) for v in sums))  # SUM is NUMERIC on Postgres
                  for day, gateway_name, currency, *sums in session.execute(query).all()]
        for bucket in Bucket:
            if bucket is Bucket.CREDITED_NOT_SETTLED:
                continue
            rows = session.execute(select(SettlementRow).where(*window, SettlementRow.bucket == bucket.value)
                                   .order_by(SettlementRow.settled_at, SettlementRow.id).limit(rows_per_bucket))
            buckets[bucket.value] = [{name: getattr(row, name) for name in ROW_FIELDS} for row in rows.scalars()]
    buckets[Bucket.CREDITED_NOT_SETTLED.value] = credited_not_settled(deps=deps, gateway=gateway,
                                                                      limit=rows_per_bucket)
    return Report(start, end, totals, buckets)


CSV_COLUMNS = ("section", "day", "gateway", "currency", "bucket", "kind", "entity_id", "order_id", "settlement_id",
               "utr", "settled_at", "gross", "fees", "tax", "refunds", "disputes", "net", "rows")


def as_json(found: Report) -> dict[str, Any]:
    """The report as JSON: amounts in integer minor units, times in ISO 8601."""
    def plain(row: dict[str, Any]) -> dict[str, Any]:
        return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in row.items()}

    return {"from": found.start.isoformat(), "to": found.end.isoformat(),
            "totals": [_total_dict(total) for total in found.totals],
            "attention": found.attention(),
            "buckets": {bucket: [plain(row) for row in rows] for bucket, rows in found.buckets.items()}}


def _total_dict(total: DayTotal) -> dict[str, Any]:
    return {name: getattr(total, name) for name in DayTotal.__slots__}


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str | None) -> str:
    """Text from a gateway, made inert for spreadsheets: a cell starting like a formula gets a leading quote."""
    text = text or ""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def as_csv(found: Report) -> str:
    """One CSV an accountant can open: a ``total`` line per day, gateway and currency, then one line per bucket
    row. Amounts in major units ("1180.00") of the line's currency; fees include tax."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in found.totals:
        money = [format_major(value, t.currency) for value in (t.gross_minor, t.fees_minor, t.tax_minor,
                                                                t.refunds_minor, t.disputes_minor, t.net_minor)]
        writer.writerow(["total", t.day, t.gateway, t.currency, "", "", "", "", "", "", "", *money, t.rows])
    for bucket, rows in found.buckets.items():
        for row in rows:
            currency = row["currency"]
            if bucket == Bucket.CREDITED_NOT_SETTLED.value:
                writer.writerow(["bucket", "", row["gateway"], currency, bucket, "payment", _cell(row["payment_id"]),
                                 row["order_id"], "", "", "", format_major(row["amount_minor"], currency),
                                 "", "", "", "", "", 1])
                continue
            net = row["credit_minor"] - row["debit_minor"]
            writer.writerow(["bucket", row["settled_at"].date().isoformat() if row["settled_at"] else "",
                             row["gateway"], currency, bucket, row["kind"], _cell(row["entity_id"]),
                             row["order_id"] or "", _cell(row["settlement_id"]), _cell(row["utr"]),
                             row["settled_at"].isoformat() if row["settled_at"] else "",
                             format_major(row["amount_minor"], currency), format_major(row["fee_minor"], currency),
                             format_major(row["tax_minor"], currency),
                             format_major(row["debit_minor"], currency) if row["kind"] == "refund" else "",
                             format_major(row["debit_minor"], currency) if row["kind"] == "adjustment" else "",
                             format_major(net, currency), 1])
    return out.getvalue()
