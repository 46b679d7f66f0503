"""Gateway protection shared through Redis: the rate limit counts every HTTP request (as the gateway does)
and keeps head-room for priority work, and the circuit breaker pauses sweeps against a failing gateway,
then closes by itself."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pybreaker
import pytest
import redis

from gateways.errors import GatewayRateLimited, GatewayTransient
from tests.runtime import NAMESPACE, REDIS_URL
from tests.unit.gateways.razorpay_fakes import make_gateway
from worker.gateway_guard import CircuitOpen, GuardedGateway, RateLimitedTransport, RateSlots, low_priority

ORDER = {"id": "order_A", "entity": "order", "amount": 100, "amount_paid": 0, "amount_due": 100, "currency": "INR",
         "receipt": "r", "status": "created", "attempts": 0, "notes": [], "created_at": 1}


def answer(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/payments"):
        return httpx.Response(200, json={"entity": "collection", "count": 0, "items": []})
    return httpx.Response(200, json=ORDER)


def guarded(redis_client, handler=answer, *, rate_per_s=3, limiter_client=None) -> tuple[GuardedGateway, object]:
    namespace = f"{NAMESPACE}:guard-{uuid.uuid4().hex[:8]}"  # deleted after the run
    slots = RateSlots("razorpay", client=limiter_client or redis_client, namespace=namespace,
                      rate_per_s=rate_per_s, sweep_share=0.67, max_wait_s=0.0)
    gateway, fake = make_gateway(handler, retry_attempts=1, wrap=lambda inner: RateLimitedTransport(inner, slots))
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, redis_client, namespace=f"{namespace}:breaker")
    return GuardedGateway(gateway, breaker_storage=storage, fail_max=2, reset_timeout_s=1), fake


def top_of_a_second() -> None:
    second = int(time.time())
    while int(time.time()) == second:  # start at the top of a one-second window
        time.sleep(0.01)


def test_sweeps_get_their_share_of_the_rate_and_priority_work_still_gets_a_slot(redis_client):
    guard, fake = guarded(redis_client)
    top_of_a_second()
    with low_priority():
        guard.fetch_attempts("order_A")
        guard.fetch_attempts("order_A")
        with pytest.raises(GatewayRateLimited):
            guard.fetch_attempts("order_A")  # sweeps may use 2 of the 3 slots
    guard.fetch_attempts("order_A")  # a support recheck still gets the third
    with pytest.raises(GatewayRateLimited):
        guard.fetch_attempts("order_A")
    assert len(fake.calls("GET")) == 3  # a check is one request; denied calls sent nothing


def test_a_call_that_makes_two_requests_takes_two_slots(redis_client):
    guard, fake = guarded(redis_client, rate_per_s=3)
    top_of_a_second()
    guard.fetch_order("order_A")  # the order and its payments: two requests, as Razorpay counts them
    with pytest.raises(GatewayRateLimited):
        guard.fetch_order("order_A")  # one slot left: the payments request is refused before it is sent
    assert len(fake.calls("GET")) == 3


def test_the_circuit_opens_after_repeated_failures_pauses_sweeps_and_closes_by_itself(redis_client):
    failing = {"on": True}

    def handler(request):
        return httpx.Response(503, json={"error": {"code": "SERVER_ERROR", "description": "down"}}) if failing["on"] \
            else answer(request)

    guard, fake = guarded(redis_client, handler, rate_per_s=100)
    with low_priority():
        for _ in range(2):
            with pytest.raises(GatewayTransient):
                guard.fetch_order("order_A")
        assert guard.sweep_paused
        sent = len(fake.requests)
        with pytest.raises(CircuitOpen):
            guard.fetch_order("order_A")
        assert len(fake.requests) == sent  # an open circuit sends nothing
    failing["on"] = False
    assert guard.fetch_order("order_A").gateway_order_id == "order_A"  # priority work is not paused
    time.sleep(1.1)  # reset_timeout passes with no call at all
    assert not guard.sweep_paused  # so the scheduler sweeps again, and its first call is the trial
    with low_priority():
        assert guard.fetch_order("order_A").gateway_order_id == "order_A"
    assert not guard.sweep_paused


def test_a_redis_outage_does_not_stop_gateway_calls(redis_client):
    """The shared limiter lives in Redis; when Redis is gone calls go ahead (the gateway's 429s still count)."""
    import redis

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)  # nothing listens on port 1
    guard, fake = guarded(redis_client, limiter_client=dead)
    assert guard.fetch_order("order_A").gateway_order_id == "order_A"
    assert len(fake.calls("GET")) == 2


