"""Builds the broker from ``RECON_BROKER_URL`` and installs it: the only call to ``dramatiq.set_broker``.

- ``redis://…``: production. Heartbeat timeout and maintenance chance are set so that the
  messages of a ``kill -9``-ed worker are redelivered within seconds, not minutes.
- ``amqp://…``: RabbitMQ, the other engine users scale out on.
- ``stub://``: the embedded demo: an in-process broker consumed by an in-process worker.

Actor modules import this module first, because ``@dramatiq.actor`` binds to the broker that
is current when it decorates.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from worker.middleware import ConfigureLogging, DeadLetters, LogContext
from worker.settings import Settings, get_settings

#: Queues, highest priority first. Support and billing never wait behind the sweep.
PRIORITY_QUEUE = "recon_priority"
WEBHOOK_QUEUE = "recon_webhooks"
SWEEP_QUEUE = "recon_sweep"
QUEUES = (PRIORITY_QUEUE, WEBHOOK_QUEUE, SWEEP_QUEUE)


def build_broker(settings: Settings) -> dramatiq.Broker:
    url = settings.broker_url
    if url.startswith("stub:"):
        broker: dramatiq.Broker = StubBroker()
        broker.emit_after("process_boot")
    elif url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url, namespace=settings.broker_namespace,
                             heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
                             maintenance_chance=settings.broker_maintenance_chance)
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url)
    else:
        raise ValueError(f"unsupported broker URL scheme in {url.split(':', 1)[0]!r}: use redis://, amqp:// or stub://")
    broker.add_middleware(ConfigureLogging())
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(LogContext())
    broker.add_middleware(DeadLetters())
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


broker = build_broker(get_settings())
dramatiq.set_broker(broker)
