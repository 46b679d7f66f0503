"""Benchmark 3: support rechecks under load.

``POST /orders/{id}/recheck`` with ``wait=true`` at a fixed rate (open loop: one request every
1/rate seconds whatever the previous ones are doing), sent to ``recon web`` while the sweep of
benchmark 2 runs. The rechecked orders are a separate set that the sweep does not touch, so the two
measurements do not count each other's work; they share the gateway (rate limit, simulator latency),
the database, Redis and the CPU. The set is cycled through if the sweep outlasts it. Latency is
request sent → answer received, at the client.
Goal: p99 ≤ one gateway round trip (the simulator latency: a recheck is one request) + 100 ms.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench import harness


class RecheckLoad:
    """Sends rechecks at ``rate`` per second from a background thread until ``stop()``."""

    def __init__(self, web_url: str, order_ids: list[str], rate: float, *, max_requests: int = 100_000):
        self.url = web_url
        self.order_ids = order_ids
        self.rate = rate
        self.max_requests = max_requests
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.outcomes: Counter = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="recheck-load", daemon=True)
        self._client = httpx.Client(base_url=web_url, headers=harness.AUTH, timeout=30,
                                    limits=httpx.Limits(max_connections=50, max_keepalive_connections=50))
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def start(self) -> RecheckLoad:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        self.stopped_at = time.monotonic()
        self._client.close()

    def _one(self, order_id: str) -> None:
        started = time.perf_counter()
        try:
            response = self._client.post(f"/orders/{order_id}/recheck",
                                         json={"requested_by": "support:bench", "reason": "benchmark", "wait": True})
            elapsed = time.perf_counter() - started
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
            with self._lock:
                self.statuses[response.status_code] += 1
                self.outcomes[body.get("reason") or body.get("status") or "?"] += 1
                if response.status_code == 200:
                    self.latencies.append(elapsed)
        except httpx.HTTPError as exc:
            with self._lock:
                self.statuses[type(exc).__name__] += 1

    def _run(self) -> None:
        period = 1.0 / self.rate
        with ThreadPoolExecutor(max_workers=32, thread_name_prefix="recheck") as pool:
            next_at = time.monotonic()
            for sent, order_id in enumerate(itertools.cycle(self.order_ids)):
                if self._stop.is_set() or sent >= self.max_requests:
                    break
                pool.submit(self._one, order_id)
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def summary(self, sim_latency_ms: int) -> dict:
        p50, p99 = harness.percentile(self.latencies, 50), harness.percentile(self.latencies, 99)
        sent = sum(self.statuses.values())
        duration = (self.stopped_at or time.monotonic()) - (self.started_at or time.monotonic())
        summary = {
            "requests": sent, "rate_target_per_s": self.rate,
            "rate_sent_per_s": round(sent / duration, 2) if duration else None,
            "statuses": {str(k): v for k, v in self.statuses.items()}, "outcomes": dict(self.outcomes),
            "p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "p99_ms": None if p99 is None else round(p99 * 1000, 1),
            "max_ms": round(max(self.latencies) * 1000, 1) if self.latencies else None,
        }
        target = sim_latency_ms + 100
        ok = bool(self.latencies) and self.statuses.get(200, 0) == sent
        summary["goals"] = [{
            "benchmark": "3 recheck latency under load",
            "goal": f"p99 ≤ one round trip + 100 ms = {target} ms (rechecks at {self.rate:g}/s during the sweep)",
            "measured": f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms over {sent} rechecks"
                        + ("" if ok else f" (statuses {summary['statuses']})"),
            "baseline": f"simulator latency {sim_latency_ms} ms per request",
            "ratio": round(summary["p99_ms"] / target, 3) if summary["p99_ms"] else None,
            "target": "≤ 1.0",
            "met": ok and summary["p99_ms"] is not None and summary["p99_ms"] <= target,
        }]
        return summary
