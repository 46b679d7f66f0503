"""Shared fixtures: a real Postgres database and Redis namespace per test run, the simulator,
the web app on a real port, and Dramatiq workers on the Redis broker.

Each run creates its own database (dropped at the end) and its own Redis namespace (deleted at
the end), so runs never see each other. Without Postgres or Redis the tests that need them are
skipped locally and fail in CI (``CI=true``), as dramatiq's own suite does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dramatiq
import jsonschema
import pytest
import redis
from sqlalchemy import create_engine, text

from ops.serve import ThreadedServer
from simulator import SimulatorConfig, SimulatorServer
from tests import runtime as run
from tests.runtime import CURRENT, NAMESPACE, REDIS_URL, RUN_ID
from tests.support import GATEWAY_ORGS
from worker.actors import Actors
from worker.main import Runtime
from worker.settings import Settings

PG_ADMIN_URL = os.environ.get("RECON_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
API_TOKEN = "test-token-0123456789"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ORDER_EVENT_SCHEMA = jsonschema.Draft202012Validator(json.loads(
    (Path(__file__).resolve().parents[1] / "ops" / "contract" / "order-event.schema.json").read_text()),
    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
TABLES = ("settlement_rows", "settlement_pulls", "settlement_imports",
          "order_requests", "delivery_attempts", "event_deliveries", "order_events", "refunds", "disputes",
          "support_actions", "order_transitions", "inbox_events", "ledger_entries", "gateway_payments", "orders",
          "members", "organisations")


def _unavailable(what: str, exc: Exception):
    if IN_CI:
        pytest.fail(f"{what} is required in CI: {exc}")
    pytest.skip(f"{what} is not reachable: {exc}")


@pytest.fixture(scope="session")
def pg_url():
    """A fresh Postgres database, migrated to head, dropped after the run."""
    name = f"recon_test_{RUN_ID}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001  (any connection error means the service is unavailable)
        _unavailable("PostgreSQL", exc)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    from db.migrate import upgrade

    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001  (any connection error means the service is unavailable)
        _unavailable("Redis", exc)
    yield client
    for key in client.scan_iter(match=f"{NAMESPACE}*", count=500):
        client.delete(key)
    client.close()


#: The simulator's knobs at the start of every test (a test may change them).
DEFAULT_KNOBS = {name: getattr(SimulatorConfig(), name) for name in (
    "latency_ms", "error_rate", "rate_limit_rate", "timeout_rate", "webhook_duplicates", "shuffle_webhooks",
    "drop_webhooks", "auto_capture")}


@pytest.fixture(scope="session")
def simulator():
    with SimulatorServer(SimulatorConfig(seed=11)) as server:
        yield server


@pytest.fixture(scope="session")
def session_broker(redis_client) -> dramatiq.Broker:
    """The run's Redis broker (:func:`tests.runtime.broker`)."""
    return run.broker()


@pytest.fixture(scope="session")
def actors(session_broker) -> Actors:
    """The actors declared on the run's broker; each message runs with the current test's Deps."""
    return run.actors()


@pytest.fixture(scope="session")
def web_server():
    """The API on a real port for the whole run; each request uses the current test's Deps."""
    with ThreadedServer(run.app) as server:
        yield server


def settings_for(pg_url: str, simulator: SimulatorServer, web_url: str, **overrides) -> Settings:
    keys = simulator.sim.payglocal.adapter_kwargs()
    return Settings(database_url=pg_url, broker_url=REDIS_URL, broker_namespace=NAMESPACE,
                    razorpay_base_url=simulator.base_url,
                    razorpay_key_id=simulator.config.key_id, razorpay_key_secret=simulator.config.key_secret,
                    razorpay_webhook_secret=simulator.config.webhook_secret,
                    payglocal_base_url=simulator.base_url, payglocal_merchant_id=keys["merchant_id"],
                    payglocal_private_key_pem=keys["private_key_pem"], payglocal_private_kid=keys["private_kid"],
                    payglocal_public_keys=keys["payglocal_public_keys"],
                    payglocal_public_kid=keys["payglocal_public_kid"],
                    payglocal_callback_url=f"{web_url}/webhooks/payglocal",
                    api_tokens={"tests": API_TOKEN, "tests-previous": "rotating-out-token"}, **overrides)


@pytest.fixture
def deps(pg_url, simulator, redis_client, web_server):
    """Deps on the run's Postgres database and the simulator; tables emptied after each test."""
    from worker.deps import build_deps

    simulator.sim.reset()
    simulator.sim.set_knobs(**DEFAULT_KNOBS)
    built = CURRENT["deps"] = build_deps(settings_for(pg_url, simulator, web_server.base_url))
    yield built
    CURRENT.pop("deps", None)
    _forget_queued_markers(redis_client)
    with built.engine.begin() as connection:
        written = connection.execute(text("SELECT payload FROM order_events")).scalars().all()
        connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    for payload in written:  # every event any test made keeps the published contract
        ORDER_EVENT_SCHEMA.validate(payload)
    built.engine.dispose()


def _forget_queued_markers(client) -> None:
    """Webhook coalescing's "message queued" markers outlive a flushed queue (by design, until they expire):
    a test's must not hold back the next test's messages about a payment of the same (simulated) id."""
    for key in client.scan_iter(match=f"{NAMESPACE}:queued:*", count=500):
        client.delete(key)


@pytest.fixture
def broker(redis_client, session_broker, actors):
    session_broker.flush_all()
    _forget_queued_markers(redis_client)
    yield session_broker
    session_broker.flush_all()
    _forget_queued_markers(redis_client)


@pytest.fixture
def runtime(deps, session_broker, actors) -> Runtime:
    """What an entry point would have built, on the current test's Deps (for the CLI: ``obj=runtime``)."""
    return Runtime(deps.settings, session_broker, deps, actors)


@pytest.fixture
def worker(broker, deps):
    """An in-process Dramatiq worker consuming the Redis broker."""
    running = dramatiq.Worker(broker, worker_threads=4, worker_timeout=50)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def web(deps, simulator, web_server):
    """The API on a real port; the simulator sends its webhooks (and PayGlocal's callbacks) there."""
    simulator.sim.set_knobs(webhook_url=f"{web_server.base_url}/webhooks/razorpay")
    yield web_server
    simulator.sim.set_knobs(webhook_url=None)


@pytest.fixture
def org(deps):
    """An Indian organisation (Razorpay) with an admin and an operator, and a US one (PayGlocal)."""
    from worker.services.organisations import add_member, create_organisation

    create_organisation("org-in", "Acme India", "IN", deps=deps)
    add_member("admin-1", "org-in", "admin@acme.example", "admin", deps=deps)
    add_member("operator-1", "org-in", "ops@acme.example", "operator", deps=deps)
    create_organisation("org-us", "Acme US", "US", deps=deps)
    add_member("admin-us", "org-us", "admin@acme-us.example", "admin", deps=deps)
    return "org-in"


@pytest.fixture(params=["razorpay", "payglocal"])
def gateway(request, org):
    """Run the test once per gateway: the organisation whose region routes to it."""
    return GATEWAY_ORGS[request.param]
