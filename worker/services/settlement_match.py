"""Matching settled transactions to what we hold, set-wise in SQL (a million rows are one statement, not a
million round trips), by the rules of :mod:`worker.domain.settlement`. Rows in a good bucket stay; the others
are matched again every run, since a recheck, a refund or a dispute here can move them. An order whose money
settled without a credit is rechecked once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select, text

from db.models import LedgerEntry, SettlementRow
from worker.deps import Deps
from worker.domain.settlement import REOPENED, Bucket
from worker.logging import get_logger

_REOPENED = ", ".join(f"'{bucket.value}'" for bucket in sorted(REOPENED))

#: Payments' processed refunds, summed (MATCH's CTE; ``insert_matched`` looks them up row by row instead).
_REFUNDED = """refunded AS (
    SELECT gateway, gateway_payment_id, SUM(amount_minor) AS minor FROM refunds WHERE state = 'processed'
    GROUP BY gateway, gateway_payment_id
)"""
#: A row ``s``'s bucket and order (the CASE is the domain module's rules, in order), from :func:`_joins`.
_DECIDE = """CASE
        WHEN s.kind = 'payment' THEN CASE
            WHEN p.id IS NULL AND o.id IS NULL THEN 'unmatched'
            WHEN p.id IS NOT NULL AND (p.amount_minor <> s.amount_minor OR p.currency <> s.currency)
                THEN 'amount_mismatch'
            WHEN g.id IS NOT NULL THEN 'settled_credited'
            WHEN p.id IS NOT NULL AND COALESCE(r.minor, 0) >= p.amount_minor THEN 'settled_refunded'
            ELSE 'settled_not_credited' END
        WHEN s.kind = 'refund' THEN CASE
            WHEN rf.state = 'processed' AND rf.amount_minor = s.amount_minor THEN 'deduction_reversed'
            WHEN rf.state = 'processed' THEN 'amount_mismatch'
            WHEN rf.id IS NOT NULL OR pp.id IS NOT NULL THEN 'deduction_not_reversed'
            ELSE 'unmatched' END
        WHEN s.kind = 'adjustment' AND s.dispute_id IS NOT NULL THEN CASE
            WHEN d.id IS NOT NULL AND (d.held OR d.state = 'lost') AND s.amount_minor <= d.amount_minor
                THEN 'deduction_reversed'
            WHEN d.id IS NOT NULL AND (d.held OR d.state = 'lost') THEN 'amount_mismatch'
            WHEN d.id IS NOT NULL OR pp.id IS NOT NULL THEN 'deduction_not_reversed'
            ELSE 'unmatched' END
        ELSE 'unmatched' END AS bucket,
        COALESCE(p.order_id, o.id, rf.order_id, d.order_id, pp.order_id) AS order_id"""
#: A payment row's processed refunds: from the :data:`_REFUNDED` CTE (set-wise), or looked up row by row.
_REFUNDED_JOIN = ("refunded r", "s.kind = 'payment' AND r.gateway = s.gateway AND r.gateway_payment_id = s.entity_id")
#: (Looked up only for a payment not credited: the rules ask about refunds only then.)
_REFUNDED_LOOKUP = ("LATERAL (SELECT SUM(amount_minor) AS minor FROM refunds WHERE g.id IS NULL "
                    "AND state = 'processed' AND gateway = s.gateway AND gateway_payment_id = s.entity_id) r",
                    "s.kind = 'payment'")


def _joins(refunded: tuple[str, str], money_in: bool | None = None) -> str:
    """What a row ``s`` is matched against. ``money_in`` True or False: the rows are all payments, or none is;
    the joins the other kind needs are then ``ON false`` (the planner drops them: no lookup at all)."""
    payment = [("gateway_payments p", "s.kind = 'payment' AND p.gateway = s.gateway "
                                      "AND p.gateway_payment_id = s.entity_id"),
               ("orders o", "s.kind = 'payment' AND p.id IS NULL AND o.gateway = s.gateway "
                            "AND o.gateway_order_id = s.gateway_order_id"),
               ("ledger_entries g", "s.kind = 'payment' AND g.entry = 'grant' AND g.gateway = s.gateway "
                                    "AND g.gateway_payment_id = s.entity_id"),
               refunded]
    other = [("refunds rf", "s.kind = 'refund' AND rf.gateway = s.gateway AND rf.gateway_refund_id = s.entity_id"),
             ("disputes d", "s.kind = 'adjustment' AND d.gateway = s.gateway AND d.gateway_dispute_id = s.dispute_id"),
             ("gateway_payments pp", "s.kind <> 'payment' AND pp.gateway = s.gateway "
                                     "AND pp.gateway_payment_id = s.payment_id")]
    joins = [(source, "false" if money_in is False else on) for source, on in payment]
    joins += [(source, "false" if money_in is True else on) for source, on in other]
    return "\n    ".join(f"LEFT JOIN {source} ON {on}" for source, on in joins)


#: One statement: every new or reopened row's bucket and order from its joins.
MATCH = text(f"""
WITH {_REFUNDED}, facts AS (
    SELECT s.id, {_DECIDE}
    FROM settlement_rows s
    {_joins(_REFUNDED_JOIN)}
    WHERE s.bucket IS NULL OR s.bucket IN ({_REOPENED})
)
UPDATE settlement_rows SET bucket = facts.bucket, order_id = facts.order_id, matched_at = :now
FROM facts WHERE settlement_rows.id = facts.id
""")


def insert_matched(stage: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    """Statements inserting the rows of the table ``stage`` (``columns`` and a ``line``) not held yet, already
    matched by MATCH's own rules: each row written once, not inserted and then rewritten. Meant for a chunk of
    rows, each matched by index lookups (run with hash and merge joins off: a hash of a whole table per chunk is
    what the planner would pick, and what a million-row report cannot afford). One statement for money in, one
    for the rest: the planner then knows each row's kind and looks up only what that kind is matched against
    (a row's repeats have its kind: the first in the file is kept). psycopg parameter ``now``."""
    return tuple(f"INSERT INTO settlement_rows ({', '.join(columns)}, bucket, order_id, matched_at) "
                 f"SELECT {', '.join('s.' + c for c in columns)}, {_DECIDE}, %(now)s FROM {stage} s "
                 f"{_joins(_REFUNDED_LOOKUP, money_in)} WHERE {where} ORDER BY s.line "
                 "ON CONFLICT (gateway, kind, entity_id) DO NOTHING"
                 for money_in, where in ((True, "s.kind = 'payment'"), (False, "s.kind <> 'payment'")))


_TO_RECHECK = (select(SettlementRow.id, SettlementRow.order_id)
               .where(SettlementRow.bucket == Bucket.SETTLED_NOT_CREDITED.value,
                      SettlementRow.recheck_requested_at.is_(None), SettlementRow.order_id.is_not(None)))


@dataclass(frozen=True, slots=True)
class Matched:
    rows: int  #: rows (re)matched this run
    rechecks: list[str]  #: orders sent for a recheck (settled, not credited)


def match(*, deps: Deps, recheck: Callable[[str], None] | None = None) -> Matched:
    """Match every new or unsettled row; then ask for a recheck of each order whose money settled uncredited
    (once per row: ``recheck_requested_at``). ``recheck`` enqueues it; None: only marked, for the caller."""
    with deps.unit() as uow:
        rows = uow.session.execute(MATCH, {"now": uow.now}).rowcount
        due = uow.session.execute(_TO_RECHECK.with_for_update()).all()
        if due:
            uow.session.execute(SettlementRow.__table__.update()
                                .where(SettlementRow.id.in_([row_id for row_id, _ in due]))
                                .values(recheck_requested_at=uow.now))
        uow.commit()
    orders = list(dict.fromkeys(order_id for _, order_id in due))
    for order_id in orders:
        get_logger(order_id=order_id).warning("settled_not_credited", action="recheck")
        if recheck is not None:
            recheck(order_id)
    return Matched(rows, orders)


def expected_since(gateway: str, *, deps: Deps, session) -> datetime | None:
    """Credits from when on must appear in a settlement: the setting, or the earliest payment a row matched."""
    since = deps.settings.settlement_since
    if since is not None:
        return since if since.tzinfo else since.replace(tzinfo=UTC)
    return session.execute(
        select(func.min(LedgerEntry.created_at)).join(SettlementRow, and_(
            SettlementRow.gateway == LedgerEntry.gateway, SettlementRow.kind == "payment",
            SettlementRow.entity_id == LedgerEntry.gateway_payment_id))
        .where(LedgerEntry.entry == "grant", LedgerEntry.gateway == gateway,
               SettlementRow.bucket == Bucket.SETTLED_CREDITED.value)).scalar_one_or_none()


def unsettled_grants(query, gateway: str, since: datetime, cutoff: datetime):
    """``query`` over the grants of ``gateway`` credited from ``since`` until ``cutoff`` whose payment no
    settlement row names (the report lists them, ``/metrics`` counts them)."""
    settled = exists().where(SettlementRow.gateway == LedgerEntry.gateway, SettlementRow.kind == "payment",
                             SettlementRow.entity_id == LedgerEntry.gateway_payment_id)
    return query.where(LedgerEntry.entry == "grant", LedgerEntry.gateway == gateway, LedgerEntry.created_at >= since,
                       LedgerEntry.created_at < cutoff, ~settled)


def credited_not_settled(*, deps: Deps, gateway: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Credited payments that no settlement row names though the gateway's delay and the slack have passed."""
    found: list[dict[str, Any]] = []
    now = deps.clock.now()
    with deps.sessions() as session:
        for name, delay_s in deps.settings.settlement_expected_s.items():
            if name not in deps.gateways or gateway not in (None, name):
                continue
            since = expected_since(name, deps=deps, session=session)
            if since is None:
                continue  # nothing of this gateway settled yet: its reports are not in
            cutoff = now - timedelta(seconds=delay_s + deps.settings.settlement_slack_s)
            query = unsettled_grants(select(LedgerEntry), name, since, cutoff).order_by(LedgerEntry.created_at)
            query = query.limit(limit)
            found += [{"gateway": name, "order_id": g.order_id, "payment_id": g.gateway_payment_id,
                       "amount_minor": g.amount_minor, "currency": g.currency, "credited_at": g.created_at,
                       "expected_by": g.created_at + timedelta(seconds=delay_s)}
                      for g in session.execute(query).scalars()]
    return found
