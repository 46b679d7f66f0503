"""The embedded set-up (SQLite + stub broker, no Redis): the single scheduler always leads."""

from __future__ import annotations

from worker.coordination import Coordination, LocalLeaderLock
from worker.settings import Settings


def test_without_redis_the_only_scheduler_always_leads():
    coordination = Coordination(Settings(database_url="sqlite://", broker_url="stub://", redis_url=None))
    assert coordination.client is None
    lock = coordination.leader_lock("scheduler", ttl_s=10)
    assert isinstance(lock, LocalLeaderLock)
    assert lock.hold() and lock.hold()
    lock.release()
    assert lock.hold()  # nothing to lose: a restart leads again at once
