"""Gateway protection shared by every worker process on every host.

- A rate limit per gateway (one-second windows in Redis), one slot per HTTP request,
  taken by the adapter's transport, with head-room kept for priority work: sweeps may use only
  ``sweep_share`` of the rate, support rechecks and billing verifications the whole of it.
- A circuit breaker per gateway (pybreaker, state in Redis) around sweep calls: after repeated
  transient failures it opens, the scheduler stops sweeping that gateway, and after
  ``reset_timeout`` it lets a trial call through and closes again by itself.

Which kind of work a call belongs to is a context variable set by the actor (``PRIORITY``).
"""

from __future__ import annotations

import contextvars
import math
import random
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import httpx
import pybreaker
import redis
from redis.exceptions import RedisError
from tenacity import Retrying, retry_if_result, stop_after_delay

from gateways.errors import (
    GatewayNotFound,
    GatewayPermanent,
    GatewayRateLimited,
    GatewayTransient,
    MalformedEvent,
    SignatureInvalid,
)
from gateways.port import (
    CallbackResult,
    PaymentGateway,
    RemoteOrder,
    RemotePayment,
    RemoteRefund,
    SettlementLine,
    SettlementSource,
    WebhookEvent,
)
from worker.logging import get_logger
from worker.metrics import CIRCUIT_OPEN, GATEWAY_RATE_LIMITED, GATEWAY_REQUESTS

#: "high" for support and billing work (the default), "low" for sweeps.
PRIORITY: contextvars.ContextVar[str] = contextvars.ContextVar("gateway_priority", default="high")


class CircuitOpen(GatewayTransient):
    """The gateway's circuit is open: sweeps against it are paused for now."""


@contextmanager
def low_priority():
    token = PRIORITY.set("low")
    try:
        yield
    finally:
        PRIORITY.reset(token)


