"""The ``scheduler`` process: one leader at a time sweeps due orders and stale inbox rows, and has the
gateways' settlements pulled and matched.

APScheduler 3 (``BlockingScheduler``) runs the round on an interval with ``coalesce`` and
``max_instances=1``: what Dramatiq's docs recommend, maintained, framework-free. APScheduler has
no cross-process protection, so each round first renews a Redis lock with expiry (redis-py's
``Lock``, ``worker.coordination.RedisLeaderLock``): standby schedulers keep trying and take over
within one lock TTL when the leader dies; a leader that stops releases the lock at once. Claiming with
``FOR UPDATE SKIP LOCKED`` makes even an overlap during a hand-over harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler

from worker.actors import Actors
from worker.coordination import LeaderLock
from worker.deps import Deps
from worker.logging import get_logger
from worker.metrics import SWEEP_CLAIMED, SWEEP_ROUNDS
from worker.services.deliveries import claim_due
from worker.services.order_requests import forget_old_keys
from worker.services.sweep import requeue_stale_inbox, sweep_due_orders, sweep_due_refunds


@dataclass(frozen=True, slots=True)
class RoundResult:
    led: bool
    orders: int = 0
    inbox: int = 0


def sweep_round(*, deps: Deps, leader: LeaderLock, actors: Actors) -> RoundResult:
    """One round: if this process leads, claim due orders and stale inbox rows and enqueue them."""
    if not leader.hold():
        return RoundResult(led=False)
    order_ids = sweep_due_orders(deps=deps)
    for order_id in order_ids:
        actors.check_order.send(order_id)
    inbox_ids = requeue_stale_inbox(deps=deps)
    for inbox_id in inbox_ids:
        actors.process_inbox_event.send(inbox_id)
    refund_ids = sweep_due_refunds(deps=deps)
    for refund_id in refund_ids:
        actors.check_refund.send(refund_id)
    SWEEP_CLAIMED.labels("refund").inc(len(refund_ids))
    due_events = claim_due(deps=deps)
    for endpoint, order_id in due_events:
        actors.deliver_events.send(endpoint, order_id)
    SWEEP_CLAIMED.labels("event_delivery").inc(len(due_events))
    forget_old_keys(deps=deps)
    SWEEP_ROUNDS.inc()
    SWEEP_CLAIMED.labels("order").inc(len(order_ids))
    SWEEP_CLAIMED.labels("inbox").inc(len(inbox_ids))
    deps.coordination.mark_sweep(deps.clock.now())
    if order_ids or inbox_ids:
        get_logger().info("sweep_round", orders=len(order_ids), inbox=len(inbox_ids))
    return RoundResult(True, len(order_ids), len(inbox_ids))


def settlements_round(*, leader: LeaderLock, actors: Actors) -> bool:
    """Every ``settlement_pull_every_s``: the leader enqueues one settlement pull and match (a worker runs it)."""
    if not leader.hold():
        return False
    actors.reconcile_settlements.send()
    return True


def run_scheduler(*, deps: Deps, actors: Actors) -> None:
    """Block forever, sweeping every ``sweep_interval_s`` while this process holds the leader lock."""
    interval = deps.settings.sweep_interval_s
    leader = deps.coordination.leader_lock("scheduler", ttl_s=max(5.0, interval * 5))
    scheduler = BlockingScheduler(timezone=UTC)
    scheduler.add_job(sweep_round, "interval", seconds=interval,
                      kwargs={"deps": deps, "leader": leader, "actors": actors},
                      coalesce=True, max_instances=1, misfire_grace_time=max(1, int(interval * 5)), id="sweep")
    every = deps.settings.settlement_pull_every_s
    scheduler.add_job(settlements_round, "interval", seconds=every, kwargs={"leader": leader, "actors": actors},
                      coalesce=True, max_instances=1, misfire_grace_time=every, id="settlements",
                      next_run_time=datetime.now(UTC))  # at start too: a restarted scheduler does not wait an hour
    get_logger().info("scheduler_started", interval_s=interval)
    try:
        scheduler.start()
    finally:
        leader.release()
