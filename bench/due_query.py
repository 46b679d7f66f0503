"""Benchmark 4: does one sweep round's claim stay cheap as the orders table grows?

The same scratch database is filled twice with ``generate_series``: first 10,000 orders, then up to
1,000,000, with the same mix: 94 % paid (``next_check_at`` NULL: outside the partial index
``ix_orders_due``), 5 % failed and still watched for late authorisations (next check up to 6 h
ahead: inside the index, not due), 1 % open and due now. After ``VACUUM ANALYZE``, the real
``db.queries.claim_due_orders`` (``SELECT … FOR UPDATE SKIP LOCKED`` + ``UPDATE``) runs with the
round budget of ``worker.services.sweep.round_budget`` for the configured rate, in a transaction that
is rolled back, several times; the median is compared. Both claims take the same number of rows
(the round budget, or the 1 % that is due among 10,000 orders if that is fewer: the claim's cost is
linear in the rows it claims, which is not what this benchmark asks about); the 1,000,000 table is
also measured at the full round budget, for information. Goal: 1,000,000 within 2 × of 10,000.
``EXPLAIN (ANALYZE, BUFFERS)`` of the claim's SELECT is kept for the report.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta

from sqlalchemy import create_engine, select, text
from sqlalchemy.dialects import postgresql

from bench import harness
from bench.harness import log

FILL = text("""
INSERT INTO orders (id, organisation_id, requested_by, plan, credits, currency, subtotal_minor, tax_rate_bp,
                    tax_minor, amount_minor, gateway, gateway_order_id, manual_capture, state, state_reason,
                    refund_policy_accepted_at, created_at, updated_at, paid_at, next_check_at, check_count)
SELECT 'ord_' || lpad(to_hex(g), 20, '0'),
       'bench-org-' || lpad((g % 10)::text, 4, '0'), 'bench-org-' || lpad((g % 10)::text, 4, '0') || '-admin',
       'payg', 1000, 'INR', 200000, 1800, 36000, 236000, 'razorpay', 'order_' || lpad(to_hex(g), 14, '0'), false,
       CASE WHEN g % 100 = 0 THEN 'pending' WHEN g % 100 <= 5 THEN 'failed' ELSE 'paid' END,
       CASE WHEN g % 100 = 0 THEN NULL WHEN g % 100 <= 5 THEN 'attempts_failed' ELSE 'captured' END,
       now() - (g % 432000) * interval '1 second', now() - (g % 432000) * interval '1 second', now(),
       CASE WHEN g % 100 > 5 THEN now() END,
       CASE WHEN g % 100 = 0 THEN now() - (g % 600) * interval '1 second'
            WHEN g % 100 <= 5 THEN now() + (1 + g % 21600) * interval '1 second' END,
       0
FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
""")


def _claim_statement(now, limit):
    from db.models import Order

    return (select(Order.id).where(Order.next_check_at <= now, Order.gateway == "razorpay")
            .order_by(Order.next_check_at).limit(limit).with_for_update(skip_locked=True))


def measure(deps, *, limit: int, repeats: int) -> dict:
    """Time the real claim (rolled back each time) and EXPLAIN its SELECT."""
    from db import queries

    timings, claimed = [], 0
    for _ in range(repeats):
        session = deps.sessions()
        try:
            now = deps.clock.now()
            started = time.perf_counter()
            ids = queries.claim_due_orders(session, gateway="razorpay", now=now, limit=limit,
                                           lease_until=now + timedelta(seconds=120))
            timings.append(time.perf_counter() - started)
            claimed = len(ids)
        finally:
            session.rollback()
            session.close()
    now = deps.clock.now()
    sql = str(_claim_statement(now, limit).compile(dialect=postgresql.dialect(),
                                                   compile_kwargs={"literal_binds": True}))
    with deps.engine.connect() as connection:
        plan = [row[0] for row in connection.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql))]
        connection.rollback()
        stats = connection.execute(text(
            "SELECT pg_size_pretty(pg_relation_size('ix_orders_due')),"
            " pg_size_pretty(pg_total_relation_size('orders')),"
            " (SELECT count(*) FROM orders), (SELECT count(*) FROM orders WHERE next_check_at IS NOT NULL),"
            " (SELECT count(*) FROM orders WHERE next_check_at <= now())")).one()
    return {"orders": stats[2], "in_due_index": stats[3], "due": stats[4], "index_size": stats[0],
            "table_size": stats[1], "claimed": claimed, "limit": limit,
            "median_ms": round(statistics.median(timings) * 1000, 2),
            "p90_ms": round(harness.percentile(timings, 90) * 1000, 2), "repeats": repeats,
            "explain": plan, "sql": sql}


def fill(engine, first: int, last: int, step: int = 250_000) -> float:
    started = time.monotonic()
    for start in range(first, last + 1, step):
        with engine.begin() as connection:
            connection.execute(FILL, {"first": start, "last": min(last, start + step - 1)})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE orders"))
    return time.monotonic() - started


def run(*, small: int, large: int, rate: int, repeats: int, keep_db=None) -> dict:
    """``keep_db(url)``, when given, is called with the filled 1,000,000-order database before it is dropped."""
    from worker.deps import build_deps
    from worker.services.sweep import round_budget
    from worker.settings import Settings

    result: dict = {}
    with harness.scratch_db("dueq") as db_url:
        engine = create_engine(db_url, pool_size=2)
        harness.seed_organisations(engine, 10)
        settings = Settings(database_url=db_url, broker_url="stub://", gateway_rate_per_s={"razorpay": rate})
        deps = build_deps(settings)
        budget = round_budget(deps, "razorpay")
        # The same claim size on both tables: the round budget, or all that is due among the small set if
        # that is fewer, so the comparison isolates the table's size from the number of rows claimed.
        limit = min(budget, max(1, small // 100))
        log(f"due query: {small:,} orders")
        result["fill_small_s"] = round(fill(engine, 1, small), 1)
        result["small"] = measure(deps, limit=limit, repeats=repeats)
        log(f"due query: growing to {large:,} orders")
        result["fill_large_s"] = round(fill(engine, small + 1, large), 1)
        result["large"] = measure(deps, limit=limit, repeats=repeats)
        result["large_full_budget"] = measure(deps, limit=budget, repeats=repeats)
        result["round_budget"] = budget
        deps.engine.dispose()
        engine.dispose()
        if keep_db is not None:
            result["memory"] = keep_db(db_url)
    small_ms, large_ms = result["small"]["median_ms"], result["large"]["median_ms"]
    ratio = large_ms / small_ms if small_ms else float("inf")
    result["goals"] = [{
        "benchmark": "4 due-orders claim at scale",
        "goal": f"one round's claim ({limit} rows) on {large:,} orders within 2 × of {small:,}",
        "measured": f"{large_ms} ms median on {result['large']['orders']:,} orders "
                    f"({result['large']['claimed']} claimed)",
        "baseline": f"{small_ms} ms median on {result['small']['orders']:,} orders "
                    f"({result['small']['claimed']} claimed)",
        "ratio": round(ratio, 2), "target": "≤ 2", "met": ratio <= 2,
    }]
    return result
