"""Order events out to the billing backend's endpoints (enqueued after the commit that wrote them, by the
scheduler's round and by replays)."""

from __future__ import annotations

import dramatiq

from worker.actors._args import recon_actor
from worker.contract import DeliveryArgs
from worker.deps import Deps
from worker.logging import get_logger
from worker.queues import EVENTS_QUEUE
from worker.services import deliveries


@recon_actor(name="deliver_events", queue=EVENTS_QUEUE, contract=DeliveryArgs, max_retries=3, min_backoff=2_000)
def deliver_events(message: DeliveryArgs, deps: Deps) -> None:
    """Send one order's undelivered events to one endpoint, in order (failures are retried by the outbox's own
    back-off, not by the broker)."""
    deliveries.deliver_order(message.endpoint, message.order_id, deps=deps)


def send_now(actor: dramatiq.Actor, deps: Deps, orders: list[str]) -> None:
    """Enqueue each order's delivery to each endpoint (a committed unit's ``deliver_now``)."""
    for endpoint in deps.endpoints:
        for order_id in orders:
            send_one(actor, endpoint.name, order_id)


def send_one(actor: dramatiq.Actor, endpoint: str, order_id: str) -> None:
    """Enqueue one order's delivery to one endpoint. Its rows are committed and due: if the broker is down the
    scheduler's next round sends them, so this only logs."""
    try:
        actor.send(endpoint, order_id)
    except Exception as exc:  # noqa: BLE001  (due rows wait for the scheduler's round)
        get_logger(order_id=order_id).warning("event_delivery_enqueue_failed", endpoint=endpoint, error=str(exc))
