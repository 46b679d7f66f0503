"""Webhook delivery, shared by both gateways: a queue drained by one background sender thread.

The sender knows nothing about any gateway's format. A gateway module builds each event (raw body bytes,
signature headers, event id) and hands a batch to :meth:`WebhookSender.publish`. The sender then applies
the delivery knobs of :class:`~simulator.config.SimulatorConfig`:

- each event is delivered ``webhook_duplicates`` times (same bytes, same headers): at-least-once
  (razorpay.md §5.4);
- with ``shuffle_webhooks`` the next delivery is picked at random among those ready ("Ordering: not
  guaranteed", razorpay.md §5.4);
- with ``drop_webhooks``, ``deliver=False`` or no URL (the event's own ``url``, else ``webhook_url``), the
  event is recorded as ``lost`` and never sent;
- only a 2xx answered within ``webhook_timeout_s`` is a success (razorpay.md §5.4: "any 2xx within 5
  seconds"). Anything else is retried with exponential backoff (``webhook_backoff_s * 2**n`` simulated
  seconds) until ``webhook_max_attempts`` attempts were made or, razorpay.md §5.4, "for 24 hours after
  event creation timestamp" (``webhook_retry_window_s``): then it is ``failed``;
- an endpoint whose deliveries keep failing for ``webhook_disable_after_s`` (razorpay.md §5.4: "if
  deliveries keep failing for 24 h, the webhook endpoint is disabled") is disabled: its queued and future
  deliveries are recorded as ``disabled`` and not sent, until :meth:`enable` or :meth:`replay` ("Replaying
  re-enables a disabled URL", razorpay.md §5.4). A browser callback (``retry=False``) never disables.

Schedules run on the simulated clock (:mod:`simulator.clock`), so ``clock_scale`` or ``advance`` make a
day of retries pass in seconds.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from simulator.clock import BackgroundLoop, SimClock
from simulator.config import SimulatorConfig, derived_rng

#: Replays reach back at most this far (razorpay.md §5.4: "at most 7 days old").
REPLAY_HORIZON_S = 7 * 24 * 60 * 60
OUTCOMES = ("pending", "delivered", "failed", "lost", "disabled")


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
    #: False for a browser's form post: it is not a webhook subscription, nothing disables it.
    retry: bool = True

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (the body as text: every body the simulator makes is UTF-8/ASCII)."""
        return {"event_id": self.event_id, "event": self.event, "gateway": self.gateway, "created_at": self.created_at,
                "headers": dict(self.headers), "body": self.body.decode("utf-8"), "url": self.url}


@dataclass(eq=False)
class Delivery:
    """One copy of an event on its way to the receiver (an entry of the delivery log)."""

    event: WebhookEvent
    copy: int
    seq: int
    attempts: int = 0
    status_code: int | None = None
    outcome: str = "pending"  # pending | delivered | failed | lost | disabled
    error: str | None = None
    due: float = field(default=0.0, repr=False)  #: simulated epoch seconds

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


@dataclass
class Endpoint:
    """What the sender knows about one receiving URL."""

    failing_since: float | None = None  #: simulated time of the first failure since the last success
    disabled_at: float | None = None


