"""The :class:`Simulator`: one in-memory gateway world shared by the HTTP app and the tests.

It owns the config (knobs), the webhook sender and the per-gateway state (``.razorpay`` and
``.payglocal``), and draws the API fault injections.

The customer actions ``pay`` and ``late_authorize`` take Razorpay ids; an id starting with ``gl_``
(a PayGlocal gid) is routed to PayGlocal, so a demo can drive either gateway the same way.
"""

from __future__ import annotations

import threading
from typing import Any

from gateways.simulator.config import SimulatorConfig, derived_rng
from gateways.simulator.payglocal import PayGlocalSim
from gateways.simulator.razorpay import RazorpaySim
from gateways.simulator.webhooks import WebhookEvent, WebhookSender

_SERVER_ERRORS = (500, 502, 503, 504)

#: Ids starting with this are PayGlocal gids (Razorpay ids start with ``order_`` / ``pay_``).
PAYGLOCAL_PREFIX = "gl_"


class Simulator:
    """The simulated gateways, their customers' behaviour and the run-time knobs."""

    def __init__(self, config: SimulatorConfig | None = None):
        self.config = config if config is not None else SimulatorConfig()
        self.webhooks = WebhookSender(self.config)
        self.razorpay = RazorpaySim(self.config, self.webhooks)
        self.payglocal = PayGlocalSim(self.config, self.webhooks)
        self._faults_lock = threading.Lock()
        self._faults = derived_rng(self.config.seed, "faults")

    # -- Razorpay customer behaviour -------------------------------------------------------
    def pay(
        self,
        gateway_order_id: str,
        outcome: str,
        *,
        deliver_webhooks: bool = True,
        amount_minor: int | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """A checkout attempt on a Razorpay order (see :meth:`RazorpaySim.pay`) or a PayGlocal gid."""
        if gateway_order_id.startswith(PAYGLOCAL_PREFIX):
            return self.pay_payglocal(gateway_order_id, outcome, deliver_callback=deliver_webhooks,
                                      amount_minor=amount_minor, currency=currency)  # fmt: skip
        return self.razorpay.pay(
            gateway_order_id, outcome, deliver_webhooks=deliver_webhooks, amount_minor=amount_minor, currency=currency
        )

    def late_authorize(self, gateway_payment_id: str, *, deliver_webhooks: bool = True,
                       minutes_after_creation: float | None = None) -> dict[str, Any]:
        """A failed Razorpay payment (or PayGlocal gid) is authorised late; see :meth:`RazorpaySim.late_authorize`."""
        if gateway_payment_id.startswith(PAYGLOCAL_PREFIX):
            return self.late_authorize_payglocal(gateway_payment_id)
        return self.razorpay.late_authorize(gateway_payment_id, deliver_webhooks=deliver_webhooks,
                                            minutes_after_creation=minutes_after_creation)

    def refund(
        self, gateway_payment_id: str, amount_minor: int | None = None, *, deliver_webhooks: bool = True
    ) -> dict[str, Any]:
        """Refund a captured Razorpay payment (fully by default); returns the refund entity."""
        return self.razorpay.refund(gateway_payment_id, amount_minor, deliver_webhooks=deliver_webhooks)

    # -- PayGlocal customer behaviour ------------------------------------------------------
    def pay_payglocal(
        self,
        gid: str,
        outcome: str,
        *,
        deliver_callback: bool = True,
        amount_minor: int | None = None,
        currency: str | None = None,
        callback_style: str = "2021",
    ) -> dict[str, Any]:
        """The shopper on PayGlocal's hosted page; see :meth:`PayGlocalSim.pay`."""
        return self.payglocal.pay(
            gid, outcome, deliver_callback=deliver_callback, amount_minor=amount_minor, currency=currency,
            callback_style=callback_style,
        )  # fmt: skip

    def late_authorize_payglocal(self, gid: str) -> dict[str, Any]:
        """A failed PayGlocal transaction turns SENT_FOR_CAPTURE (or AUTHORIZED) late."""
        return self.payglocal.late_authorize(gid)

    def refund_payglocal(self, gid: str) -> dict[str, Any]:
        """A captured PayGlocal transaction is refunded in full (SENT_FOR_REFUND)."""
        return self.payglocal.refund(gid)

    # -- knobs, state, webhooks ------------------------------------------------------------
    def set_knobs(self, **knobs: Any) -> dict[str, Any]:
        """Change run-time knobs (see ``config.KNOBS``); a new ``seed`` restarts the random streams."""
        self.config.update(**knobs)
        if "seed" in knobs:
            with self._faults_lock:
                self._faults = derived_rng(self.config.seed, "faults")
            self.webhooks.reseed(self.config.seed)
        return self.config.knobs()

    def state(self) -> dict[str, Any]:
        """Knobs, every entity and the webhook delivery counts (what ``GET /_sim/state`` shows)."""
        return {
            "knobs": self.config.knobs(),
            "razorpay": self.razorpay.snapshot(),
            "payglocal": {"merchant_id": self.payglocal.merchant_id, "transactions": self.payglocal.snapshot()},
            "webhooks": self.webhooks.stats(),
        }

    def reset(self) -> None:
        """Forget all entities, webhook events and queued deliveries; knobs are kept."""
        self.razorpay.reset()
        self.payglocal.reset()
        self.webhooks.reset()
        self.webhooks.reseed(self.config.seed)
        with self._faults_lock:
            self._faults = derived_rng(self.config.seed, "faults")

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until no webhook delivery is queued or in flight; False on timeout."""
        return self.webhooks.wait_idle(timeout)

    def delivery_log(self) -> list[dict[str, Any]]:
        """One entry per delivery copy: event_id, event, copy, attempts, status_code, outcome."""
        return self.webhooks.log()

    def webhook_events(self) -> list[WebhookEvent]:
        """Every webhook event generated (with its exact body bytes and headers)."""
        return self.webhooks.events()

    def close(self) -> None:
        """Stop the webhook sender thread (it restarts by itself if more events come)."""
        self.webhooks.close()

    # -- fault injection (used by the app for /v1 and /gl calls) -----------------------------------
    def draw_fault(self) -> str | int | None:
        """For one API call: ``429``, a 5xx status, ``"timeout"`` or None (answer normally)."""
        cfg = self.config
        with self._faults_lock:
            if cfg.rate_limit_rate and self._faults.random() < cfg.rate_limit_rate:
                return 429
            if cfg.error_rate and self._faults.random() < cfg.error_rate:
                return self._faults.choice(_SERVER_ERRORS)
            if cfg.timeout_rate and self._faults.random() < cfg.timeout_rate:
                return "timeout"
        return None
