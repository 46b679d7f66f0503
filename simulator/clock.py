"""Simulated time, shared by both gateways and the webhook sender.

:class:`SimClock` runs ``scale`` times as fast as the real clock, and ``advance()`` jumps it forward, so a
day of Razorpay's webhook retries (razorpay.md §5.4) or the 10 minutes a payment stays ``created``
(razorpay.md §3.4) pass in seconds. With scale 1 and no advance it is the real wall clock.

Request signatures (PayGlocal's 5-minute JWS lifetime) are checked against the *real* clock: they are
about the merchant's machine, not about the simulated world.

:class:`Timers` calls functions at simulated times, on one background thread started when first needed.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class SimClock:
    """Epoch seconds in simulated time: real time times ``scale``, plus whatever ``advance`` added."""

    def __init__(self, scale: float = 1.0):
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._scale = scale
        self._anchor_sim = time.time()
        self._anchor_real = time.monotonic()

    def now(self) -> float:
        """The simulated time, epoch seconds."""
        with self._lock:
            return self._anchor_sim + (time.monotonic() - self._anchor_real) * self._scale

    @property
    def scale(self) -> float:
        """Simulated seconds per real second."""
        return self._scale

    def real_seconds(self, simulated: float) -> float:
        """How long ``simulated`` seconds take on the real clock."""
        return max(simulated, 0.0) / self._scale

    def set_scale(self, scale: float) -> None:
        """Run ``scale`` times as fast as the real clock from now on (time so far is kept)."""
        if scale <= 0:
            raise ValueError("clock scale must be positive")
        with self._lock:
            now = time.monotonic()
            self._anchor_sim += (now - self._anchor_real) * self._scale
            self._anchor_real, self._scale = now, scale
        self._notify()

    def advance(self, seconds: float) -> float:
        """Jump ``seconds`` forward (never back); returns the new simulated time."""
        if seconds < 0:
            raise ValueError("the simulated clock only moves forward")
        with self._lock:
            self._anchor_sim += seconds
        self._notify()
        return self.now()

    def reset(self) -> None:
        """Back to the real wall clock (the scale is kept)."""
        with self._lock:
            self._anchor_sim, self._anchor_real = time.time(), time.monotonic()
        self._notify()

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the clock jumps or changes speed (sleepers must re-compute)."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()


class BackgroundLoop:
    """A daemon thread that runs ``_run`` under the condition ``_cond``: started on demand
    (:meth:`_ensure_thread`, with ``_cond`` held), woken when the clock jumps, stopped by :meth:`close`
    and started again by the next demand. ``_run`` returns when it finds it is no longer ``_thread``."""

    thread_name = "sim-loop"

    def __init__(self, clock: SimClock):
        self.clock = clock
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        clock.subscribe(self._wake)

    def _run(self) -> None:
        raise NotImplementedError

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (work not done stays queued; the next demand starts it again)."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._stopping = True
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            self._stopping = False


class Timers(BackgroundLoop):
    """Functions to call at simulated times (a payment left ``created`` fails 10 minutes later, ...)."""

    thread_name = "sim-timers"

    def __init__(self, clock: SimClock):
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        super().__init__(clock)

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` once the simulated clock reaches ``when`` (epoch seconds)."""
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), fn))
            self._ensure_thread()
            self._cond.notify_all()

    def clear(self) -> None:
        """Forget every timer not yet due."""
        with self._cond:
            self._heap.clear()
            self._cond.notify_all()

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while True:
                    if self._stopping or self._thread is not me:
                        return
                    now = self.clock.now()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, fn = heapq.heappop(self._heap)
                        break
                    wait = self.clock.real_seconds(self._heap[0][0] - now) if self._heap else 1.0
                    self._cond.wait(min(max(wait, 0.001), 1.0))
            fn()
