"""Order events out to the billing backend's endpoints (enqueued by the scheduler's sweep and by replays)."""

from __future__ import annotations

from worker.actors._args import recon_actor
from worker.contract import DeliveryArgs
from worker.deps import Deps
from worker.queues import EVENTS_QUEUE
from worker.services import deliveries


@recon_actor(name="deliver_events", queue=EVENTS_QUEUE, contract=DeliveryArgs, max_retries=3, min_backoff=2_000)
def deliver_events(message: DeliveryArgs, deps: Deps) -> None:
    """Send one order's undelivered events to one endpoint, in order (failures are retried by the outbox's own
    back-off, not by the broker)."""
    deliveries.deliver_order(message.endpoint, message.order_id, deps=deps)
