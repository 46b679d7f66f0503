"""The dead-letter queues on Redis (``<namespace>:<queue>.XQ``): list and replay, with the reason kept."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import dramatiq

from worker.deps import Deps


@dataclass(frozen=True, slots=True)
class DeadLetter:
    queue: str
    key: str  #: the broker's id of this copy (the dead-letter queue's member)
    message_id: str
    actor: str
    args: list[Any]
    kwargs: dict[str, Any]
    failed_at_ms: int
    retries: int
    error: str | None


def _keys(deps: Deps, queue: str) -> tuple[str, str]:
    ns = deps.settings.broker_namespace
    return f"{ns}:{queue}.XQ", f"{ns}:{queue}.XQ.msgs"


def list_dead_letters(*, deps: Deps, queues: tuple[str, ...]) -> list[DeadLetter]:
    client = deps.coordination.client
    if client is None:
        raise RuntimeError("the dead-letter queue lives in Redis: set RECON_BROKER_URL to redis://")
    found = []
    for queue in queues:
        zset, msgs = _keys(deps, queue)
        for key, score in client.zrange(zset, 0, -1, withscores=True):
            raw = client.hget(msgs, key)
            if raw is None:
                continue
            data = json.loads(raw)
            options = data.get("options", {})
            found.append(DeadLetter(queue, key.decode(), data["message_id"], data["actor_name"], data.get("args", []),
                                    data.get("kwargs", {}), int(score), options.get("retries", 0),
                                    options.get("traceback", "").strip().splitlines()[-1:][0]
                                    if options.get("traceback") else None))
    return found


def replay_dead_letter(letter: DeadLetter, *, deps: Deps, broker: dramatiq.Broker) -> None:
    """Enqueue the message again (same id, retries reset) and drop it from the dead-letter queue."""
    client = deps.coordination.client
    zset, msgs = _keys(deps, letter.queue)
    raw = client.hget(msgs, letter.key)
    if raw is None:
        return
    data = json.loads(raw)
    options = {k: v for k, v in data.get("options", {}).items()
               if k not in ("retries", "traceback", "redis_message_id")}
    broker.enqueue(dramatiq.Message(queue_name=data["queue_name"], actor_name=data["actor_name"],
                                    args=tuple(data.get("args", ())), kwargs=data.get("kwargs", {}), options=options,
                                    message_id=data["message_id"], message_timestamp=data["message_timestamp"]))
    client.zrem(zset, letter.key)
    client.hdel(msgs, letter.key)
