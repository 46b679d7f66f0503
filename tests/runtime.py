"""The test run's broker, actors and web app, built explicitly (as an entry point builds its own) and
once per run; every message and request runs with the Deps of the test running now (:data:`CURRENT`).

The broker is built on first use, not at import: a run that needs no Redis never connects to it.
"""

from __future__ import annotations

import os
import uuid
from functools import cache

import dramatiq

from ops.web import create_app
from worker.actors import Actors, declare_actors
from worker.broker import build_broker
from worker.deps import Deps
from worker.settings import Settings

RUN_ID = uuid.uuid4().hex[:10]
REDIS_URL = os.environ.get("RECON_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
#: This run's Redis namespace: the broker's queues, rate limits, breakers and locks live under it.
NAMESPACE = f"recon-test-{RUN_ID}"
#: The Deps of the test that runs now (set by the ``deps`` fixture).
CURRENT: dict[str, Deps] = {}


def current_deps() -> Deps:
    try:
        return CURRENT["deps"]
    except KeyError:
        raise RuntimeError("no test Deps installed: use the deps fixture") from None


@cache
def broker() -> dramatiq.Broker:
    """The run's Redis broker, built as the worker's entry point builds it."""
    return build_broker(Settings(broker_url=REDIS_URL, broker_namespace=NAMESPACE))


@cache
def actors() -> Actors:
    """The actors, declared once on the run's broker."""
    return declare_actors(broker(), current_deps)


#: Signs the console's session cookies in tests (served over plain HTTP, so not HTTPS-only).
CONSOLE_SECRET = "test-console-secret-0123456789"
#: The API for in-process clients (TestClient, schemathesis); ``web_server`` serves the same on a real port.
app = create_app(current_deps, actors, console_secret=CONSOLE_SECRET, console_secure_cookies=False)
