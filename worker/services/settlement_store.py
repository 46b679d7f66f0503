"""Storing settled transactions as received: once per gateway, kind and entity, so re-pulls, overlapping
pages and a report imported twice change nothing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from db.models import SettlementRow
from gateways.port import SettlementLine

COLUMNS = ("gateway", "kind", "entity_id", "amount_minor", "currency", "fee_minor", "tax_minor", "credit_minor",
           "debit_minor", "settlement_id", "utr", "settled_at", "payment_id", "gateway_order_id", "dispute_id",
           "source", "raw", "received_at")


@cache
def _insert() -> TextClause:
    table = SettlementRow.__table__
    return text(f"INSERT INTO settlement_rows ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)}) "
                "ON CONFLICT (gateway, kind, entity_id) DO NOTHING").bindparams(
        *(bindparam(c, type_=table.c[c].type) for c in COLUMNS))


def values(gateway: str, line: SettlementLine, *, source: str, now: datetime) -> dict:
    return {"gateway": gateway, "kind": line.kind, "entity_id": line.entity_id, "amount_minor": line.amount_minor,
            "currency": line.currency, "fee_minor": line.fee_minor, "tax_minor": line.tax_minor,
            "credit_minor": line.credit_minor, "debit_minor": line.debit_minor, "settlement_id": line.settlement_id,
            "utr": line.utr,
            "settled_at": None if line.settled_at is None else datetime.fromtimestamp(line.settled_at, UTC),
            "payment_id": line.payment_id, "gateway_order_id": line.gateway_order_id, "dispute_id": line.dispute_id,
            "source": source, "raw": dict(line.raw), "received_at": now}


def store(session: Session, gateway: str, lines: Iterable[SettlementLine], *, source: str,
          now: datetime) -> tuple[int, int]:
    """Insert the lines not held yet (one statement, many rows); returns (lines given, rows new). A line held
    already (same gateway, kind and entity) is kept as first received."""
    batch = [values(gateway, line, source=source, now=now) for line in lines]
    if not batch:
        return 0, 0
    return len(batch), max(0, session.execute(_insert(), batch).rowcount)
