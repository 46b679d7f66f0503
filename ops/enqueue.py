"""Enqueueing from a request after its rows committed: the rows are the truth, so a broker that is down loses
nothing (the sweeps send what is due), and the request still answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from worker.actors import Actors, events
from worker.coordination import Coordination
from worker.logging import get_logger
from worker.metrics import INBOX_MESSAGES


def inbox_event(actors: Actors, inbox_id: int, *args: str, **context: str) -> bool:
    """Process a committed inbox row; whether the message went. If the broker is down the row waits for the
    inbox sweep."""
    try:
        actors.process_inbox_event.send(inbox_id, *args)
    except Exception as exc:  # noqa: BLE001  (the inbox sweep re-enqueues the committed row)
        get_logger(**context).error("inbox_enqueue_failed", inbox_id=inbox_id, error=str(exc))
        return False
    return True


def stored_webhook(actors: Actors, coordination: Coordination, inbox_id: int, coalesce_key: str | None,
                   gateway: str) -> None:
    """Process a committed webhook row, with no message of its own when one about the same payment is queued:
    that message's worker applies this row too (with its own, or in its look after its commit: 3 webhooks per
    payment, about 1 message).

    A row held back by a marker whose message then fails to send (or whose web process dies between claim and
    send) waits for the inbox sweep, as a row whose own send failed always has."""
    if coalesce_key is not None and not coordination.claim_queued(coalesce_key):
        INBOX_MESSAGES.labels(gateway, "coalesced").inc()
        return
    if inbox_event(actors, inbox_id, *([coalesce_key] if coalesce_key else []), gateway=gateway):
        INBOX_MESSAGES.labels(gateway, "sent").inc()
    elif coalesce_key is not None:
        with contextlib.suppress(Exception):  # else this payment's next rows would wait for the sweep too
            coordination.release_queued(coalesce_key)


def event_delivery(actors: Actors, endpoint: str, order_id: str) -> None:
    """Send an order's due event deliveries to ``endpoint`` now."""
    events.send_one(actors.deliver_events, endpoint, order_id)


async def within(timeout_s: float, call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """Run a blocking ``call`` in the thread pool and wait at most ``timeout_s``: (True, its result), or (False,
    None) while it goes on running to its end (a recheck the caller stopped waiting for still finishes)."""
    running = asyncio.ensure_future(run_in_threadpool(call, *args, **kwargs))
    try:
        return True, await asyncio.wait_for(asyncio.shield(running), timeout=timeout_s)
    except TimeoutError:
        return False, None
