"""The floor of benchmark 1: the least work with the service's guarantees, written straight on the libraries.

Same wire as ``recon web`` + ``dramatiq worker.main:start``, nothing else:

- **web** (this module's ``app``, raw ASGI served by uvicorn with ``recon web``'s process layout): read
  the body, check ``X-Razorpay-Signature`` (HMAC-SHA256 of the raw bytes with the webhook secret), one
  ``INSERT … ON CONFLICT (event_id) DO NOTHING RETURNING id`` committed (autocommit) through a
  ``psycopg_pool.AsyncConnectionPool``, and when a row was inserted one ``RPUSH`` of its id to Redis;
  then 200. The body is parsed once, here, into the columns the worker needs.
- **workers** (``bench/floor_worker.py``, two processes): per event one transaction that locks the
  inbox row and the order (``SELECT … FOR UPDATE``), upserts the payment, on a capture of the right
  amount inserts the ledger row (unique per order) and adds the credits to the organisation's
  balance, and marks the inbox row processed.

Its own scratch database with the minimal schema below, on the same Postgres server; the Redis list
lives in the run's private Redis. What it leaves out is listed in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

#: The whole schema of the floor.
SCHEMA = """
CREATE TABLE organisations (id text PRIMARY KEY, credit_balance bigint NOT NULL DEFAULT 0);
CREATE TABLE orders (
    id text PRIMARY KEY,
    gateway_order_id text NOT NULL UNIQUE,
    organisation_id text NOT NULL REFERENCES organisations,
    credits bigint NOT NULL,
    amount_minor bigint NOT NULL,
    currency text NOT NULL,
    state text NOT NULL DEFAULT 'created'
);
CREATE TABLE inbox (
    id bigserial PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    event_type text NOT NULL,
    gateway_order_id text NOT NULL,
    payment_id text NOT NULL,
    payment_status text NOT NULL,
    amount_minor bigint NOT NULL,
    currency text NOT NULL,
    body bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
CREATE TABLE payments (
    id text PRIMARY KEY,
    order_id text NOT NULL REFERENCES orders,
    status text NOT NULL,
    amount_minor bigint NOT NULL
);
CREATE TABLE ledger (
    id bigserial PRIMARY KEY,
    order_id text NOT NULL UNIQUE REFERENCES orders,
    organisation_id text NOT NULL REFERENCES organisations,
    credits bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""

#: What the floor leaves out that the service must do (rendered in bench/RESULTS.md).
LEAVES_OUT = [
    "the order state machine (created → pending → authorized → paid, refunds, failures, manual capture, "
    "review outcomes): the floor credits on any captured payment of the right amount and knows no other state",
    "ordering and dedupe of stale gateway snapshots (an older event applied after a newer one): the floor only "
    "keeps a captured payment from going back to authorized",
    "refused and unparseable webhooks kept as inbox rows with their reason (bad signature, oversized body, "
    "unsupported content type, unknown order): the floor answers 400 and keeps nothing, and assumes a "
    "well-formed body",
    "a body-size limit, more than one gateway (PayGlocal's JWS), the order lookup by our id in the notes",
    "the capture of authorized payments and the gateway check a callback prompts (follow-ups outside the lock)",
    "the inbox sweep that re-enqueues committed rows whose enqueue was lost (broker down, crash between commit "
    "and push): a floor row whose RPUSH failed waits forever",
    "retries with backoff, the dead-letter queue, message age limits and time limits (Dramatiq middleware), "
    "circuit breakers and the shared gateway rate limits",
    "Prometheus metrics, structured logs, request ids; API auth and the rest of the HTTP API (FastAPI routing, "
    "validation, OpenAPI)",
    "the ORM and unit of work (the floor writes SQL strings on one psycopg connection)",
]

INSERT_INBOX = (b"INSERT INTO inbox (event_id, event_type, gateway_order_id, payment_id, payment_status, "
                b"amount_minor, currency, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                b"ON CONFLICT (event_id) DO NOTHING RETURNING id")


def conninfo(url: str) -> str:
    """A psycopg conninfo from a SQLAlchemy URL (``postgresql+psycopg://…``)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def create_schema(db_url: str) -> None:
    import psycopg

    with psycopg.connect(conninfo(db_url), autocommit=True) as connection:
        connection.execute(SCHEMA)


def seed(db_url: str, organisations: list[str], orders: list[tuple[str, str, str, int, int, str]]) -> None:
    """Organisations (balance 0) and orders ``(id, gateway_order_id, organisation_id, credits, amount, currency)``."""
    import psycopg

    with psycopg.connect(conninfo(db_url)) as connection, connection.cursor() as cursor:
        if organisations:
            with cursor.copy("COPY organisations (id) FROM STDIN") as copy:
                for org in organisations:
                    copy.write_row((org,))
        with cursor.copy("COPY orders (id, gateway_order_id, organisation_id, credits, amount_minor, currency) "
                         "FROM STDIN") as copy:
            for row in orders:
                copy.write_row(row)


# -- web ---------------------------------------------------------------------------------------------
_OK = {"type": "http.response.start", "status": 200,
       "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]}
_OK_BODY = {"type": "http.response.body", "body": b"{}"}


def _response(status: int) -> dict:
    return {"type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]}


class Floor:
    """The ASGI app. Settings from the environment: FLOOR_DATABASE_URL, FLOOR_REDIS_URL, FLOOR_QUEUE,
    FLOOR_WEBHOOK_SECRET, FLOOR_POOL_SIZE."""

    def __init__(self) -> None:
        self.pool = None
        self.redis = None
        self.secret = b""
        self.queue = ""

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                if self.redis is not None:
                    await self.redis.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        import redis.asyncio
        from psycopg_pool import AsyncConnectionPool

        self.secret = os.environ["FLOOR_WEBHOOK_SECRET"].encode()
        self.queue = os.environ.get("FLOOR_QUEUE", "floor:inbox")
        size = int(os.environ.get("FLOOR_POOL_SIZE", "8"))
        self.pool = AsyncConnectionPool(conninfo(os.environ["FLOOR_DATABASE_URL"]), min_size=size, max_size=size,
                                        kwargs={"autocommit": True, "prepare_threshold": 0}, open=False)
        await self.pool.open(wait=True)
        self.redis = redis.asyncio.Redis.from_url(os.environ["FLOOR_REDIS_URL"], max_connections=size)

    async def http(self, scope, receive, send) -> None:
        if scope["method"] != "POST":  # GET /healthz and anything else
            await send(_OK)
            await send(_OK_BODY)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        signature = event_id = None
        for name, value in scope["headers"]:
            if name == b"x-razorpay-signature":
                signature = value
            elif name == b"x-razorpay-event-id":
                event_id = value
        expected = hmac.new(self.secret, body, hashlib.sha256).hexdigest().encode()
        if signature is None or event_id is None or not hmac.compare_digest(expected, signature):
            await send(_response(400))
            await send(_OK_BODY)
            return
        event = json.loads(body)
        payment = event["payload"]["payment"]["entity"]
        async with self.pool.connection() as connection:
            cursor = await connection.execute(INSERT_INBOX, (
                event_id.decode(), event["event"], payment["order_id"], payment["id"], payment["status"],
                payment["amount"], payment["currency"], body))
            row = await cursor.fetchone()
        if row is not None:  # new: hand it to a worker (a duplicate was already handed over)
            await self.redis.rpush(self.queue, row[0])
        await send(_OK)
        await send(_OK_BODY)


app = Floor()
