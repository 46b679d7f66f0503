"""The Redis broker's idle back-off: short on the queues a credit and a support recheck wait in, Dramatiq's
own (the worker timeout) on the rest."""

from __future__ import annotations

import dramatiq

from worker.broker import build_broker
from worker.queues import EVENTS_QUEUE, PRIORITY_QUEUE, SWEEP_QUEUE, WEBHOOK_QUEUE
from worker.settings import Settings


def test_hot_queues_poll_at_most_every_broker_hot_poll_ms(redis_client):
    previous = dramatiq.get_broker()
    broker = build_broker(Settings(broker_url="redis://127.0.0.1:6379/15", broker_namespace="recon-test-hot",
                                   broker_hot_poll_ms=7))
    try:
        backoff_cap = {queue: broker.consume(queue, timeout=100).timeout
                       for queue in (WEBHOOK_QUEUE, PRIORITY_QUEUE, SWEEP_QUEUE, EVENTS_QUEUE, f"{WEBHOOK_QUEUE}.DQ")}
        assert backoff_cap == {WEBHOOK_QUEUE: 7, PRIORITY_QUEUE: 7, SWEEP_QUEUE: 100, EVENTS_QUEUE: 100,
                               f"{WEBHOOK_QUEUE}.DQ": 100}
        assert broker.consume(WEBHOOK_QUEUE, timeout=3).timeout == 3  # never longer than the worker asks
    finally:
        broker.close()
        dramatiq.set_broker(previous)
