"""The scheduler's leader lock on Redis (redis-py's ``Lock``): one leader at a time, renewed every
round from whichever thread runs it, released on shutdown, and taken over when a leader dies."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.runtime import NAMESPACE
from worker.coordination import Coordination, RedisLeaderLock
from worker.scheduler import sweep_round
from worker.settings import Settings


@pytest.fixture
def key(redis_client):
    name = f"{NAMESPACE}:leader-test:{uuid.uuid4().hex[:8]}"
    yield name
    redis_client.delete(name)


def test_renewing_keeps_leadership_past_the_ttl(redis_client, key):
    leader, standby = RedisLeaderLock(redis_client, key, ttl_s=0.3), RedisLeaderLock(redis_client, key, ttl_s=0.3)
    assert leader.hold()
    for _ in range(6):  # 0.6 s in all, twice the TTL: each round renews it
        time.sleep(0.1)
        assert leader.hold() and not standby.hold()
    assert 0 < redis_client.pttl(key) <= 300


def test_rounds_on_other_threads_renew_the_same_leadership(redis_client, key):
    """APScheduler runs rounds on pool threads: a thread-local token would lose the lock to itself."""
    leader, standby = RedisLeaderLock(redis_client, key, ttl_s=5), RedisLeaderLock(redis_client, key, ttl_s=5)
    results: list[bool] = []
    for _ in range(3):
        thread = threading.Thread(target=lambda: results.append(leader.hold()))
        thread.start()
        thread.join()
    assert results == [True, True, True] and not standby.hold()
    leader.release()  # on the main thread, as run_scheduler's ``finally`` does
    assert standby.hold()


def test_releasing_on_shutdown_hands_over_at_once(redis_client, key):
    leader, standby = RedisLeaderLock(redis_client, key, ttl_s=30), RedisLeaderLock(redis_client, key, ttl_s=30)
    assert leader.hold() and not standby.hold()
    leader.release()
    assert standby.hold()  # no wait for the 30 s expiry
    assert not leader.hold()


def test_a_dead_leaders_release_never_frees_the_new_leaders_lock(redis_client, key):
    old, new = RedisLeaderLock(redis_client, key, ttl_s=0.2), RedisLeaderLock(redis_client, key, ttl_s=5)
    assert old.hold()
    time.sleep(0.35)  # the old leader stalled past its TTL
    assert new.hold()
    old.release()  # it wakes up and shuts down: the lock is no longer its to release
    assert redis_client.exists(key) and new.hold() and not old.hold()
    RedisLeaderLock(redis_client, key, ttl_s=1).release()  # never held: nothing happens
    assert redis_client.exists(key)


def test_coordination_builds_the_redis_lock_under_the_namespace(redis_client):
    from tests.conftest import REDIS_URL

    namespace = NAMESPACE
    coordination = Coordination(Settings(broker_url=REDIS_URL, broker_namespace=namespace))
    first, second = coordination.leader_lock("scheduler", ttl_s=5), coordination.leader_lock("scheduler", ttl_s=5)
    try:
        assert isinstance(first, RedisLeaderLock)
        assert first.hold() and not second.hold()
        assert redis_client.exists(f"{namespace}:leader:scheduler")
    finally:
        first.release()
        coordination.client.close()


def test_a_round_without_leadership_sweeps_nothing(redis_client, key):
    leader, standby = RedisLeaderLock(redis_client, key, ttl_s=5), RedisLeaderLock(redis_client, key, ttl_s=5)
    assert leader.hold()
    assert not sweep_round(deps=None, leader=standby, actors=None).led  # returns before touching deps
    leader.release()
