"""The due-orders query reads the partial index on ``next_check_at``: its cost follows the due orders,
not the table (the benchmark runs the same at 1,000,000 orders)."""

from __future__ import annotations

from sqlalchemy import text

DUE_QUERY = """EXPLAIN (FORMAT JSON) SELECT id FROM orders WHERE next_check_at <= now() AND gateway = 'razorpay'
               ORDER BY next_check_at LIMIT 200 FOR UPDATE SKIP LOCKED"""


def fill_orders(connection, total: int, due: int) -> None:
    connection.execute(text("""
        INSERT INTO orders (id, organisation_id, requested_by, plan, credits, currency, subtotal_minor, tax_rate_bp,
                            tax_minor, amount_minor, gateway, gateway_order_id, manual_capture, state,
                            refund_policy_accepted_at, created_at, updated_at, check_count, next_check_at)
        SELECT 'ord_' || lpad(n::text, 20, '0'), 'org-in', 'admin-1', 'payg', 1000, 'INR', 200000, 1800, 36000,
               236000, 'razorpay', 'order_' || n, false,
               CASE WHEN n <= :due THEN 'pending' ELSE 'paid' END, now(), now(), now(), 0,
               CASE WHEN n <= :due THEN now() - interval '1 minute' ELSE NULL END
        FROM generate_series(1, :total) AS n"""), {"total": total, "due": due})
    connection.execute(text("ANALYZE orders"))


def plan_nodes(plan: dict) -> list[dict]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


def test_the_due_orders_query_uses_the_partial_index_on_200k_orders(deps, org):
    with deps.engine.begin() as connection:
        fill_orders(connection, total=200_000, due=2_000)
        [[explained]] = connection.execute(text(DUE_QUERY)).all()
    nodes = plan_nodes(explained[0]["Plan"])
    scans = [n for n in nodes if "Scan" in n["Node Type"]]
    assert [n.get("Index Name") for n in scans] == ["ix_orders_due"], scans
    assert all(n["Node Type"] != "Seq Scan" for n in nodes)
