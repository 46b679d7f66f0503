"""Fault injection shared by both gateways: latency, 429, 5xx and timeouts in front of their APIs.

The faults act before authentication, the way a load balancer or rate limiter in front of the real API
would. A "timeout" is processed normally and answered only after ``timeout_sleep_s``, so the client gives
up on a request whose effect happened (the nasty case for retries). Each gateway says how its own edge
answers a 429 or a 5xx (:class:`FaultAnswers`); ``/_sim/`` is never affected.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from simulator.config import SimulatorConfig, derived_rng

SERVER_ERRORS = (500, 502, 503, 504)
Middleware = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


@dataclass(frozen=True)
class FaultAnswers:
    """How one gateway's edge answers an injected fault, for the paths under ``prefix``."""

    prefix: str
    rate_limited: Callable[[], Response]
    server_error: Callable[[int], Response]


class Faults:
    """Draws one fault (or none) per gateway API call from the config's rates, reproducibly for a seed."""

    def __init__(self, config: SimulatorConfig):
        self.config = config
        self._lock = threading.Lock()
        self._rng = derived_rng(config.seed, "faults")

    def reseed(self, seed: int | None) -> None:
        """Restart the random stream from ``seed``."""
        with self._lock:
            self._rng = derived_rng(seed, "faults")

    def draw(self) -> str | int | None:
        """For one API call: ``429``, a 5xx status, ``"timeout"`` or None (answer normally)."""
        cfg = self.config
        with self._lock:
            if cfg.rate_limit_rate and self._rng.random() < cfg.rate_limit_rate:
                return 429
            if cfg.error_rate and self._rng.random() < cfg.error_rate:
                return self._rng.choice(SERVER_ERRORS)
            if cfg.timeout_rate and self._rng.random() < cfg.timeout_rate:
                return "timeout"
        return None

    def middleware(self, answers: Sequence[FaultAnswers]) -> Middleware:
        """An HTTP middleware applying the faults to the gateways' paths."""

        async def inject(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            path = request.url.path
            gateway = next((a for a in answers if path.startswith(a.prefix)), None)
            if gateway is None:
                return await call_next(request)
            if self.config.latency_ms:
                await asyncio.sleep(self.config.latency_ms / 1000)
            fault = self.draw()
            if fault == 429:
                return gateway.rate_limited()
            if isinstance(fault, int):
                return gateway.server_error(fault)
            response = await call_next(request)
            if fault == "timeout":
                await asyncio.sleep(self.config.timeout_sleep_s)
            return response

        return inject
