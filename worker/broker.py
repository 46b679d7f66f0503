"""Builds the broker from ``RECON_BROKER_URL`` and installs it: the only call to ``dramatiq.set_broker``.
Called by each entry point (worker, web, scheduler, CLI, demo, tests), never at import.

- ``redis://…``: production. Heartbeat timeout and maintenance chance are set so that the
  messages of a ``kill -9``-ed worker are redelivered within seconds, not minutes.
- ``amqp://…``: RabbitMQ, the other engine users scale out on.
- ``stub://``: the embedded demo: an in-process broker consumed by an in-process worker.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from worker.middleware import ConfigureLogging, DeadLetters, LogContext
from worker.queues import QUEUES
from worker.settings import Settings


def build_broker(settings: Settings) -> dramatiq.Broker:
    """The broker ``settings.broker_url`` names, with our middleware and queues, installed as current."""
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
    broker.add_middleware(ConfigureLogging(settings))
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(LogContext())
    broker.add_middleware(DeadLetters())
    for queue in QUEUES:
        broker.declare_queue(queue)
    dramatiq.set_broker(broker)
    return broker
