"""Configuration and run-time knobs of the gateway simulator, as one pydantic model.

The simulator reads the config on every request and every webhook delivery, so changing a knob at run time
(``Simulator.set_knobs`` / ``POST /_sim/knobs``) takes effect at once. Times of the webhook schedule are in
*simulated* seconds (see :mod:`simulator.clock`): with ``clock_scale`` 1 they are real seconds.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: One day, in seconds: Razorpay retries a webhook "for 24 hours after event creation timestamp" and
#: disables an endpoint whose deliveries "keep failing for 24 h" (razorpay.md §0.3, §5.4).
DAY_S = 24 * 60 * 60

#: Knobs that may be changed at run time (``Simulator.set_knobs`` / ``POST /_sim/knobs``).
KNOBS: frozenset[str] = frozenset({
    "webhook_url", "latency_ms", "error_rate", "rate_limit_rate", "timeout_rate", "timeout_sleep_s",
    "webhook_duplicates", "shuffle_webhooks", "drop_webhooks", "seed", "auto_capture", "webhook_max_attempts",
    "webhook_backoff_s", "webhook_timeout_s", "webhook_retry_window_s", "webhook_disable_after_s", "clock_scale",
    "refund_processed_after_s", "refund_shape", "settlement_delay_s", "settlement_fee_bp", "settlement_tax_bp",
    "settlement_processed_after_s",
})


class SimulatorConfig(BaseModel):
    """How the simulated gateways behave.

    Rates are fractions in ``[0, 1]`` of gateway API calls that get the failure; they are drawn in this
    order: rate limit (429), server error (5xx), timeout (answer after ``timeout_sleep_s``). ``/_sim/``
    control calls are never affected.
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    key_id: str = "rzp_test_sim00000000001"
    key_secret: str = "sim_key_secret_0000000001"
    webhook_secret: str = "sim_webhook_secret_000001"
    account_id: str = "acc_SimAccount0001"
    webhook_url: str | None = None
    latency_ms: int = Field(0, ge=0)
    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    rate_limit_rate: float = Field(0.0, ge=0.0, le=1.0)
    timeout_rate: float = Field(0.0, ge=0.0, le=1.0)
    timeout_sleep_s: float = Field(5.0, ge=0.0)
    webhook_duplicates: int = Field(1, ge=1)
    shuffle_webhooks: bool = False
    drop_webhooks: bool = False
    seed: int | None = None
    auto_capture: bool = True
    #: Delivery attempts per webhook copy; ``None``: retry until ``webhook_retry_window_s`` has passed.
    webhook_max_attempts: int | None = Field(5, ge=1)
    #: The first retry waits this long (simulated seconds), each next one twice as long (exponential backoff).
    webhook_backoff_s: float = Field(0.05, ge=0.0)
    #: A receiver answering later than this (real seconds) has failed (Razorpay: 5 s, razorpay.md §5.4).
    webhook_timeout_s: float = Field(5.0, gt=0.0)
    #: No retry is made later than this after the event's creation (razorpay.md §5.4: 24 hours).
    webhook_retry_window_s: float = Field(float(DAY_S), gt=0.0)
    #: An endpoint failing for this long without a success is disabled (razorpay.md §5.4: after 24 h).
    webhook_disable_after_s: float = Field(float(DAY_S), gt=0.0)
    #: Simulated seconds per real second (3600: a simulated day passes in 24 real seconds).
    clock_scale: float = Field(1.0, gt=0.0)
    #: Razorpay: a refund stays ``pending`` this long (simulated seconds) before it is ``processed`` or
    #: ``failed`` (after-capture.md §2.2); 0: it is processed as it is created, like the ``refund.created``
    #: sample that already says ``processed`` (§2.4).
    refund_processed_after_s: float = Field(0.0, ge=0.0)
    #: PayGlocal: the refund answer's shape, numbered as in after-capture.md §5.2: 1 = the real UAT reply
    #: (``data.merchantTxnId``, ``refundCurrency``, ``refundAmount``), 2 = openapi.yaml (``data.originalGid``).
    refund_shape: int = Field(1, ge=1, le=2)
    #: Both gateways: a captured payment is settled this long (simulated seconds) after its capture. Razorpay:
    #: domestic "T+2 working days" (after-capture.md §4.3), here calendar time; PayGlocal "1-3 business days" (§7).
    settlement_delay_s: float = Field(float(2 * DAY_S), ge=0.0)
    #: The fee on a captured payment in basis points of its amount (200 = 2 %), rounded down to the minor unit.
    settlement_fee_bp: int = Field(200, ge=0, le=10_000)
    #: The tax (GST) on that fee in basis points of the fee (1800 = 18 %), rounded down; Razorpay's payment
    #: ``fee`` includes it and ``tax`` is this part (after-capture.md §4.3: sample 11800 / 1800).
    settlement_tax_bp: int = Field(1800, ge=0, le=10_000)
    #: A settlement stays ``created`` this long (simulated seconds) before it is ``processed`` with its UTR and
    #: Razorpay's ``settlement.processed``; 0: processed as it is made (test mode: ~2 min, after-capture.md §4.3).
    settlement_processed_after_s: float = Field(0.0, ge=0.0)
    #: PayGlocal: our merchant id, and the merchant's PUBLIC key (PEM) that verifies our JWS. With no key,
    #: the simulator makes a merchant key pair and exposes its private half (``/_sim/payglocal/keys``).
    payglocal_merchant_id: str = "sim_mid_0001"
    payglocal_merchant_public_pem: str | None = None
    payglocal_merchant_kid: str = "sim-merchant-kid-0001"
    #: PayGlocal's own key pair (signs callbacks, decrypts bodies); generated at start when None.
    payglocal_private_pem: str | None = None
    payglocal_kid: str = "sim-payglocal-kid-0001"

    def update(self, **knobs: Any) -> None:
        """Change run-time knobs in place; unknown names or bad values raise ``ValueError``.

        The update is all-or-nothing: on error the config is left unchanged.
        """
        unknown = set(knobs) - KNOBS
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(sorted(unknown))}")
        candidate = SimulatorConfig.model_validate({**self.model_dump(), **knobs})  # ValidationError is a ValueError
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