# Check every limit, then count the request against all of them, in one round trip and atomically: a
# request refused by the overall limit does not use up a sweep slot. KEYS: this second's counter per limit;
# ARGV: the limits in the same order.
_TAKE_SLOT = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i]) then return 0 end
end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, 2)
end
return 1
"""


class RateSlots:
    """One gateway's share of the request rate, counted across every process: one slot per HTTP request
    (a check that makes two requests takes two, as the gateway counts them). Sweeps (``PRIORITY`` low) may
    use only ``sweep_share`` of the rate; support and billing the whole of it.

    The counters are one-second windows in Redis, taken by one Lua script (one round trip per request;
    Dramatiq's ``WindowRateLimiter`` took a WATCH/MULTI transaction per limit, retried under contention,
    and was a fifth of a check's CPU). Without Redis (the embedded default) they are this process's."""

    def __init__(self, name: str, *, client: redis.Redis | None, namespace: str, rate_per_s: int,
                 sweep_share: float, max_wait_s: float = 5.0):
        self.name = name
        self._limits = {"all": rate_per_s, "sweep": max(1, int(rate_per_s * sweep_share))}
        self._prefix = f"{namespace}:rate:{{{name}}}"  # one hash slot for both keys, should Redis be a cluster
        self._script = client.register_script(_TAKE_SLOT) if client is not None else None
        self._local: dict[str, int] = {}
        self._local_lock = threading.Lock()
        self._max_wait_s = max_wait_s

    def _try(self) -> bool:
        kinds = ("sweep", "all") if PRIORITY.get() == "low" else ("all",)
        second = int(time.time())
        keys = [f"{self._prefix}:{kind}:{second}" for kind in kinds]
        limits = [self._limits[kind] for kind in kinds]
        if self._script is not None:
            return bool(self._script(keys=keys, args=limits))
        with self._local_lock:
            if any(self._local.get(key, 0) >= limit for key, limit in zip(keys, limits, strict=True)):
                return False
            if not all(key.endswith(f":{second}") for key in self._local):
                self._local = {key: n for key, n in self._local.items() if key.endswith(f":{second}")}
            for key in keys:
                self._local[key] = self._local.get(key, 0) + 1
            return True

    def take(self) -> None:
        """Wait (at most ``max_wait_s``) for a slot of this request's priority.

        Raises:
            GatewayRateLimited: no slot in time (``retry_after`` 1 s); nothing was sent.
        """
        waiting = Retrying(stop=stop_after_delay(self._max_wait_s), wait=_until_the_next_window,
                           retry=retry_if_result(lambda ok: not ok), retry_error_callback=lambda _state: False)
        try:
            acquired = waiting(self._try)
        except RedisError as exc:  # the shared limiter is down: fail open, the gateway's own 429s still apply
            get_logger(gateway=self.name).warning("rate_limiter_unavailable", error=type(exc).__name__)
            return
        if not acquired:
            GATEWAY_RATE_LIMITED.labels(self.name, "local").inc()
            raise GatewayRateLimited(f"{self.name}: no rate-limit slot within {self._max_wait_s}s", retry_after=1)


def _until_the_next_window(_state: object) -> float:
    """A refused slot frees up only when the next one-second window opens: wait till then (plus a little, so
    the waiters do not all ask in the same millisecond). Asking again every few milliseconds meanwhile, as a
    sweep's 32 blocked threads did, was a third of a core of Lua calls and a third of a check's CPU."""
    now = time.time()
    return math.ceil(now) - now + random.uniform(0.001, 0.02)


class RateLimitedTransport(httpx.BaseTransport):
    """Takes a :class:`RateSlots` slot before every request it sends: retries and multi-request calls
    included, which is what the gateway's own limit counts (httpx's place for cross-cutting concerns)."""

    def __init__(self, inner: httpx.BaseTransport, slots: RateSlots):
        self.inner, self.slots = inner, slots

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.slots.take()
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class GuardedGateway:
    """A PaymentGateway whose sweep calls go through the shared circuit breaker (rate limits are taken
    per request by its transport, :class:`RateLimitedTransport`)."""

    def __init__(self, inner: PaymentGateway, *, breaker_storage: pybreaker.CircuitBreakerStorage, fail_max: int = 5,
                 reset_timeout_s: float = 30):
        self.inner = inner
        self.name = inner.name
        self._breaker_storage, self._reset_timeout_s = breaker_storage, reset_timeout_s
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max, reset_timeout=reset_timeout_s, state_storage=breaker_storage, name=inner.name,
            exclude=[GatewayNotFound, GatewayPermanent, GatewayRateLimited, SignatureInvalid, MalformedEvent])

    # The adapter's facts (gateways.port.GatewayFacts), unchanged by the guard.
    @property
    def label(self) -> str:
        return self.inner.label

    @property
    def webhook_content_type(self) -> str:
        return self.inner.webhook_content_type

    @property
    def id_prefixes(self) -> tuple[str, ...]:
        return self.inner.id_prefixes

    @property
    def default_rate_per_s(self) -> int:
        return self.inner.default_rate_per_s

    @property
    def min_poll_interval_s(self) -> int:
        return self.inner.min_poll_interval_s

    @property
    def reports_disputes(self) -> bool:
        return self.inner.reports_disputes

    @property
    def sweep_paused(self) -> bool:
        """Open and still cooling down. Once ``reset_timeout`` has passed, sweeps go again: their first
        call is the breaker's trial (pybreaker moves to half-open only when a call is attempted)."""
        if self.breaker.current_state != pybreaker.STATE_OPEN:
            return False
        opened_at = self._breaker_storage.opened_at
        return opened_at is not None and datetime.now(UTC) < opened_at + timedelta(seconds=self._reset_timeout_s)

    def create_order(self, **kwargs) -> RemoteOrder:
        return self._call(self.inner.create_order, **kwargs)

    def min_amount_minor(self, currency: str, exponent: int) -> int:
        return self.inner.min_amount_minor(currency, exponent)

    def fetch_order(self, gateway_order_id: str) -> RemoteOrder:
        return self._call(self.inner.fetch_order, gateway_order_id)

    def fetch_attempts(self, gateway_order_id: str) -> tuple[RemotePayment, ...]:
        return self._call(self.inner.fetch_attempts, gateway_order_id)

    def fetch_payment(self, gateway_payment_id: str) -> RemotePayment:
        return self._call(self.inner.fetch_payment, gateway_payment_id)

    def capture(self, gateway_payment_id: str, *, amount_minor: int, currency: str) -> RemotePayment:
        return self._call(self.inner.capture, gateway_payment_id, amount_minor=amount_minor, currency=currency)

    def create_refund(self, gateway_payment_id: str, *, amount_minor: int, currency: str, full: bool,
                      idempotency_key: str, reason: str) -> RemoteRefund:
        return self._call(self.inner.create_refund, gateway_payment_id, amount_minor=amount_minor, currency=currency,
                          full=full, idempotency_key=idempotency_key, reason=reason)

    def fetch_refunds(self, gateway_payment_id: str, *, known: tuple[str, ...] = ()) -> tuple[RemoteRefund, ...]:
        return self._call(self.inner.fetch_refunds, gateway_payment_id, known=known)

    @property
    def settles_by_api(self) -> bool:
        """Whether settlements can be pulled (Razorpay's recon rows); PayGlocal's reports are imported."""
        return isinstance(self.inner, SettlementSource)

    def fetch_settlement_lines(self, year: int, month: int, day: int, *, skip: int,
                               count: int) -> tuple[SettlementLine, ...]:
        return self._call(self._settlement_source().fetch_settlement_lines, year, month, day, skip=skip, count=count)

    def settlement_days(self, moment: datetime) -> tuple[date, ...]:
        return self._settlement_source().settlement_days(moment)

    def _settlement_source(self) -> SettlementSource:
        if not isinstance(self.inner, SettlementSource):
            raise LookupError(f"{self.name} reports no settlements by API: import its reports")
        return self.inner

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        return self.inner.verify_webhook(raw_body, headers)

    def parse_verified_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        return self.inner.parse_verified_webhook(raw_body, headers)

    def verify_callback(self, gateway_order_id: str, gateway_payment_id: str, signature: str) -> CallbackResult:
        return self.inner.verify_callback(gateway_order_id, gateway_payment_id, signature)

    def claimed_order_id(self, raw_body: bytes) -> str | None:
        return self.inner.claimed_order_id(raw_body)

    def _call(self, fn, *args, **kwargs):
        sweeping = PRIORITY.get() == "low"
        try:
            if not sweeping:
                return fn(*args, **kwargs)
            state = self.breaker.state
            if state.name == pybreaker.STATE_CLOSED:
                # CircuitBreaker.call holds one lock across the network call, which would make a worker's
                # sweep threads take turns; a closed state counts failures (in Redis) without it.
                return state.call(fn, *args, **kwargs)
            return self.breaker.call(fn, *args, **kwargs)
        except pybreaker.CircuitBreakerError as exc:
            CIRCUIT_OPEN.labels(self.name).inc()
            raise CircuitOpen(f"{self.name} circuit is open; sweeps paused") from exc
        except GatewayTransient as exc:
            if exc.status is None and not isinstance(exc, GatewayRateLimited):  # no HTTP answer: timeouts, refused
                GATEWAY_REQUESTS.labels(self.name, fn.__name__, "error").inc()
            raise
