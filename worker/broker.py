"""Builds the broker from ``RECON_BROKER_URL`` and installs it: the only call to ``dramatiq.set_broker``.
Called by each entry point (worker, web, scheduler, CLI, demo, tests), never at import.

- ``redis://…``: production. Heartbeat timeout and maintenance chance are set so that the
  messages of a ``kill -9``-ed worker are redelivered within seconds, not minutes; the webhook and
  priority queues are polled at least every ``broker_hot_poll_ms`` when idle (:class:`HotQueuesRedisBroker`).
- ``amqp://…``: RabbitMQ, the other engine users scale out on.
- ``stub://``: the embedded demo: an in-process broker consumed by an in-process worker.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from worker.middleware import ConfigureLogging, DeadLetters, LogContext
from worker.queues import PRIORITY_QUEUE, QUEUES, WEBHOOK_QUEUE
from worker.settings import Settings


def build_broker(settings: Settings) -> dramatiq.Broker:
    """The broker ``settings.broker_url`` names, with our middleware and queues, installed as current."""
    url = settings.broker_url
    if url.startswith("stub:"):
        broker: dramatiq.Broker = StubBroker()
        broker.emit_after("process_boot")
    elif url.startswith(("redis://", "rediss://", "unix://")):
        broker = _hot_queues_redis_broker()(url=url, namespace=settings.broker_namespace,
                                            heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
                                            maintenance_chance=settings.broker_maintenance_chance,
                                            hot_poll_ms=settings.broker_hot_poll_ms)
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url)
    else:
        raise ValueError(f"unsupported broker URL scheme in {url.split(':', 1)[0]!r}: use redis://, amqp:// or stub://")
    broker.add_middleware(ConfigureLogging(settings))
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(LogContext())
    broker.add_middleware(DeadLetters())
    for queue in QUEUES:
        broker.declare_queue(queue)
    dramatiq.set_broker(broker)
    return broker


#: Queues whose idle wait is what a customer (a credit) or support (a recheck) waits for. Not their delay
#: queues (``.DQ``): those hold retries due seconds later.
HOT_QUEUES = frozenset({WEBHOOK_QUEUE, PRIORITY_QUEUE})


def _hot_queues_redis_broker() -> type:
    """Dramatiq's RedisBroker (imported only for redis:// URLs), with a shorter idle back-off on HOT_QUEUES.

    Its consumer has no blocking fetch: an empty fetch sleeps 5 ms, then twice as long each time, up to the
    worker's timeout, so at moderate load a webhook waited up to that cap before any worker looked (the p99 of
    benchmark 1). Capping the back-off on these queues alone costs a few polls a second per process when
    idle; the sweep's and the events' queues keep the long back-off."""
    from dramatiq.brokers.redis import RedisBroker

    class HotQueuesRedisBroker(RedisBroker):
        def __init__(self, *, hot_poll_ms: int, **options) -> None:
            super().__init__(**options)
            self.hot_poll_ms = hot_poll_ms

        def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000):
            if queue_name in HOT_QUEUES:
                timeout = min(timeout, self.hot_poll_ms)
            return super().consume(queue_name, prefetch, timeout)

    return HotQueuesRedisBroker
