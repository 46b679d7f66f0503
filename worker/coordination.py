"""What processes on many machines share: Redis for rate limits, circuit breakers and the
scheduler's leader lock; in-process stand-ins for the embedded demo (no Redis)."""

from __future__ import annotations

import uuid
from datetime import datetime

import pybreaker
import redis
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

from worker.settings import Settings


class LocalLeaderLock:
    """The embedded set-up has a single scheduler: it always leads."""

    def hold(self) -> bool:
        return True

    def release(self) -> None:
        pass


class RedisLeaderLock:
    """A lock with expiry: the leader renews it every round; if it dies, the lock expires and another leads."""

    def __init__(self, client: redis.Redis, key: str, ttl_s: float):
        self._client, self._key, self._ttl_ms = client, key, int(ttl_s * 1000)
        self._token = uuid.uuid4().hex

    def hold(self) -> bool:
        """Take or renew the lock; True while this process leads."""
        if self._client.set(self._key, self._token, nx=True, px=self._ttl_ms):
            return True
        renewed = self._client.eval(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0",
            1, self._key, self._token, self._ttl_ms)
        return bool(renewed)

    def release(self) -> None:
        self._client.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
                          1, self._key, self._token)


class Coordination:
    def __init__(self, settings: Settings):
        url = settings.redis_url or (settings.broker_url if settings.broker_url.startswith(("redis://", "rediss://"))
                                     else None)
        self.namespace = settings.broker_namespace
        self.client = redis.Redis.from_url(url) if url else None
        self.rate_backend = RedisBackend(client=self.client) if self.client else StubBackend()
        self._last_sweep: datetime | None = None

    def mark_sweep(self, at: datetime) -> None:
        """Remember when a sweep last completed (read by ``/metrics`` on any host)."""
        self._last_sweep = at
        if self.client is not None:
            self.client.set(f"{self.namespace}:last_sweep_at", at.timestamp())

    def last_sweep(self) -> float | None:
        if self.client is not None:
            value = self.client.get(f"{self.namespace}:last_sweep_at")
            return float(value) if value else None
        return self._last_sweep.timestamp() if self._last_sweep else None

    def breaker_storage(self, gateway: str) -> pybreaker.CircuitBreakerStorage:
        if self.client is None:
            return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        return pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, self.client,
                                             namespace=f"{self.namespace}:breaker:{gateway}")

    def leader_lock(self, name: str, ttl_s: float):
        if self.client is None:
            return LocalLeaderLock()
        return RedisLeaderLock(self.client, f"{self.namespace}:leader:{name}", ttl_s)