def test_without_redis_the_limit_is_this_processs():
    """The embedded default has no Redis: the same shares, counted in the process."""
    slots = RateSlots("razorpay", client=None, namespace="local", rate_per_s=3, sweep_share=0.67, max_wait_s=0.0)
    top_of_a_second()
    with low_priority():
        slots.take()
        slots.take()
        with pytest.raises(GatewayRateLimited):
            slots.take()
    slots.take()
    with pytest.raises(GatewayRateLimited):
        slots.take()


def test_refunds_pass_through_the_guard_and_count_against_the_circuit_when_sweeping():
    """create_refund and fetch_refunds forward every argument; a sweep's transient failures open the circuit
    like any other call's (no Redis: the breaker state is in memory here)."""
    from gateways.port import PaymentGateway, RefundStatus

    posted: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(503, json={"error": {"code": "SERVER_ERROR", "description": "down"}})
        posted.append({"key": request.headers["X-Refund-Idempotency"], **json.loads(request.content)})
        return httpx.Response(200, json={"id": "rfnd_1", "entity": "refund", "amount": 100, "currency": "INR",
                                         "payment_id": "pay_1", "notes": [], "status": "pending"})

    gateway, _ = make_gateway(handler, retry_attempts=1)
    guard = GuardedGateway(gateway, breaker_storage=pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED),
                           fail_max=2, reset_timeout_s=60)
    assert isinstance(guard, PaymentGateway)
    made = guard.create_refund("pay_1", amount_minor=100, currency="INR", full=False,
                               idempotency_key="refund-key-0001", reason="asked")
    assert made.status is RefundStatus.PENDING and made.idempotency_key == "refund-key-0001"
    assert posted == [{"key": "refund-key-0001", "amount": 100, "speed": "normal",
                       "notes": {"reason": "asked", "idempotency_key": "refund-key-0001"}}]
    with low_priority():
        for _ in range(2):
            with pytest.raises(GatewayTransient):
                guard.fetch_refunds("pay_1", known=("rfnd_1",))
        with pytest.raises(CircuitOpen):
            guard.fetch_refunds("pay_1")


def test_a_request_refused_a_slot_waits_for_the_next_window_instead_of_asking_redis_again_and_again(redis_client):
    """32 sweep threads blocked on the limit asked Redis every 5-50 ms: a third of a core of Lua calls. A refused
    slot frees up only when the next one-second window opens, so a waiter asks again then."""
    asked = []
    counting = redis.Redis.from_url(REDIS_URL)
    real_evalsha = counting.evalsha

    def evalsha(*args, **kwargs):
        asked.append(time.time())
        return real_evalsha(*args, **kwargs)

    counting.evalsha = evalsha
    slots = RateSlots("razorpay", client=counting, namespace=f"{NAMESPACE}:window-{uuid.uuid4().hex[:8]}",
                      rate_per_s=1, sweep_share=1.0, max_wait_s=3.0)
    top_of_a_second()
    slots.take()  # the window's one slot
    slots.take()  # refused, then taken when the next window opens
    assert int(asked[-1]) == int(asked[0]) + 1  # taken in the next second
    assert len(asked) <= 3  # the slot, the refusal, the slot of the next window
    counting.close()