class WebhookSender(BackgroundLoop):
    """Thread-safe delivery queue plus the sender thread (started lazily, stopped by ``close``;
    undelivered deliveries stay ``pending`` in the log)."""

    thread_name = "sim-webhook-sender"

    def __init__(self, config: SimulatorConfig, clock: SimClock):
        self.config = config
        self._events: list[WebhookEvent] = []
        self._log: list[Delivery] = []
        self._pending: list[Delivery] = []
        self._endpoints: dict[str, Endpoint] = {}
        self._in_flight = 0
        self._seq = itertools.count()
        self._rng = derived_rng(config.seed, "webhooks")
        super().__init__(clock)

    # -- producer side -----------------------------------------------------------------------
    def publish(self, events: list[WebhookEvent], *, deliver: bool = True) -> None:
        """Record a batch of events and queue their deliveries atomically (one lock hold)."""
        with self._cond:
            dropped = not deliver or self.config.drop_webhooks
            for event in events:
                url = event.url or self.config.webhook_url
                self._events.append(event)
                for copy in range(self.config.webhook_duplicates):
                    delivery = Delivery(event=event, copy=copy, seq=next(self._seq))
                    self._log.append(delivery)
                    if dropped or not url:
                        delivery.outcome = "lost"
                    elif self._disabled(url):
                        delivery.outcome = "disabled"
                    else:
                        self._pending.append(delivery)
            if self._pending:
                self._ensure_thread()
            self._cond.notify_all()

    def reseed(self, seed: int | None) -> None:
        """Restart the shuffle random stream from ``seed``."""
        with self._cond:
            self._rng = derived_rng(seed, "webhooks")

    def enable(self, url: str | None = None) -> list[str]:
        """Re-enable ``url`` (every disabled endpoint when None), as on Razorpay's Dashboard; returns those enabled."""
        with self._cond:
            enabled = [u for u, e in self._endpoints.items() if e.disabled_at is not None and url in (None, u)]
            for name in enabled:
                self._endpoints[name] = Endpoint()
            return enabled

    def replay(self, event_ids: list[str] | None = None) -> int:
        """Queue once more every event not acknowledged yet (or only ``event_ids``), at most 7 days old.

        razorpay.md §5.4 (Replay): only unacknowledged events, sent "exactly as originally generated", and
        replaying re-enables a disabled URL. Returns how many events were queued.
        """
        self.enable()
        now = self.clock.now()
        with self._cond:
            acknowledged = {d.event.event_id for d in self._log if d.outcome in ("delivered", "pending")}
            queued = 0
            for event in self._events:
                if event.event_id in acknowledged or (event_ids is not None and event.event_id not in event_ids):
                    continue
                if not event.retry or now - event.created_at > REPLAY_HORIZON_S:
                    continue
                copies = sum(1 for d in self._log if d.event is event)
                delivery = Delivery(event=event, copy=copies, seq=next(self._seq), due=now)
                self._log.append(delivery)
                self._pending.append(delivery)
                acknowledged.add(event.event_id)
                queued += 1
            if self._pending:
                self._ensure_thread()
            self._cond.notify_all()
            return queued

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

    def backlog(self) -> int:
        """Deliveries queued or in flight (a cheap read, unlike :meth:`stats`)."""
        with self._cond:
            return len(self._pending) + self._in_flight

    def events(self, since: int = 0) -> list[WebhookEvent]:
        """Every event generated so far (delivered or not), oldest first, from index ``since``."""
        with self._cond:
            return self._events[since:]

    def log(self) -> list[dict[str, Any]]:
        """The delivery log: one entry per copy of each event, in the order they were queued."""
        with self._cond:
            return [d.as_dict() for d in self._log]

    def stats(self) -> dict[str, int]:
        """Counts of events and of deliveries by outcome."""
        with self._cond:
            counts = {"events": len(self._events), "deliveries": len(self._log), "in_flight": self._in_flight,
                      **dict.fromkeys(OUTCOMES, 0)}
            for delivery in self._log:
                counts[delivery.outcome] += 1
            return counts

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """Each endpoint's state: disabled or not, failing since when (simulated epoch seconds)."""
        with self._cond:
            return {url: {"disabled": e.disabled_at is not None, "disabled_at": e.disabled_at,
                          "failing_since": e.failing_since} for url, e in self._endpoints.items()}

    def reset(self) -> None:
        """Forget all events, log entries, queued deliveries and endpoint states."""
        with self._cond:
            self._events.clear()
            self._log.clear()
            self._pending.clear()
            self._endpoints.clear()
            self._cond.notify_all()

    def _disabled(self, url: str) -> bool:
        endpoint = self._endpoints.get(url)
        return endpoint is not None and endpoint.disabled_at is not None

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
                        response = client.post(url, content=delivery.event.body, headers=delivery.event.headers,
                                               timeout=self.config.webhook_timeout_s)
                        status = response.status_code
                    except httpx.HTTPError as exc:
                        error = f"{type(exc).__name__}: {exc}"
                self._finish(delivery, url, status, error)

    def _next(self, me: threading.Thread) -> Delivery | None:
        with self._cond:
            while True:
                if self._stopping or self._thread is not me:
                    return None
                now = self.clock.now()
                ready = [d for d in self._pending if d.due <= now]
                if ready:
                    pick = self._rng.choice(ready) if self.config.shuffle_webhooks else ready[0]
                    self._pending.remove(pick)
                    self._in_flight += 1
                    return pick
                wait = self.clock.real_seconds(min((d.due for d in self._pending), default=now + 1.0) - now)
                self._cond.wait(min(max(wait, 0.001), 1.0))

    def _finish(self, delivery: Delivery, url: str | None, status: int | None, error: str | None) -> None:
        with self._cond:
            self._in_flight -= 1
            if not url:
                delivery.outcome = "lost"
            elif delivery in self._log:  # not forgotten by a reset meanwhile
                self._settle(delivery, url, status, error)
            self._cond.notify_all()

    def _settle(self, delivery: Delivery, url: str, status: int | None, error: str | None) -> None:
        now = self.clock.now()
        delivery.attempts += 1
        delivery.status_code = status
        delivery.error = error
        endpoint = self._endpoints.setdefault(url, Endpoint())
        if status is not None and 200 <= status < 300:
            delivery.outcome = "delivered"
            endpoint.failing_since = None
            return
        event = delivery.event
        if event.retry:
            if endpoint.failing_since is None:  # failing since this event was created (whole seconds)
                endpoint.failing_since = min(now, float(event.created_at))
            if endpoint.disabled_at is None and now - endpoint.failing_since >= self.config.webhook_disable_after_s:
                self._disable(url, endpoint, now)  # razorpay.md §5.4: disabled after 24 h of failures
            if endpoint.disabled_at is not None:
                delivery.outcome = "disabled"
                return
        limit = event.max_attempts or self.config.webhook_max_attempts
        window_ends = event.created_at + self.config.webhook_retry_window_s
        if (limit is not None and delivery.attempts >= limit) or now >= window_ends:
            delivery.outcome = "failed"  # razorpay.md §5.4: retries stop 24 h after the event's creation
            return
        delivery.due = min(now + self.config.webhook_backoff_s * 2 ** (delivery.attempts - 1), window_ends)
        self._pending.append(delivery)

    def _disable(self, url: str, endpoint: Endpoint, now: float) -> None:
        endpoint.disabled_at = now
        for queued in [d for d in self._pending if (d.event.url or self.config.webhook_url) == url]:
            self._pending.remove(queued)
            queued.outcome = "disabled"
