"""Every Prometheus metric the service records. ``ops/exposition.py`` serves them.

Several processes per host (web, workers, scheduler) write to one directory when
``PROMETHEUS_MULTIPROC_DIR`` is set before this module is first imported (the Procfile's
environment does that); ``/metrics`` then aggregates them. Labels are bounded: gateways,
outcomes, states, queues, never order or payment ids.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from prometheus_client import Counter, Histogram

from worker.domain.order_state import Source
from worker.domain.refund_state import RefundState

WEBHOOKS_RECEIVED = Counter(
    "recon_webhooks_received_total", "Webhooks and checkout callbacks received, by outcome.",
    ["gateway", "kind", "outcome"])  # outcome: accepted | duplicate | bad_signature | rejected
INBOX_MESSAGES = Counter(
    "recon_inbox_messages_total", "Stored webhooks' messages: sent, or coalesced into one queued for the same "
    "payment.", ["gateway", "outcome"])  # outcome: sent | coalesced
ORDER_TIME_TO_PAID = Histogram(
    "recon_order_time_to_paid_seconds", "From order creation to paid.", ["gateway"],
    buckets=(5, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600, 5 * 24 * 3600))
CREDITS_GRANTED = Counter("recon_credits_granted_total", "Credits added to balances.", ["gateway"])
ORDERS_GRANTED = Counter("recon_orders_granted_total", "Paid orders granted (credits, Pro, recorded).",
                         ["gateway", "plan"])
GRANTS_BY_SOURCE = Counter("recon_grants_total", "Paid orders granted, by the input that found the payment "
                           "(webhook, callback, poll, recheck, support): grants by poll alone mean notifications "
                           "stopped.", ["gateway", "source"])
ORDERS_ABANDONED = Counter("recon_orders_abandoned_total", "Orders closed as abandoned or failed, by reason.",
                           ["gateway", "state", "reason"])
ORDERS_LATE_PAID = Counter("recon_orders_late_paid_total", "Failed or abandoned orders paid late.", ["gateway"])
ORDERS_NEEDS_REVIEW = Counter("recon_orders_needs_review_total", "Orders sent to review, by reason.",
                              ["gateway", "reason"])
GATEWAY_REQUESTS = Counter("recon_gateway_requests_total", "HTTP requests to gateways.",
                           ["gateway", "endpoint", "status_class"])  # 2xx 4xx 5xx error
GATEWAY_LATENCY = Histogram("recon_gateway_request_duration_seconds", "Gateway HTTP request latency.",
                            ["gateway", "endpoint"],
                            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
GATEWAY_RATE_LIMITED = Counter("recon_gateway_rate_limited_total",
                               "Calls refused for rate: by our shared limiter (local) or a 429 (remote).",
                               ["gateway", "source"])
CIRCUIT_OPEN = Counter("recon_gateway_circuit_open_total", "Sweep calls refused because the circuit was open.",
                       ["gateway"])
UNKNOWN_STATUS = Counter("recon_gateway_unknown_status_total", "Payments in a status we do not know (kept pending).",
                         ["gateway"])
CHECKS = Counter("recon_order_checks_total", "Gateway checks of orders, by source and result.",
                 ["gateway", "source", "result"])  # result: decided | deferred | skipped
SWEEP_ROUNDS = Counter("recon_sweep_rounds_total", "Scheduler rounds this process led.", [])
SWEEP_CLAIMED = Counter("recon_sweep_claimed_total", "Orders and inbox rows claimed by sweeps.", ["kind"])
DEAD_LETTERED = Counter("recon_messages_dead_lettered_total", "Messages sent to the dead-letter queue.",
                        ["queue", "actor", "reason"])

# --- money after the credit (refunds, disputes, reversals) -------------------------------------------
EVENT_DELIVERIES = Counter("recon_event_deliveries_total", "Order event delivery attempts, by endpoint and "
                           "outcome (delivered, failed: retried later, dead: attempts spent).", ["endpoint", "outcome"])
REFUNDS = Counter("recon_refunds_total", "Refunds reaching a state, by origin (support, review, duplicate, gateway, "
                  "auto).", ["gateway", "state", "origin"])
CREDITS_REVERSED = Counter("recon_credits_reversed_total", "Credits taken back from balances, by cause.",
                           ["gateway", "kind"])
CREDITS_RESTORED = Counter("recon_credits_restored_total", "Credits given back (won disputes).", ["gateway"])
CREDIT_SHORTFALL = Counter("recon_credit_shortfall_total",
                           "Credits a reversal should have taken back but could not (already spent).",
                           ["gateway", "kind"])
DISPUTES = Counter("recon_disputes_total", "Disputes reaching a state.", ["gateway", "state"])

#: Counters alerts and panels take ``rate()`` or ``increase()`` of, with their bounded label values.
_OUTCOMES = ("accepted", "duplicate", "bad_signature", "rejected")
_REVERSALS = ("refund", "dispute", "chargeback")
_REFUND_ORIGINS = ("support", "review", "duplicate", "gateway", "auto")


def initialise(gateways: Iterable[str], endpoints: Iterable[str] = ()) -> None:
    """Create at zero every series an alert takes ``rate()`` or ``increase()`` of. A labelled counter is born at
    its first increment, already at 1, and ``increase()`` of a series that starts at 1 and stays there is 0:
    a burst of forged webhooks or a circuit opening once, right after a (re)start, would alert nobody."""
    for gateway in gateways:
        for kind, outcome in itertools.product(("webhook", "callback"), _OUTCOMES):
            WEBHOOKS_RECEIVED.labels(gateway, kind, outcome)
        for source in Source:
            GRANTS_BY_SOURCE.labels(gateway, source.value)
        for counter in (CIRCUIT_OPEN, UNKNOWN_STATUS, ORDERS_LATE_PAID, CREDITS_GRANTED, CREDITS_RESTORED):
            counter.labels(gateway)
        for source in ("local", "remote"):
            GATEWAY_RATE_LIMITED.labels(gateway, source)
        for outcome in ("sent", "coalesced"):
            INBOX_MESSAGES.labels(gateway, outcome)
        for kind in _REVERSALS:
            CREDITS_REVERSED.labels(gateway, kind)
            CREDIT_SHORTFALL.labels(gateway, kind)
        for state, origin in itertools.product((RefundState.PROCESSED.value, RefundState.FAILED.value),
                                               _REFUND_ORIGINS):
            REFUNDS.labels(gateway, state, origin)
    for endpoint, outcome in itertools.product(endpoints, ("delivered", "failed", "dead")):
        EVENT_DELIVERIES.labels(endpoint, outcome)
