"""What processes on many machines share: Redis for rate limits, circuit breakers, the scheduler's leader
lock and the "a message is queued" markers of webhook coalescing; in-process stand-ins for the embedded
demo (no Redis)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Protocol

import pybreaker
import redis
from redis.exceptions import LockError
from redis.lock import Lock

from worker.settings import Settings


class LeaderLock(Protocol):
    """What the scheduler needs of its lock: ``hold`` before each round, ``release`` on shutdown."""

    def hold(self) -> bool: ...

    def release(self) -> None: ...


class LocalLeaderLock:
    """The embedded set-up has a single scheduler: it always leads."""

    def hold(self) -> bool:
        return True

    def release(self) -> None:
        pass


class RedisLeaderLock:
    """redis-py's :class:`redis.lock.Lock` with expiry: the leader renews it every round; if the leader
    dies, the lock expires after ``ttl_s`` and a standby takes it on its next round.

    Not thread-local: APScheduler runs each round on a pool thread, and shutdown releases on another.
    """

    def __init__(self, client: redis.Redis, key: str, ttl_s: float):
        self._lock = Lock(client, key, timeout=ttl_s, blocking=False, thread_local=False)

    def hold(self) -> bool:
        """Renew the lock if this process holds it, else try to take it; True while this process leads."""
        try:
            return self._lock.reacquire()  # resets the expiry to ``ttl_s``
        except LockError:  # never held, or expired (maybe taken by another scheduler since)
            return self._lock.acquire()

    def release(self) -> None:
        """Give up leadership at once (a standby leads on its next round); a lost lock is left alone."""
        with contextlib.suppress(LockError):  # not held, or expired and maybe another's by now
            self._lock.release()


#: How long a "message queued" marker outlives a message that never releases it (lost, dead-lettered, dropped
#: as too old). Until then rows of its payment send no messages of their own; the inbox sweep sends them.
QUEUED_MARKER_TTL_MS = 30_000


class Coordination:
    def __init__(self, settings: Settings):
        url = settings.redis_url or (settings.broker_url if settings.broker_url.startswith(("redis://", "rediss://"))
                                     else None)
        self.namespace = settings.broker_namespace
        self.client = redis.Redis.from_url(url) if url else None
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

    def claim_queued(self, key: str) -> bool:
        """Whether the caller must send the message for ``key``: True unless a message for it is already
        queued or being applied, whose worker releases the marker once its row's transaction commits and then
        applies what ``key`` names still pending, so sees every row committed before this call. Without a shared
        Redis, or with Redis failing: always True."""
        if self.client is None:
            return True
        try:
            return bool(self.client.set(self._queued(key), b"1", nx=True, px=QUEUED_MARKER_TTL_MS))
        except redis.RedisError:
            return True

    def release_queued(self, key: str) -> None:
        """The message for ``key`` has committed its row: rows committed from now on send messages of their own. Raises
        on a Redis failure; the caller logs it and goes on (the marker expires, the inbox sweep sends what it
        held back)."""
        if self.client is not None:
            self.client.delete(self._queued(key))

    def _queued(self, key: str) -> str:
        return f"{self.namespace}:queued:{key}"

    def breaker_storage(self, gateway: str) -> pybreaker.CircuitBreakerStorage:
        if self.client is None:
            return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        return pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, self.client,
                                             namespace=f"{self.namespace}:breaker:{gateway}")

    def leader_lock(self, name: str, ttl_s: float) -> LeaderLock:
        if self.client is None:
            return LocalLeaderLock()
        return RedisLeaderLock(self.client, f"{self.namespace}:leader:{name}", ttl_s)
