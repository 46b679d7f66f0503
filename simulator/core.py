"""The :class:`Simulator`: one in-memory world of both gateways, shared by the HTTP app and the tests.

It owns the config (knobs), the simulated clock and its timers, the fault drawer, the webhook sender and
the per-gateway state (``.razorpay`` and ``.payglocal``). The two gateways share those and nothing else.

The customer actions ``pay`` and ``late_authorize`` take Razorpay ids; an id starting with ``gl_`` (a
PayGlocal gid) is routed to PayGlocal, so a demo can drive either gateway the same way.
"""

from __future__ import annotations

from typing import Any

from simulator.clock import SimClock, Timers
from simulator.config import SimulatorConfig
from simulator.errors import SimulatorError
from simulator.faults import Faults
from simulator.payglocal.state import PayGlocalSim
from simulator.razorpay.state import RazorpaySim
from simulator.refunds import RefundFailures
from simulator.settlements import Ledger, SettlementFaults
from simulator.webhooks import WebhookEvent, WebhookSender

#: Ids starting with this are PayGlocal gids (payglocal.md §0.6; Razorpay ids start with ``order_`` / ``pay_``).
PAYGLOCAL_PREFIX = "gl_"


class Simulator:
    """The simulated gateways, their customers' behaviour and the run-time knobs."""

    def __init__(self, config: SimulatorConfig | None = None):
        self.config = config if config is not None else SimulatorConfig()
        self.clock = SimClock(self.config.clock_scale)
        self.timers = Timers(self.clock)
        self.faults = Faults(self.config)
        self.webhooks = WebhookSender(self.config, self.clock)
        self.refund_failures = RefundFailures()
        self.settlement_faults = SettlementFaults()
        self.razorpay = RazorpaySim(self.config, self.webhooks, self.clock, self.timers, self.refund_failures,
                                    settlement_faults=self.settlement_faults)
        self.payglocal = PayGlocalSim(self.config, self.webhooks, self.clock, self.refund_failures,
                                      timers=self.timers, settlement_faults=self.settlement_faults)

    # -- Razorpay customer behaviour -------------------------------------------------------
    def pay(self, gateway_order_id: str, outcome: str, *, deliver_webhooks: bool = True,
            amount_minor: int | None = None, currency: str | None = None) -> dict[str, Any]:
        """A checkout attempt on a Razorpay order (see :meth:`RazorpaySim.pay`) or a PayGlocal gid."""
        if gateway_order_id.startswith(PAYGLOCAL_PREFIX):
            return self.pay_payglocal(gateway_order_id, outcome, deliver_callback=deliver_webhooks,
                                      amount_minor=amount_minor, currency=currency)
        return self.razorpay.pay(gateway_order_id, outcome, deliver_webhooks=deliver_webhooks,
                                 amount_minor=amount_minor, currency=currency)

    def answer_status(self, payment_id: str, status: str) -> dict[str, Any]:
        """A Razorpay payment answers an undocumented status from now on; see :meth:`RazorpaySim.answer_status`."""
        return self.razorpay.answer_status(payment_id, status)

    def late_authorize(self, gateway_payment_id: str, *, deliver_webhooks: bool = True,
                       minutes_after_creation: float | None = None) -> dict[str, Any]:
        """A failed Razorpay payment (or PayGlocal gid) is authorised late; see :meth:`RazorpaySim.late_authorize`."""
        if gateway_payment_id.startswith(PAYGLOCAL_PREFIX):
            return self.late_authorize_payglocal(gateway_payment_id)
        return self.razorpay.late_authorize(gateway_payment_id, deliver_webhooks=deliver_webhooks,
                                            minutes_after_creation=minutes_after_creation)

    def upi_retry(self, gateway_payment_id: str, *, deliver_webhooks: bool = True) -> dict[str, Any]:
        """A failed Razorpay payment succeeds on a UPI in-app retry; see :meth:`RazorpaySim.upi_retry`."""
        return self.razorpay.upi_retry(gateway_payment_id, deliver_webhooks=deliver_webhooks)

    def refund(self, gateway_payment_id: str, amount_minor: int | None = None, *,
               deliver_webhooks: bool = True) -> dict[str, Any]:
        """Refund a captured Razorpay payment (fully by default); returns the refund entity."""
        return self.razorpay.refund(gateway_payment_id, amount_minor, deliver_webhooks=deliver_webhooks)

    def dashboard_refund(self, payment_id: str, amount: int | None = None, fail: bool = False, *,
                         deliver_webhooks: bool = True) -> dict[str, Any]:
        """A Razorpay Dashboard refund (all that is left by default) with the full refund lifecycle; ``fail``: it
        ends ``failed``. Returns the refund entity; see :meth:`RazorpaySim.dashboard_refund`."""
        return self.razorpay.dashboard_refund(payment_id, amount, fail=fail, deliver_webhooks=deliver_webhooks)

    def refunds_of(self, payment_id: str) -> list[dict[str, Any]]:
        """The refunds of a Razorpay payment (entities) or a PayGlocal gid (records), oldest first."""
        if payment_id.startswith(PAYGLOCAL_PREFIX):
            return self.payglocal.refunds_of(payment_id)
        return self.razorpay.refunds_of(payment_id)

    def refund_behaviour(self, processed_after_s: float | None = None, fail_next: int | None = None,
                         fail_payment_ids: list[str] | None = None) -> dict[str, Any]:
        """How refunds go from now on: ``processed_after_s`` (the ``refund_processed_after_s`` knob: Razorpay's
        pending time), ``fail_next`` (the next n refunds of either gateway fail) and ``fail_payment_ids``
        (every refund of these payments / gids fails); None leaves a setting as it is. Returns all three."""
        if processed_after_s is not None:
            self.set_knobs(refund_processed_after_s=processed_after_s)
        try:
            self.refund_failures.set(fail_next=fail_next, fail_payment_ids=fail_payment_ids)
        except ValueError as exc:
            raise SimulatorError(str(exc), status=400) from None
        return {"processed_after_s": self.config.refund_processed_after_s, **self.refund_failures.as_dict()}

    # -- Razorpay disputes -----------------------------------------------------------------
    def open_dispute(self, payment_id: str, amount: int | None = None, phase: str = "chargeback",
                     reason_code: str = "chargeback", respond_in_s: float | None = None, *,
                     deliver_webhooks: bool = True) -> dict[str, Any]:
        """A chargeback on a captured Razorpay payment; see :meth:`RazorpaySim.open_dispute`."""
        return self.razorpay.open_dispute(payment_id, amount_minor=amount, phase=phase, reason_code=reason_code,
                                          respond_in_s=respond_in_s, deliver_webhooks=deliver_webhooks)

    def move_dispute(self, dispute_id: str, status: str | None = None, phase: str | None = None, *,
                     deliver_webhooks: bool = True) -> dict[str, Any]:
        """Move a Razorpay dispute (and send its webhook); see :meth:`RazorpaySim.move_dispute`."""
        return self.razorpay.move_dispute(dispute_id, status=status, phase=phase, deliver_webhooks=deliver_webhooks)

    def disputes_of(self, payment_id: str | None = None) -> list[dict[str, Any]]:
        """Every Razorpay dispute (of one payment if given), oldest first."""
        return self.razorpay.disputes_of(payment_id)

    # -- settlements (after-capture.md §4, §7) -----------------------------------------------------
    def settle(self, gateway: str = "razorpay", *, everything: bool = False,
               deliver_webhooks: bool = True) -> list[dict[str, Any]]:
        """Settle now what is due on ``gateway`` (``razorpay`` or ``payglocal``); ``everything``: every captured
        payment, whatever the schedule (the fault knobs still apply). The new settlements (Razorpay: entities)."""
        ledger = self._ledger(gateway)
        return [ledger.summary(s) for s in ledger.settle(everything=everything, deliver=deliver_webhooks)]

    def set_settlement_faults(self, skip_payment_ids: list[str] | None = None,
                              amount_delta: dict[str, int] | None = None,
                              delay_payment_ids: dict[str, float] | None = None,
                              unknown_rows: int | None = None) -> dict[str, Any]:
        """What goes wrong in settlements from now on (see :class:`~simulator.settlements.SettlementFaults`);
        None leaves a setting as it is. Returns all of them."""
        try:
            self.settlement_faults.set(skip_payment_ids=skip_payment_ids, amount_delta=amount_delta,
                                       delay_payment_ids=delay_payment_ids, unknown_rows=unknown_rows)
        except ValueError as exc:
            raise SimulatorError(str(exc), status=400) from None
        if delay_payment_ids is not None:
            self.razorpay.settlements.reschedule()
            self.payglocal.settlements.reschedule()
        return self.settlement_faults.as_dict()

    def payglocal_settlement_report(self, date: str | None = None) -> str:
        """PayGlocal's CSV settlement report of ``date`` (``YYYY-MM-DD``, IST), or of everything settled."""
        return self.payglocal.settlements.report(date)

    def _ledger(self, gateway: str) -> Ledger:
        if gateway == "razorpay":
            return self.razorpay.settlements
        if gateway == "payglocal":
            return self.payglocal.settlements
        raise SimulatorError(f"gateway must be razorpay or payglocal, not {gateway!r}", status=400)

    # -- PayGlocal customer behaviour ------------------------------------------------------
    def pay_payglocal(self, gid: str, outcome: str, *, deliver_callback: bool = True, amount_minor: int | None = None,
                      currency: str | None = None, callback_style: str = "2021") -> dict[str, Any]:
        """The shopper on PayGlocal's hosted page; see :meth:`PayGlocalSim.pay`."""
        return self.payglocal.pay(gid, outcome, deliver_callback=deliver_callback, amount_minor=amount_minor,
                                  currency=currency, callback_style=callback_style)

    def late_authorize_payglocal(self, gid: str) -> dict[str, Any]:
        """A failed PayGlocal transaction turns SENT_FOR_CAPTURE (or AUTHORIZED) late."""
        return self.payglocal.late_authorize(gid)

    def refund_payglocal(self, gid: str) -> dict[str, Any]:
        """A captured PayGlocal transaction is refunded in full from the dashboard (SENT_FOR_REFUND)."""
        return self.payglocal.refund(gid)

    # -- knobs, clock, state, webhooks -----------------------------------------------------
    def set_knobs(self, **knobs: Any) -> dict[str, Any]:
        """Change run-time knobs (see ``config.KNOBS``); a new ``seed`` restarts the random streams."""
        self.config.update(**knobs)
        if "seed" in knobs:
            self.faults.reseed(self.config.seed)
            self.webhooks.reseed(self.config.seed)
        if "clock_scale" in knobs:
            self.clock.set_scale(self.config.clock_scale)
        if "settlement_delay_s" in knobs:
            self.razorpay.settlements.reschedule()
            self.payglocal.settlements.reschedule()
        return self.config.knobs()

    def advance_clock(self, seconds: float) -> float:
        """Move the simulated clock ``seconds`` forward (timers and webhook retries fall due); the new time."""
        return self.clock.advance(seconds)

    def state(self, *, webhooks: bool = True) -> dict[str, Any]:
        """Knobs, every entity and (unless ``webhooks`` is False) the webhook delivery counts: ``GET /_sim/state``."""
        found = {
            "knobs": self.config.knobs(),
            "clock": {"now": self.clock.now(), "scale": self.clock.scale},
            "razorpay": self.razorpay.snapshot(),
            "payglocal": {"merchant_id": self.payglocal.merchant_id, "transactions": self.payglocal.snapshot(),
                          "refunds": self.payglocal.refunds_snapshot()},
            "settlements": {"razorpay": self.razorpay.settlements.snapshot(),
                            "payglocal": self.payglocal.settlements.snapshot(),
                            "faults": self.settlement_faults.as_dict()},
        }
        if webhooks:
            found.update(webhooks=self.webhooks.stats(), endpoints=self.webhooks.endpoints())
        return found

    def reset(self) -> None:
        """Forget all entities, settlements, timers, webhook events, queued deliveries, refund and settlement
        failures to come; back to the real clock. Knobs stay."""
        self.timers.clear()
        self.refund_failures.clear()
        self.settlement_faults.clear()
        self.razorpay.reset()
        self.payglocal.reset()
        self.webhooks.reset()
        self.webhooks.reseed(self.config.seed)
        self.faults.reseed(self.config.seed)
        self.clock.reset()

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
        """Stop the webhook sender and timer threads (they restart by themselves if more work comes)."""
        self.webhooks.close()
        self.timers.close()

    def draw_fault(self) -> str | int | None:
        """For one API call: ``429``, a 5xx status, ``"timeout"`` or None (see :class:`~simulator.faults.Faults`)."""
        return self.faults.draw()
