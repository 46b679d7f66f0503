"""Exactly-once crediting under races: every input for one payment at once, on Postgres, many threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.support import balance, inbox_rows, ledger_count, new_order, order_row
from worker.services.callback import verify_payment
from worker.services.inbox import process_inbox_event
from worker.services.intake import store_webhook
from worker.services.poll import reconcile_order
from worker.services.recheck import recheck_order


def test_webhooks_three_times_each_callback_recheck_and_poll_racing_credit_one_order_once(deps, gateway, simulator):
    orders = [new_order(deps, gateway, credits=1_000 + i) for i in range(5)]
    callbacks = {o.id: simulator.sim.pay(o.gateway_order_id, "success", deliver_webhooks=False) for o in orders}
    events = simulator.sim.webhook_events()
    per_order = {"razorpay": 3, "payglocal": 1}[gateway.gateway]  # Razorpay: authorized, captured, order.paid
    assert len(events) == per_order * len(orders)
    start = threading.Barrier(8)

    def race(task):
        start.wait(timeout=30)
        return task()

    tasks = []
    for event in events:
        for _ in range(3):
            tasks.append(lambda e=event: _store_and_process(deps, e))
    for order in orders:
        paid = callbacks[order.id]
        tasks.append(lambda o=order, p=paid: verify_payment(o.id, *gateway.callback(p), deps=deps))
        tasks.append(lambda o=order: recheck_order(o.id, "support:race", deps=deps))
        tasks.append(lambda o=order: reconcile_order(o.id, deps=deps))
    tasks += [lambda: None] * (-len(tasks) % 8)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(race, tasks))
    assert len(results) == len(tasks)

    assert ledger_count(deps) == len(orders)
    assert balance(deps, gateway) == sum(o.credits for o in orders)
    assert all(order_row(deps, o.id).state == "paid" for o in orders)
    webhook_rows = inbox_rows(deps, kind="webhook")
    assert len(webhook_rows) == len(events)  # duplicates deduped on the event id
    assert {row.status for row in webhook_rows} == {"processed"}


def _store_and_process(deps, event):
    stored = store_webhook(event.gateway, event.body, event.headers, deps=deps)
    if stored.enqueue:
        process_inbox_event(stored.inbox_id, deps=deps)
    return stored.status
