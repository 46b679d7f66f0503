"""The floor's worker (``python -m bench.floor_worker``; benchmark 1 runs two of these processes).

``FLOOR_WORKER_THREADS`` consumer threads (default 2), each with its own Redis client and psycopg
connection, pop inbox row ids from the Redis list (up to 16 at a time, blocking when it is empty) and
give each event one transaction: lock the inbox row and its order in one
``SELECT … FOR UPDATE``, then, pipelined, upsert the payment (a captured payment never goes back),
on a capture of the order's amount insert the ledger row (unique per order) and add the credits to
the organisation, mark the inbox row processed, commit. Environment as ``bench.floor``.
"""

from __future__ import annotations

import os
import signal
import threading

import psycopg
import redis

from bench.floor import conninfo

LOCK = ("SELECT i.processed_at, i.payment_id, i.payment_status, i.amount_minor, i.currency, "
        "o.id, o.organisation_id, o.credits, o.amount_minor, o.currency, o.state "
        "FROM inbox i JOIN orders o ON o.gateway_order_id = i.gateway_order_id "
        "WHERE i.id = %s FOR UPDATE")
UPSERT_PAYMENT = ("INSERT INTO payments (id, order_id, status, amount_minor) VALUES (%s, %s, %s, %s) "
                  "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, amount_minor = EXCLUDED.amount_minor "
                  "WHERE payments.status <> 'captured'")
CREDIT = ("WITH l AS (INSERT INTO ledger (order_id, organisation_id, credits) VALUES (%s, %s, %s) "
          "ON CONFLICT (order_id) DO NOTHING RETURNING organisation_id, credits), "
          "o AS (UPDATE orders SET state = 'paid' WHERE id = %s AND EXISTS (SELECT FROM l)) "
          "UPDATE organisations g SET credit_balance = g.credit_balance + l.credits FROM l "
          "WHERE g.id = l.organisation_id")
DONE = "UPDATE inbox SET processed_at = now() WHERE id = %s"


def process(connection: psycopg.Connection, inbox_id: int) -> None:
    """One event, one transaction."""
    # Two round trips: BEGIN + the lock; then the writes + COMMIT (pipeline mode queues them).
    with connection.pipeline(), connection.transaction():
        row = connection.execute(LOCK, (inbox_id,)).fetchone()
        if row is None:  # an order we do not know (or no such row): processed, nothing to apply
            connection.execute(DONE, (inbox_id,))
            return
        if row[0] is not None:  # processed already (a redelivery)
            return
        _, payment_id, status, amount, currency, order_id, org, credits, order_amount, order_currency, state = row
        connection.execute(UPSERT_PAYMENT, (payment_id, order_id, status, amount))
        if status == "captured" and state != "paid" and amount == order_amount and currency == order_currency:
            connection.execute(CREDIT, (order_id, org, credits, order_id))
        connection.execute(DONE, (inbox_id,))


def consume(queue: str, stopping) -> None:
    """One consumer: its own Redis client and Postgres connection."""
    client = redis.Redis.from_url(os.environ["FLOOR_REDIS_URL"])
    connection = psycopg.connect(conninfo(os.environ["FLOOR_DATABASE_URL"]), prepare_threshold=0)
    while not stopping.is_set():
        ids = client.lpop(queue, 16)
        if not ids:
            popped = client.blpop([queue], timeout=1)
            if popped is None:
                continue
            ids = [popped[1]]
        for inbox_id in ids:
            process(connection, int(inbox_id))
    connection.close()
    client.close()


def main() -> None:
    queue = os.environ.get("FLOOR_QUEUE", "floor:inbox")
    threads = int(os.environ.get("FLOOR_WORKER_THREADS", "2"))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    consumers = [threading.Thread(target=consume, args=(queue, stopping)) for _ in range(threads)]
    for consumer in consumers:
        consumer.start()
    print("floor worker ready", flush=True)
    for consumer in consumers:
        consumer.join()


if __name__ == "__main__":
    main()
