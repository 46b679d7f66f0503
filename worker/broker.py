"""Builds the broker from ``RECON_BROKER_URL`` and installs it: the only call to ``dramatiq.set_broker``.
Called by each entry point (worker, web, scheduler, CLI, demo, tests), never at import.

- ``redis://…``: production. Heartbeat timeout and maintenance chance are set so that the
  messages of a ``kill -9``-ed worker are redelivered within seconds, not minutes; an idle consumer of the
  webhook and priority queues wakes when a message is sent to them, and polls at least every
  ``broker_hot_poll_ms`` (``_hot_queues_redis_broker``).
- ``amqp://…``: RabbitMQ, the other engine users scale out on.
- ``stub://``: the embedded demo: an in-process broker consumed by an in-process worker.
"""

from __future__ import annotations

import threading

import dramatiq
import redis
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


#: Wake-up tokens kept per hot queue at most: a burst sent while every consumer is busy wakes them a few
#: times more, not once per message.
DOORBELL_TOKENS = 16


def _hot_queues_redis_broker() -> type:
    """Dramatiq's RedisBroker (imported only for redis:// URLs), whose consumers of HOT_QUEUES wake when a
    message is sent instead of at their next poll.

    Its consumer has no blocking fetch: an empty fetch sleeps 5 ms, then twice as long each time, up to the
    worker's timeout, so a webhook waited up to that cap before any worker looked (the p99 of benchmark 1),
    and half of it on average even with the cap at 10 ms. Here a send to a hot queue also pushes a token to
    that queue's doorbell list, and an idle consumer of it waits on the doorbell (``BLPOP``, at most
    ``hot_poll_ms``) instead of sleeping: one waiter wakes per message, fetches at once, and a message sent
    without a token (from a sender of an older release; requeued by the maintenance of a dead worker's
    messages; after a Redis error) is still fetched within ``hot_poll_ms``. A consumer whose prefetch is full
    waits for an ack instead. The sweep's and the events' queues keep Dramatiq's long back-off."""
    from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
    from dramatiq.errors import ConnectionClosed

    class DoorbellConsumer(_RedisConsumer):
        def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, *, wait_ms: int) -> None:
            super().__init__(broker, queue_name, prefetch, 0)  # no sleep of its own: the doorbell is the wait
            self.wait_s, self.doorbell = max(1, wait_ms) / 1000, broker.doorbell(queue_name)  # BLPOP 0: forever
            self._freed = threading.Event()  # set by every ack and nack: prefetch room to fetch into

        def __next__(self):
            if not self.message_cache and self.outstanding_message_count >= self.prefetch:
                self._freed.clear()  # full: wait for a worker thread to finish one (not a token: no room for it)
                if self.outstanding_message_count >= self.prefetch:
                    self._freed.wait(self.wait_s)
                return None
            message = super().__next__()  # room, so it fetches when its cache is empty
            if message is None:
                try:
                    rung = self.broker.client.blpop([self.doorbell], timeout=self.wait_s)
                except redis.ConnectionError as exc:
                    raise ConnectionClosed(exc) from None
                if rung is not None:  # fetch now: a consumer stopping or pausing next must not sit on the wake-up
                    message = super().__next__()
            return message

        def ack(self, message):
            super().ack(message)
            self._freed.set()

        def nack(self, message):
            super().nack(message)
            self._freed.set()

        def requeue(self, messages):  # a stopping worker's prefetched messages: wake another consumer for them
            super().requeue(messages)
            self.broker.ring(self.queue_name)

    class HotQueuesRedisBroker(RedisBroker):
        def __init__(self, *, hot_poll_ms: int, **options) -> None:
            super().__init__(**options)
            self.hot_poll_ms = hot_poll_ms

        def doorbell(self, queue_name: str) -> str:
            return f"{self.namespace}:{queue_name}.doorbell"

        def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000):
            if queue_name in HOT_QUEUES:
                return DoorbellConsumer(self, queue_name, prefetch, wait_ms=min(timeout, self.hot_poll_ms))
            return super().consume(queue_name, prefetch, timeout)

        def enqueue(self, message, *, delay=None):
            enqueued = super().enqueue(message, delay=delay)
            if delay is None and message.queue_name in HOT_QUEUES:  # retries coming due are enqueued here too
                self.ring(message.queue_name)
            return enqueued

        def ring(self, queue_name: str) -> None:
            key = self.doorbell(queue_name)
            try:
                with self.client.pipeline(transaction=False) as ring:
                    ring.lpush(key, b"1").ltrim(key, 0, DOORBELL_TOKENS - 1).execute()
            except redis.RedisError:  # sent all the same: a consumer fetches it at its next poll
                pass

    return HotQueuesRedisBroker
