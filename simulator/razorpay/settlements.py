"""Razorpay's settlements (after-capture.md §4): ``setl_`` entities, ``settlement.processed``, and the API
``GET /v1/settlements``, ``/v1/settlements/{id}`` and ``/v1/settlements/recon/combined``.

The schedule, the netting and the faults are :class:`~simulator.settlements.Ledger`'s. What is Razorpay's:

- a captured payment is a ``payment`` row (``credit = amount − fee``, the payment's own ``fee``/``tax``); a
  processed refund of a captured payment a ``refund`` row (``debit = amount``, fee 0; §4.2 sample arithmetic);
  an auto-refund (``captured: false``) moves no settled money and has no row;
- a lost dispute is an ``adjustment`` row ``adj_…`` (``debit = amount_deducted``, ``dispute_id``, ``payment_id``
  its payment): "where onset-deducted money comes back … a recon adjustment row with dispute_id" (§3.4). The
  refund entity the simulator makes for a lost dispute is not settled again (the money left once, as the
  adjustment): our reading;
- ``settlement.processed`` (``contains: ["settlement"]``, ``payload.settlement.entity``, §4.1) goes through the
  shared sender when a settlement is processed;
- lists are newest first, recon rows in settlement order (a stable order, so ``count``/``skip`` paging is
  deterministic), filtered by the IST day or month they were settled on.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from simulator.clock import SimClock, Timers
from simulator.config import SimulatorConfig
from simulator.razorpay import codec
from simulator.razorpay.codec import RazorpayApiError
from simulator.razorpay.entities import recon_row, settlement_entity, webhook_event
from simulator.razorpay.rules import ListParams, ReconParams, parse
from simulator.settlements import Entry, Ledger, Row, Settlement, SettlementFaults, ist_start
from simulator.webhooks import WebhookSender

_ALNUM = string.ascii_letters + string.digits


class RazorpaySettlements(Ledger):
    """The settlements of the simulated Razorpay account."""

    gateway = "razorpay"

    def __init__(self, config: SimulatorConfig, clock: SimClock, timers: Timers, webhooks: WebhookSender,
                 faults: SettlementFaults):
        self.webhooks = webhooks
        super().__init__(config, clock, timers, faults)

    # -- ids ---------------------------------------------------------------------------------------
    def new_id(self, kind: str) -> str:
        """A fresh Razorpay id of ``kind`` (``settlement``, ``adjustment``, ``payment`` ...) from this stream."""
        return codec.PREFIXES[kind] + "".join(self.ids.choice(_ALNUM) for _ in range(codec.ID_LENGTH))

    def _settlement_id(self) -> str:
        while True:
            candidate = self.new_id("settlement")
            if candidate not in self.settlements:
                return candidate


    def _unknown_entry(self, currency: str, now: float) -> Entry:
        amount = self.ids.randrange(1, 1000) * 100
        fee, tax = self.payment_fees(amount)
        return Entry(seq=-1, kind="payment", entity_id=self.new_id("payment"), amount=amount, currency=currency,
                     fee=fee, tax=tax, created_at=int(now - self.config.settlement_delay_s), moved_at=now,
                     info={"order_id": self.new_id("order"), "method": "card", "notes": []})

    # -- money moves (called by RazorpaySim, under its lock) -----------------------------------------
    def payment_captured(self, payment: Mapping[str, Any], order: Mapping[str, Any]) -> None:
        """A captured payment, to settle on the schedule."""
        self.add("payment", payment["id"], payment["amount"], payment["currency"], created_at=payment["created_at"],
                 fee=payment["fee"] or 0, tax=payment["tax"] or 0,
                 info={"order_id": order["id"], "order_receipt": order["receipt"], "method": payment["method"],
                       "description": payment["description"], "notes": payment["notes"]})

    def refund_processed(self, refund: Mapping[str, Any], payment: Mapping[str, Any],
                         order: Mapping[str, Any]) -> None:
        """A processed refund of a captured payment, netted out of the next settlement."""
        self.add("refund", refund["id"], refund["amount"], refund["currency"], created_at=refund["created_at"],
                 info={"payment_id": payment["id"], "order_id": order["id"], "order_receipt": order["receipt"],
                       "method": payment["method"], "notes": refund["notes"]})

    def dispute_lost(self, dispute: Mapping[str, Any], payment: Mapping[str, Any], order: Mapping[str, Any],
                     now: int) -> None:
        """A lost dispute's ``amount_deducted``, an ``adjustment`` netted out of the next settlement."""
        with self.lock:
            self.add("adjustment", self.new_id("adjustment"), dispute["amount_deducted"], dispute["currency"],
                     created_at=now,
                     info={"payment_id": payment["id"], "order_id": order["id"], "order_receipt": order["receipt"],
                           "method": payment["method"], "dispute_id": dispute["id"],
                           "description": f"Dispute {dispute['id']} lost ({dispute['reason_code']})", "notes": []})

    # -- entities, webhook ---------------------------------------------------------------------------
    def entity(self, settlement: Settlement) -> dict[str, Any]:
        """The ``setl_`` entity as it is now."""
        return settlement_entity(settlement.id, amount=settlement.amount, status=settlement.status,
                                 fees=settlement.fees, tax=settlement.tax, utr=settlement.utr,
                                 created_at=settlement.created_at)

    def summary(self, settlement: Settlement) -> dict[str, Any]:
        return self.entity(settlement)

    def row(self, row: Row) -> dict[str, Any]:
        """A settled row as the recon API returns it."""
        entry = row.entry
        return recon_row(entity_id=entry.entity_id, kind=entry.kind, debit=row.debit, credit=row.credit,
                         amount=row.amount, currency=entry.currency, fee=row.fee, tax=row.tax,
                         created_at=entry.created_at, settled_at=row.settled_at, settlement_id=row.settlement_id,
                         settlement_utr=self.settlements[row.settlement_id].utr, info=entry.info)

    def _processed(self, settlement: Settlement) -> None:
        event_id = self.new_id("event")
        event = webhook_event("settlement.processed", event_id, account_id=self.config.account_id,
                              webhook_secret=self.config.webhook_secret, now=int(self.clock.now()),
                              entities={"settlement": self.entity(settlement)})
        self.webhooks.publish([event], deliver=settlement.deliver)

    # -- API -------------------------------------------------------------------------------------------
    def list_settlements(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v1/settlements?from=&to=&count=&skip=``: newest first, count 1..100, default 10 (§4.1)."""
        page = parse(ListParams, params)
        self.catch_up()
        with self.lock:
            items = [self.entity(s) for s in reversed(self.settlements.values())
                     if page.from_ <= s.created_at <= page.to]
            return codec.collection(items[page.skip : page.skip + page.count])

    def fetch_settlement(self, settlement_id: str) -> dict[str, Any]:
        """``GET /v1/settlements/{id}``: a malformed or unknown id is a 400 (§4.1, razorpay.md §0.7)."""
        if not codec.is_valid_id("settlement", settlement_id):
            raise RazorpayApiError(400, codec.NOT_A_VALID_ID.format(settlement_id), field="id")
        self.catch_up()
        with self.lock:
            found = self.settlements.get(settlement_id)
            if found is None:
                raise RazorpayApiError(400, codec.ID_DOES_NOT_EXIST, field="id")
            return self.entity(found)

    def recon(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v1/settlements/recon/combined?year=&month=[&day=][&count=][&skip=]`` (§4.2): the rows settled
        on that IST day or month, ``count`` (default :data:`~simulator.razorpay.rules.RECON_DEFAULT_COUNT`)
        from ``skip``."""
        query = parse(ReconParams, params)
        first, after = query.period()
        rows = self.rows_between(ist_start(first), ist_start(after))
        with self.lock:
            return codec.collection([self.row(r) for r in rows[query.skip : query.skip + query.count]])
