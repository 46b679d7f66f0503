"""The chaos run, small enough for ``make test``: 150 customers through ``recon web``, two dramatiq workers and the
scheduler, on a Redis and a database of the run's own, while workers are ``kill -9``-ed, Redis is restarted empty
and every database connection is cut. ``make chaos`` runs the same with 10,000 (see ``ops/chaos``).

The customers pay through both gateways (Razorpay in India, PayGlocal in the US), some on manual-capture orders;
banks authorise late, inside and past the auto-capture window; some pay the wrong amount; support refunds credited
orders through our API (full and partial, sent twice, twice at once) and in the gateway's dashboard, some refunds
fail, banks dispute credited payments (won, lost, reopened), support replays webhooks under fresh event ids and
decides orders that reach needs_review. The run is judged against the gateway's truth (``ops/chaos/checks.py``;
that the checks can fail is ``test_chaos_checks.py``)."""

from __future__ import annotations

import os
import shutil

import pytest
from sqlalchemy import create_engine, text

from ops.chaos import ChaosConfig, run_chaos
from ops.chaos.stack import PG_ADMIN_URL

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_services() -> None:
    """A redis-server binary (the run starts its own) and the shared Postgres; skipped locally, failed in CI."""
    problem = None if shutil.which("redis-server") else "redis-server is not installed"
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001  (any connection error means the service is unavailable)
        problem = f"PostgreSQL is not reachable: {exc}"
    if problem and IN_CI:
        pytest.fail(problem)
    if problem:
        pytest.skip(problem)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_small_chaos_run_credits_every_capture_once_follows_refunds_and_disputes_and_leaves_nothing_stuck():
    require_services()
    result = run_chaos(ChaosConfig(orders=150, concurrency=8, kills=3, drain_timeout_s=300))
    assert result.run.get("kills") == 3 and result.run.get("redis_restarts") == 1
    assert result.run.get("db_terminations") == 1
    assert result.ok, result.failures
    driven = result.run["driver"]
    exercised = {  # the mix really ran: each kind of customer and of support action happened at least once
        "PayGlocal orders": result.tally.by_gateway.get("payglocal", 0),
        "manual-capture orders": sum(n for what, n in driven.items() if what.endswith("_manual")),
        "late authorisations past the capture window": driven.get("plan_razorpay_late_past_window", 0),
        "wrong amounts": driven.get("pay_wrong_amount", 0),
        "dashboard refunds": sum(n for what, n in driven.items() if what.startswith("gateway_refund_razorpay_")),
        "PayGlocal dashboard refunds": driven.get("gateway_refund_payglocal_full", 0),
        "refunds asked through our API (Razorpay)": sum(n for what, n in driven.items()
                                                        if what.startswith("api_refund_razorpay_2")),
        "refunds asked through our API (PayGlocal)": sum(n for what, n in driven.items()
                                                         if what.startswith("api_refund_payglocal_2")),
        "a refund request sent twice at once": sum(n for what, n in driven.items() if "_concurrent_" in what),
        "refunds the gateway failed": sum(n for what, n in result.tally.gateway_refunds.items()
                                          if what.endswith(":failed")),
        "disputes won": result.tally.gateway_disputes.get("won/chargeback", 0),
        "disputes lost": sum(n for what, n in result.tally.gateway_disputes.items() if what.startswith("lost/")),
        "disputes reopened": sum(n for what, n in result.tally.gateway_disputes.items()
                                 if what.endswith("/pre_arbitration") or what.endswith("/arbitration")),
        "webhooks replayed under a new event id": sum(n for what, n in driven.items()
                                                      if what.startswith("replay_") and what.endswith("_200")),
        "support decisions": sum(result.tally.reviews.values()),
    }
    assert all(exercised.values()), exercised
