"""Configuration and run-time knobs of the gateway simulator.

Everything here is plain data. The simulator reads the config on every request and every
webhook delivery, so changing a knob at run time (``Simulator.set_knobs``) takes effect at once.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

#: Knobs that may be changed at run time (``Simulator.set_knobs`` / ``POST /_sim/knobs``).
KNOBS: frozenset[str] = frozenset(
    {
        "webhook_url",
        "latency_ms",
        "error_rate",
        "rate_limit_rate",
        "timeout_rate",
        "timeout_sleep_s",
        "webhook_duplicates",
        "shuffle_webhooks",
        "drop_webhooks",
        "seed",
        "auto_capture",
        "webhook_max_attempts",
        "webhook_backoff_s",
        "webhook_timeout_s",
    }
)

_RATES = ("error_rate", "rate_limit_rate", "timeout_rate")


@dataclass
class SimulatorConfig:
    """How the simulated gateway behaves.

    Rates are fractions in ``[0, 1]`` of ``/v1`` API calls that get the failure; they are drawn
    in this order: rate limit (429), server error (5xx), timeout (answer after
    ``timeout_sleep_s``). ``/_sim/`` control calls are never affected.
    """

    key_id: str = "rzp_test_sim00000000001"
    key_secret: str = "sim_key_secret_0000000001"
    webhook_secret: str = "sim_webhook_secret_000001"
    account_id: str = "acc_SimAccount0001"
    webhook_url: str | None = None
    latency_ms: int = 0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_sleep_s: float = 5.0
    webhook_duplicates: int = 1
    shuffle_webhooks: bool = False
    drop_webhooks: bool = False
    seed: int | None = None
    auto_capture: bool = True
    webhook_max_attempts: int = 5
    webhook_backoff_s: float = 0.05
    webhook_timeout_s: float = 5.0
    #: PayGlocal: our merchant id, and the merchant's PUBLIC key (PEM) that verifies our JWS. With no
    #: key, the simulator makes a merchant key pair and exposes its private half (``sim.payglocal``).
    payglocal_merchant_id: str = "sim_mid_0001"
    payglocal_merchant_public_pem: str | None = None
    payglocal_merchant_kid: str = "sim-merchant-kid-0001"
    #: PayGlocal's own key pair (signs callbacks, decrypts bodies); generated at start when None.
    payglocal_private_pem: str | None = None
    payglocal_kid: str = "sim-payglocal-kid-0001"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` when a knob is out of range."""
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        if self.latency_ms < 0 or self.timeout_sleep_s < 0:
            raise ValueError("latency_ms and timeout_sleep_s must not be negative")
        if self.webhook_duplicates < 1:
            raise ValueError("webhook_duplicates must be at least 1")
        if self.webhook_max_attempts < 1:
            raise ValueError("webhook_max_attempts must be at least 1")
        if self.webhook_backoff_s < 0 or self.webhook_timeout_s <= 0:
            raise ValueError("webhook_backoff_s must be >= 0 and webhook_timeout_s > 0")

    def update(self, **knobs: Any) -> None:
        """Change run-time knobs in place; unknown names or bad values raise ``ValueError``.

        The update is all-or-nothing: on error the config is left unchanged.
        """
        unknown = set(knobs) - KNOBS
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(sorted(unknown))}")
        candidate = dataclasses.replace(self, **knobs)  # runs validate()
        for name in knobs:
            setattr(self, name, getattr(candidate, name))

    def knobs(self) -> dict[str, Any]:
        """The current run-time knobs (no secrets)."""
        return {name: getattr(self, name) for name in sorted(KNOBS)}


def derived_rng(seed: int | None, purpose: str) -> random.Random:
    """A ``random.Random`` for one purpose, derived from ``seed`` (unseeded when ``seed`` is None).

    Separate streams keep, say, webhook shuffling reproducible however many ids were drawn.
    """
    if seed is None:
        return random.Random()
    return random.Random(f"{seed}:{purpose}")
