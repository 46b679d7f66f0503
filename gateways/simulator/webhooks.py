"""Webhook delivery: a queue drained by one background sender thread.

The sender knows nothing about any gateway's format. A gateway module builds each event
(raw body bytes, signature headers, event id) and hands a batch to :meth:`WebhookSender.publish`.
The sender then applies the delivery knobs of :class:`~gateways.simulator.config.SimulatorConfig`:

- each event is delivered ``webhook_duplicates`` times (same bytes, same headers);
- with ``shuffle_webhooks`` the next delivery is picked at random among those ready;
- with ``drop_webhooks``, ``deliver=False`` or no URL (the event's own ``url``, else ``webhook_url``),
  the event is recorded as ``lost`` and never sent;
- a non-2xx answer or a connection error is retried after ``webhook_backoff_s * 2**n`` seconds,
  at most ``webhook_max_attempts`` times in all, then recorded as ``failed``.

A batch (all events of one customer action) is queued under one lock hold, so the deliveries
of one action are shuffled together, reproducibly for a given seed; deliveries of separate
actions interleave depending on how far the sender has got.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateways.simulator.config import SimulatorConfig, derived_rng


@dataclass(frozen=True)
class WebhookEvent:
    """One event as generated: the exact bytes and headers every delivery of it carries."""

    event_id: str
    event: str
    body: bytes
    headers: dict[str, str]
    created_at: int
    gateway: str
    #: Where to post it; ``None`` means the ``webhook_url`` knob (PayGlocal posts to merchantCallbackURL).
    url: str | None = None
    #: Delivery attempts for this event; ``None`` means the ``webhook_max_attempts`` knob
    #: (a browser callback form is posted once: 1).
    max_attempts: int | None = None


@dataclass(eq=False)
class Delivery:
    """One copy of an event on its way to the receiver (an entry of the delivery log)."""

    event: WebhookEvent
    copy: int
    seq: int
    attempts: int = 0
    status_code: int | None = None
    outcome: str = "pending"  # pending | delivered | failed | lost
    error: str | None = None
    due: float = field(default=0.0, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The log entry as JSON-ready data."""
        return {
            "event_id": self.event.event_id,
            "event": self.event.event,
            "gateway": self.event.gateway,
            "copy": self.copy,
            "attempts": self.attempts,
            "status_code": self.status_code,
            "outcome": self.outcome,
            "error": self.error,
        }


class WebhookSender:
    """Thread-safe delivery queue plus the sender thread (started lazily, stopped by ``close``)."""

    def __init__(self, config: SimulatorConfig):
        self.config = config
        self._cond = threading.Condition()
        self._events: list[WebhookEvent] = []
        self._log: list[Delivery] = []
        self._pending: list[Delivery] = []
        self._in_flight = 0
        self._seq = itertools.count()
        self._rng = derived_rng(config.seed, "webhooks")
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- producer side -----------------------------------------------------------------------
    def publish(self, events: list[WebhookEvent], *, deliver: bool = True) -> None:
        """Record a batch of events and queue their deliveries atomically (one lock hold)."""
        with self._cond:
            dropped = not deliver or self.config.drop_webhooks
            for event in events:
                lost = dropped or not (event.url or self.config.webhook_url)
                self._events.append(event)
                for copy in range(self.config.webhook_duplicates):
                    delivery = Delivery(event=event, copy=copy, seq=next(self._seq))
                    self._log.append(delivery)
                    if lost:
                        delivery.outcome = "lost"
                    else:
                        self._pending.append(delivery)
            if self._pending:
                self._ensure_thread()
            self._cond.notify_all()

    def reseed(self, seed: int | None) -> None:
        """Restart the shuffle random stream from ``seed``."""
        with self._cond:
            self._rng = derived_rng(seed, "webhooks")

    # -- inspection --------------------------------------------------------------------------
    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is queued or in flight; False if ``timeout`` seconds ran out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def events(self) -> list[WebhookEvent]:
        """Every event generated so far (delivered or not), oldest first."""
        with self._cond:
            return list(self._events)

    def log(self) -> list[dict[str, Any]]:
        """The delivery log: one entry per copy of each event, in the order they were queued."""
        with self._cond:
            return [d.as_dict() for d in self._log]

    def stats(self) -> dict[str, int]:
        """Counts of events and of deliveries by outcome."""
        with self._cond:
            counts = {"events": len(self._events), "deliveries": len(self._log), "in_flight": self._in_flight}
            for outcome in ("pending", "delivered", "failed", "lost"):
                counts[outcome] = sum(1 for d in self._log if d.outcome == outcome)
            return counts

    def reset(self) -> None:
        """Forget all events, log entries and queued deliveries."""
        with self._cond:
            self._events.clear()
            self._log.clear()
            self._pending.clear()
            self._cond.notify_all()

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Stop the sender thread; undelivered deliveries stay ``pending`` in the log."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._stopping = True
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            self._stopping = False

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="sim-webhook-sender", daemon=True)
            self._thread.start()

    # -- sender thread -----------------------------------------------------------------------
    def _run(self) -> None:
        me = threading.current_thread()
        with httpx.Client() as client:
            while True:
                delivery = self._next(me)
                if delivery is None:
                    return
                url = delivery.event.url or self.config.webhook_url
                status, error = None, None
                if url:
                    try:
                        response = client.post(
                            url,
                            content=delivery.event.body,
                            headers=delivery.event.headers,
                            timeout=self.config.webhook_timeout_s,
                        )
                        status = response.status_code
                    except httpx.HTTPError as exc:
                        error = f"{type(exc).__name__}: {exc}"
                self._finish(delivery, url, status, error)

    def _next(self, me: threading.Thread) -> Delivery | None:
        with self._cond:
            while True:
                if self._stopping or self._thread is not me:
                    return None
                now = time.monotonic()
                ready = [d for d in self._pending if d.due <= now]
                if ready:
                    pick = self._rng.choice(ready) if self.config.shuffle_webhooks else ready[0]
                    self._pending.remove(pick)
                    self._in_flight += 1
                    return pick
                wait = min((d.due for d in self._pending), default=now + 1.0) - now
                self._cond.wait(max(wait, 0.001))

    def _finish(self, delivery: Delivery, url: str | None, status: int | None, error: str | None) -> None:
        with self._cond:
            self._in_flight -= 1
            if not url:
                delivery.outcome = "lost"
            else:
                delivery.attempts += 1
                delivery.status_code = status
                delivery.error = error
                if status is not None and 200 <= status < 300:
                    delivery.outcome = "delivered"
                elif delivery.attempts >= (delivery.event.max_attempts or self.config.webhook_max_attempts):
                    delivery.outcome = "failed"
                elif delivery in self._log:  # not forgotten by a reset meanwhile
                    backoff = self.config.webhook_backoff_s * 2 ** (delivery.attempts - 1)
                    delivery.due = time.monotonic() + backoff
                    self._pending.append(delivery)
            self._cond.notify_all()
