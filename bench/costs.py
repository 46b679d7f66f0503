"""What one credited order costs on the webhook path, item by item, measured in this run (part of ``profile``).

Benchmark 1 gives the totals; this says what they are made of, so that a missed goal names its limit:

- **statements**: SQL statements and commits the service sends per order, counted with SQLAlchemy's
  ``before_cursor_execute`` event on the in-process path (``store_webhook`` then ``process_inbox_event``
  per webhook, the low-load order; and all three stored before the first is processed, the batched one);
- **per statement**: CPU of one primary-key read of an order through the ORM (the service's
  ``db.queries.get_order``) against the same read on a bare psycopg connection (the floor's way), and
  the same for one inbox insert (``queries.insert_ignore`` against ``INSERT … ON CONFLICT`` on psycopg);
- **per request**: FastAPI's CPU for one webhook-shaped request against a bare ASGI callable (in-process);
- **per message**: Dramatiq's own CPU for one message of a no-op actor on the run's Redis: ``send``
  (what ``recon web`` pays per webhook) and consume + ack with Dramatiq's default middleware (what a
  worker pays before our code runs).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

import psycopg
from sqlalchemy import event

from bench import harness


def _cpu_ms_per_call(fn, calls: int) -> float:
    fn()
    started = time.process_time()
    for _ in range(calls):
        fn()
    return round((time.process_time() - started) * 1000 / calls, 4)


def statements_per_order(db_url: str, orders: int = 40) -> dict:
    from bench.profile import _webhook_setup
    from worker.services import inbox, intake

    engine, deps, events = _webhook_setup(2 * orders, db_url)
    counts: Counter = Counter()
    where = ["web"]
    event.listen(deps.engine, "before_cursor_execute", lambda *a: counts.update([f"{where[0]} statements"]))
    event.listen(deps.engine, "commit", lambda *a: counts.update([f"{where[0]} commits"]))

    def store(e):
        where[0] = "web"
        return intake.store_webhook("razorpay", e.body, dict(e.headers), deps=deps)

    def process(stored):
        where[0] = "worker"
        inbox.process_inbox_event(stored.inbox_id, deps=deps)

    sequential, batched = events[: 3 * orders], events[3 * orders:]
    for e in sequential:  # low load: each webhook applied before the next arrives
        process(store(e))
    one_by_one = {k: round(v / orders, 1) for k, v in counts.items()}
    counts.clear()
    for i in range(0, len(batched), 3):  # a backlog: the order's three rows are pending when its first is applied
        for stored in [store(e) for e in batched[i:i + 3]]:
            process(stored)
    together = {k: round(v / orders, 1) for k, v in counts.items()}
    deps.engine.dispose()
    engine.dispose()
    return {"orders_each": orders, "one_by_one": one_by_one, "batched": together}


def per_statement(db_url: str, calls: int = 2000) -> dict:
    from db import queries
    from db.models import InboxEvent
    from db.session import make_engine, make_session_factory

    engine = make_engine(db_url, pool_size=1)
    sessions = make_session_factory(engine)
    raw = psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://"))
    with engine.connect() as c:
        order_id = c.exec_driver_sql("SELECT id FROM orders LIMIT 1").scalar_one()
    session = sessions()
    n = iter(range(10**9))

    def orm_read():
        session.expunge_all()
        queries.get_order(session, order_id)

    def raw_read():
        raw.execute("SELECT * FROM orders WHERE id = %s", (order_id,)).fetchone()

    def orm_insert():
        queries.insert_ignore(session, InboxEvent, {
            "gateway": "razorpay", "kind": "webhook", "event_id": f"bench-orm-{next(n)}", "event_type": "x",
            "headers": {}, "body": b"{}", "attempts": 0, "status": "pending", "received_at": datetime.now(UTC)},
            conflict=["gateway", "event_id"])

    def raw_insert():
        raw.execute("INSERT INTO inbox_events (gateway, kind, event_id, event_type, headers, body, attempts, status, "
                    "received_at) VALUES ('razorpay', 'webhook', %s, 'x', '{}', '{}', 0, 'pending', now()) "
                    "ON CONFLICT (gateway, event_id) DO NOTHING RETURNING id", (f"bench-raw-{next(n)}",)).fetchone()

    try:
        result = {"orm_read_ms": _cpu_ms_per_call(orm_read, calls),
                  "psycopg_read_ms": _cpu_ms_per_call(raw_read, calls),
                  "orm_insert_ms": _cpu_ms_per_call(orm_insert, calls),
                  "psycopg_insert_ms": _cpu_ms_per_call(raw_insert, calls), "calls": calls}
    finally:
        session.rollback()
        session.close()
        raw.rollback()
        raw.close()
        engine.dispose()
    return result


def per_message(redis: harness.RedisTarget, messages: int = 3000) -> dict:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    previous = dramatiq.get_broker()
    broker = RedisBroker(url=redis.url, namespace=f"{redis.namespace}-noop")
    done, seen, lock = threading.Event(), [0], threading.Lock()

    def noop(i: int) -> None:
        with lock:
            seen[0] += 1
            if seen[0] == messages:
                done.set()

    actor = dramatiq.actor(noop, broker=broker, queue_name="bench_noop", actor_name="bench_noop")
    broker.flush_all()
    try:
        started = time.process_time()
        for i in range(messages):
            actor.send(i)
        send_ms = (time.process_time() - started) * 1000 / messages
        worker = dramatiq.Worker(broker, worker_threads=8, worker_timeout=100)
        started = time.process_time()
        worker.start()
        done.wait(120)
        consume_ms = (time.process_time() - started) * 1000 / messages
        worker.stop()
    finally:
        broker.flush_all()
        broker.close()
        dramatiq.set_broker(previous)
    return {"messages": messages, "send_ms": round(send_ms, 3), "consume_ms": round(consume_ms, 3),
            "middleware": [type(m).__name__ for m in broker.middleware]}


def per_request(requests: int = 3000) -> dict:
    """CPU of one webhook-shaped POST (1 kB body, JSON answer) through FastAPI with a blocking handler on its
    thread pool, as ``receive_webhook`` runs ``_store_and_enqueue``, against a bare ASGI callable answering the
    same (the floor's shape); both called in-process, so the HTTP parsing both share is left out."""
    import asyncio

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    body = b"x" * 1000
    app = FastAPI()

    @app.post("/webhooks/{gateway}")
    async def hook(gateway: str, request: Request) -> JSONResponse:
        raw = await request.body()
        size = await run_in_threadpool(len, raw)
        return JSONResponse({"status": "accepted", "size": size})

    async def bare(scope, receive, send) -> None:
        message = await receive()
        answer = b'{"status":"accepted","size":%d}' % len(message["body"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/webhooks/razorpay", "raw_path": b"/webhooks/razorpay", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(_message) -> None:
        return None

    async def measure(target) -> float:
        for _ in range(100):
            await target(dict(scope), receive, send)
        started = time.process_time()
        for _ in range(requests):
            await target(dict(scope), receive, send)
        return round((time.process_time() - started) * 1000 / requests, 4)

    async def both() -> dict:
        return {"fastapi_ms": await measure(app), "bare_asgi_ms": await measure(bare), "requests": requests}

    return asyncio.run(both())


def run(redis: harness.RedisTarget) -> dict:
    with harness.scratch_db("costs") as db_url:
        statements = statements_per_order(db_url)
        statement = per_statement(db_url)
    return {"statements": statements, "per_statement": statement, "per_message": per_message(redis),
            "per_request": per_request()}


if __name__ == "__main__":
    import json

    with harness.private_redis() as target:
        print(json.dumps(run(target), indent=1))
