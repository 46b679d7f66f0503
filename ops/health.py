"""Readiness checks: can this process reach the database and the broker?"""

from __future__ import annotations

from sqlalchemy import text

from worker.deps import Deps


def readiness(deps: Deps) -> dict[str, str]:
    checks = {}
    try:
        with deps.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001  (readiness reports any failure as not ready)
        checks["database"] = f"error: {type(exc).__name__}"
    checks["broker"] = _broker(deps)
    return checks


def _broker(deps: Deps) -> str:
    url = deps.settings.broker_url
    try:
        if url.startswith(("redis://", "rediss://")):
            deps.coordination.client.ping()
        elif url.startswith(("amqp://", "amqps://")):
            import pika

            pika.BlockingConnection(pika.URLParameters(url)).close()
        return "ok"
    except Exception as exc:  # noqa: BLE001  (readiness reports any failure as not ready)
        return f"error: {type(exc).__name__}"
