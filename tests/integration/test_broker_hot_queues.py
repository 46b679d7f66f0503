"""The Redis broker's hot queues (webhooks, support's priority): an idle consumer wakes when a message is sent,
and polls at least every ``broker_hot_poll_ms``; the other queues keep Dramatiq's own back-off (the worker
timeout)."""

from __future__ import annotations

import threading
import time

import dramatiq
import pytest

from worker.broker import DOORBELL_TOKENS, build_broker
from worker.queues import EVENTS_QUEUE, PRIORITY_QUEUE, SWEEP_QUEUE, WEBHOOK_QUEUE
from worker.settings import Settings


@pytest.fixture
def hot_broker(redis_client, request):
    previous = dramatiq.get_broker()
    poll_ms = getattr(request, "param", 7)
    broker = build_broker(Settings(broker_url="redis://127.0.0.1:6379/15", broker_namespace="recon-test-hot",
                                   broker_hot_poll_ms=poll_ms))
    broker.flush_all()
    broker.client.delete(broker.doorbell(WEBHOOK_QUEUE), broker.doorbell(SWEEP_QUEUE))
    try:
        yield broker
    finally:
        broker.flush_all()
        broker.client.delete(broker.doorbell(WEBHOOK_QUEUE), broker.doorbell(SWEEP_QUEUE))
        broker.close()
        dramatiq.set_broker(previous)


def _send(broker, queue: str) -> None:
    broker.enqueue(dramatiq.Message(queue_name=queue, actor_name="noop", args=(), kwargs={}, options={}))


def test_hot_queues_wait_at_most_broker_hot_poll_ms_and_the_others_keep_the_worker_timeout(hot_broker):
    waits = {queue: getattr(consumer, "wait_s", None) or consumer.timeout / 1000
             for queue in (WEBHOOK_QUEUE, PRIORITY_QUEUE, SWEEP_QUEUE, EVENTS_QUEUE, f"{WEBHOOK_QUEUE}.DQ")
             for consumer in [hot_broker.consume(queue, timeout=100)]}
    assert waits == {WEBHOOK_QUEUE: 0.007, PRIORITY_QUEUE: 0.007, SWEEP_QUEUE: 0.1, EVENTS_QUEUE: 0.1,
                     f"{WEBHOOK_QUEUE}.DQ": 0.1}
    assert hot_broker.consume(WEBHOOK_QUEUE, timeout=3).wait_s == 0.003  # never longer than the worker asks


@pytest.mark.parametrize("hot_broker", [1_000], indirect=True)
def test_an_idle_consumer_of_a_hot_queue_waits_its_poll_and_wakes_as_soon_as_a_message_is_sent(hot_broker):
    consumer = hot_broker.consume(WEBHOOK_QUEUE, prefetch=1, timeout=60_000)
    started = time.monotonic()
    assert next(consumer) is None  # nothing queued, nothing rung: it waits its whole poll, it does not spin
    assert time.monotonic() - started >= 0.9
    sender = threading.Timer(0.2, _send, (hot_broker, WEBHOOK_QUEUE))
    started = time.monotonic()
    sender.start()
    message = next(consumer) or next(consumer)  # woken by the send's token, then the fetch
    waited = time.monotonic() - started
    sender.join()
    assert message is not None and message.queue_name == WEBHOOK_QUEUE
    assert waited < 0.8  # the send woke it (0.2 s), long before its 1 s poll


@pytest.mark.parametrize("hot_broker", [1_000], indirect=True)
def test_every_idle_consumer_is_woken_by_a_message_of_its_own(hot_broker):
    """One token per message wakes one waiter, which fetches at once: two waiting consumers, two messages."""
    consumers = [hot_broker.consume(WEBHOOK_QUEUE, prefetch=1, timeout=60_000) for _ in range(2)]
    got: dict[int, tuple[object, float]] = {}

    def wait(i: int) -> None:
        started = time.monotonic()
        got[i] = (next(consumers[i]), time.monotonic() - started)

    waiting = [threading.Thread(target=wait, args=(i,)) for i in range(2)]
    for thread in waiting:
        thread.start()
    time.sleep(0.2)  # both are waiting on the doorbell now
    _send(hot_broker, WEBHOOK_QUEUE)
    _send(hot_broker, WEBHOOK_QUEUE)
    for thread in waiting:
        thread.join()
    assert all(message is not None for message, _ in got.values())  # the woken consumer fetched, not just woke
    assert all(waited < 0.8 for _, waited in got.values())  # 0.2 s, not their 1 s poll


@pytest.mark.parametrize("hot_broker", [1_000], indirect=True)
def test_a_consumer_whose_prefetch_is_full_fetches_as_soon_as_a_worker_thread_acks(hot_broker):
    """Under a backlog the consumer's prefetch fills: it must fetch again at the next ack, not at its poll
    (a fixed wait there capped a worker at prefetch / poll messages a second)."""
    _send(hot_broker, WEBHOOK_QUEUE)
    _send(hot_broker, WEBHOOK_QUEUE)
    consumer = hot_broker.consume(WEBHOOK_QUEUE, prefetch=1, timeout=60_000)
    first = next(consumer)
    assert first is not None
    threading.Timer(0.2, consumer.ack, (first,)).start()
    started = time.monotonic()
    second = None
    while second is None and time.monotonic() - started < 3:
        second = next(consumer)  # full: waits for the ack, then fetches
    assert second is not None and time.monotonic() - started < 0.8


@pytest.mark.parametrize("hot_broker", [1_000], indirect=True)
def test_a_burst_leaves_a_bounded_number_of_wake_up_tokens_and_other_queues_ring_nothing(hot_broker):
    for _ in range(3 * DOORBELL_TOKENS):
        _send(hot_broker, WEBHOOK_QUEUE)
        _send(hot_broker, SWEEP_QUEUE)
    assert hot_broker.client.llen(hot_broker.doorbell(WEBHOOK_QUEUE)) == DOORBELL_TOKENS
    assert hot_broker.client.llen(hot_broker.doorbell(SWEEP_QUEUE)) == 0
