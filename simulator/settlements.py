"""Settlements, shared by both gateways: when the money of a captured payment is paid out, net of its fee and of
the refunds and dispute deductions that came after it; and the faults a reconciliation is tested against.

Each gateway keeps one :class:`Ledger` (``razorpay/settlements.py``, ``payglocal/settlements.py``). The gateway
state records each money move as an :class:`Entry`: a capture (``payment``, a credit of amount − fee), a processed
refund (``refund``, a debit of its amount) or a dispute deduction (``adjustment``, a debit). A settlement run
(a timer when a payment falls due, any settlement read, or ``settle`` now) takes, per currency:

- every captured payment due: captured ``settlement_delay_s`` simulated seconds ago (after-capture.md §4.3:
  domestic T+2; calendar days, no working-day calendar), plus its fault delay; ``everything=True`` ignores the
  schedule (not the fault delay);
- then the refunds and deductions not yet settled, oldest first, each if the net stays ≥ 0: the ones that do not
  fit wait for a later settlement ("only the transactions that fit are settled; the rest go to the next slot",
  §4.3).

A settlement is ``created``, then ``processed`` (with a UTR) ``settlement_processed_after_s`` later (0: at once).

Fees (integers, minor units, each rounded DOWN): ``base = amount × settlement_fee_bp // 10000``,
``tax = base × settlement_tax_bp // 10000``, ``fee = base + tax`` (the fee includes the tax, like Razorpay's
payment ``fee``/``tax``, §4.3). 200 and 1800 bp turn 500000 into fee 11800, tax 1800, as in the §2.4 sample.

:class:`SettlementFaults` (``POST /_sim/settlements/faults``) are one-shot test choices, not knobs; ``reset``
forgets them. Dates are Indian Standard Time (UTC+05:30: both gateways are Indian; the time zone of Razorpay's
``day``/``month`` is UNDOCUMENTED).
"""

from __future__ import annotations

import itertools
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from simulator.clock import SimClock, Timers
from simulator.config import SimulatorConfig, derived_rng

#: Indian Standard Time: the day a row was settled on.
IST = timezone(timedelta(hours=5, minutes=30), "IST")
KINDS = ("payment", "refund", "adjustment")


def fee_and_tax(amount: int, fee_bp: int, tax_bp: int) -> tuple[int, int]:
    """``(fee including tax, tax)`` on ``amount`` minor units, each part rounded down."""
    base = amount * fee_bp // 10_000
    tax = base * tax_bp // 10_000
    return base + tax, tax


def ist_day(epoch_s: float) -> date:
    """The IST calendar day of ``epoch_s``."""
    return datetime.fromtimestamp(epoch_s, IST).date()


def ist_start(day: date) -> int:
    """Epoch seconds at the IST midnight starting ``day``."""
    return int(datetime(day.year, day.month, day.day, tzinfo=IST).timestamp())


@dataclass
class Entry:
    """One money move of a gateway: ``payment`` (credit), ``refund`` or ``adjustment`` (debits)."""

    seq: int
    kind: str
    entity_id: str
    amount: int  #: minor units, gross
    currency: str
    fee: int  #: including ``tax``; 0 for refunds and adjustments
    tax: int
    created_at: int  #: the entity's own creation time
    moved_at: float  #: capture / refund processing / deduction (simulated epoch s)
    info: dict[str, Any] = field(default_factory=dict)  #: gateway-specific fields (order id, notes ...)
    settlement_id: str | None = None


@dataclass
class Row:
    """An entry as one settlement paid it (faults applied): what recon rows and report lines are made of."""

    entry: Entry
    amount: int
    credit: int
    debit: int
    settlement_id: str
    settled_at: int

    @property
    def fee(self) -> int:
        return self.entry.fee

    @property
    def tax(self) -> int:
        return self.entry.tax


@dataclass
class Settlement:
    """One payout of one currency."""

    id: str
    currency: str
    created_at: int
    rows: list[Row]
    amount: int  #: net: credits − debits
    fees: int  #: the rows' fees, tax included
    tax: int
    process_at: float
    deliver: bool = True
    status: str = "created"
    utr: str | None = None


class SettlementFaults:
    """What goes wrong in the settlements of both gateways (payment ids or gids):

    - ``skip_payment_ids``: these captured payments never appear in any settlement;
    - ``amount_delta``: {payment id: n}: the payment's row says its amount + n minor units (credit likewise);
    - ``delay_payment_ids``: {payment id: s}: the payment settles s simulated seconds later than the schedule;
    - ``unknown_rows``: the next settlement of each gateway carries n rows of payments the merchant never made.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """Nothing goes wrong."""
        with self._lock:
            self._skip: set[str] = set()
            self._delta: dict[str, int] = {}
            self._delay: dict[str, float] = {}
            self._unknown: dict[str, int] = {}
            self._unknown_asked = 0

    def set(self, *, skip_payment_ids: list[str] | None = None, amount_delta: Mapping[str, int] | None = None,
            delay_payment_ids: Mapping[str, float] | None = None, unknown_rows: int | None = None) -> None:
        """Replace the settings given (None leaves one as it is); ``ValueError`` on a bad value."""
        if amount_delta is not None and any(isinstance(v, bool) or not isinstance(v, int)
                                            for v in amount_delta.values()):
            raise ValueError("amount_delta values must be integers (minor units)")
        if delay_payment_ids is not None and any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0
                                                 for v in delay_payment_ids.values()):
            raise ValueError("delay_payment_ids values must be non-negative seconds")
        if unknown_rows is not None and (isinstance(unknown_rows, bool) or not isinstance(unknown_rows, int)
                                         or unknown_rows < 0):
            raise ValueError("unknown_rows must be a non-negative integer")
        with self._lock:
            if skip_payment_ids is not None:
                self._skip = set(skip_payment_ids)
            if amount_delta is not None:
                self._delta = dict(amount_delta)
            if delay_payment_ids is not None:
                self._delay = {k: float(v) for k, v in delay_payment_ids.items()}
            if unknown_rows is not None:
                self._unknown_asked = unknown_rows
                self._unknown = {gateway: unknown_rows for gateway in ("razorpay", "payglocal")}

    def skipped(self, payment_id: str) -> bool:
        with self._lock:
            return payment_id in self._skip

    def delta(self, payment_id: str) -> int:
        with self._lock:
            return self._delta.get(payment_id, 0)

    def delay(self, payment_id: str) -> float:
        with self._lock:
            return self._delay.get(payment_id, 0.0)

    def take_unknown(self, gateway: str) -> int:
        """How many unknown rows ``gateway``'s settlement made now carries (used up)."""
        with self._lock:
            return self._unknown.pop(gateway, 0)

    def as_dict(self) -> dict[str, Any]:
        """The four settings (``unknown_rows``: the count last set; ``unknown_rows_left`` per gateway)."""
        with self._lock:
            return {"skip_payment_ids": sorted(self._skip), "amount_delta": dict(self._delta),
                    "delay_payment_ids": dict(self._delay), "unknown_rows": self._unknown_asked,
                    "unknown_rows_left": dict(self._unknown)}


class Ledger:
    """One gateway's money moves and settlements, behind its own lock (taken after the gateway state's lock,
    never before it). Subclasses name the gateway and make its ids, unknown rows and notifications."""

    gateway = "gateway"

    def __init__(self, config: SimulatorConfig, clock: SimClock, timers: Timers, faults: SettlementFaults):
        self.config = config
        self.clock = clock
        self.timers = timers
        self.faults = faults
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget every entry and settlement; restart the id stream from the seed."""
        with self.lock:
            self.entries: list[Entry] = []
            self.settlements: dict[str, Settlement] = {}
            self.rows: list[Row] = []  #: every settled row, in settlement order (a stable order for paging)
            self._seq = itertools.count()
            self.ids = derived_rng(self.config.seed, f"{self.gateway}-settlements")

    # -- for subclasses ----------------------------------------------------------------------------
    def _settlement_id(self) -> str:
        raise NotImplementedError

    def _utr(self) -> str:
        """A bank UTR shaped like Razorpay's sample ``AXISCN1153863727`` (PayGlocal's reports use the same)."""
        return "SIMBNK" + "".join(self.ids.choice(string.digits) for _ in range(10))

    def _unknown_entry(self, currency: str, now: float) -> Entry:
        """A captured payment the merchant never made (the ``unknown_rows`` fault)."""
        raise NotImplementedError

    def _processed(self, settlement: Settlement) -> None:
        """A settlement became ``processed`` (send its webhook, if the gateway has one)."""

    # -- recording money moves -------------------------------------------------------------------
    def add(self, kind: str, entity_id: str, amount: int, currency: str, *, created_at: int, fee: int = 0,
            tax: int = 0, info: Mapping[str, Any] | None = None) -> Entry:
        """Record a money move made now; a payment gets a timer for the moment it falls due."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        with self.lock:
            entry = Entry(seq=next(self._seq), kind=kind, entity_id=entity_id, amount=amount, currency=currency,
                          fee=fee, tax=tax, created_at=created_at, moved_at=self.clock.now(), info=dict(info or {}))
            self.entries.append(entry)
            if kind == "payment":
                self.timers.call_at(self._due(entry, everything=False), self.catch_up)
            return entry

    def payment_fees(self, amount: int) -> tuple[int, int]:
        """``(fee including tax, tax)`` on a payment of ``amount`` with the current knobs."""
        return fee_and_tax(amount, self.config.settlement_fee_bp, self.config.settlement_tax_bp)

    def reschedule(self) -> None:
        """The schedule or a fault delay changed: a timer for each unsettled payment's new due time."""
        with self.lock:
            for when in sorted({self._due(e, everything=False) for e in self.entries
                                if e.kind == "payment" and e.settlement_id is None}):
                self.timers.call_at(when, self.catch_up)

    # -- settling --------------------------------------------------------------------------------
    def _due(self, entry: Entry, *, everything: bool) -> float:
        schedule = 0.0 if everything else self.config.settlement_delay_s
        return entry.moved_at + schedule + self.faults.delay(entry.entity_id)

    def _credit(self, entry: Entry) -> int:
        return entry.amount + self.faults.delta(entry.entity_id) - entry.fee

    def catch_up(self) -> None:
        """Process the settlements whose time has come and settle what is due (timers and reads call it)."""
        self.settle()

    def settle(self, *, everything: bool = False, deliver: bool = True) -> list[Settlement]:
        """Settle what is due now (``everything``: every captured payment, whatever the schedule); the new
        settlements, one per currency, oldest row first."""
        with self.lock:
            self._process_due()
            now = self.clock.now()
            pending = [e for e in self.entries if e.settlement_id is None]
            made: list[Settlement] = []
            for currency in dict.fromkeys(e.currency for e in pending):
                credits = [e for e in pending if e.currency == currency and e.kind == "payment"
                           and not self.faults.skipped(e.entity_id) and self._due(e, everything=everything) <= now]
                net = sum(self._credit(e) for e in credits)
                debits = []
                for entry in pending:
                    if entry.currency == currency and entry.kind != "payment" and net - entry.amount >= 0:
                        debits.append(entry)
                        net -= entry.amount
                chosen = sorted(credits + debits, key=lambda e: e.seq)
                if not chosen:
                    continue
                if not made:
                    unknown = self.faults.take_unknown(self.gateway)
                    chosen += [self._unknown_entry(currency, now) for _ in range(unknown)]
                made.append(self._make(currency, chosen, int(now), deliver))
            return made

    def _make(self, currency: str, entries: list[Entry], now: int, deliver: bool) -> Settlement:
        settlement_id = self._settlement_id()
        rows = []
        for entry in entries:
            entry.settlement_id = settlement_id
            if entry.kind == "payment":
                credit = self._credit(entry)
                rows.append(Row(entry, credit + entry.fee, credit, 0, settlement_id, now))
            else:
                rows.append(Row(entry, entry.amount, 0, entry.amount, settlement_id, now))
        delay = self.config.settlement_processed_after_s
        settlement = Settlement(
            id=settlement_id, currency=currency, created_at=now, rows=rows,
            amount=sum(r.credit for r in rows) - sum(r.debit for r in rows), fees=sum(r.fee for r in rows),
            tax=sum(r.tax for r in rows), process_at=now + delay, deliver=deliver,
        )
        self.settlements[settlement_id] = settlement
        self.rows.extend(rows)
        if delay <= 0:
            self._process(settlement)
        else:
            self.timers.call_at(settlement.process_at, self.catch_up)
        return settlement

    def _process(self, settlement: Settlement) -> None:
        settlement.status, settlement.utr = "processed", self._utr()
        self._processed(settlement)

    def _process_due(self) -> None:
        now = self.clock.now()
        for settlement in self.settlements.values():
            if settlement.status == "created" and settlement.process_at <= now:
                self._process(settlement)

    # -- reading -----------------------------------------------------------------------------------
    def rows_between(self, start: float, end: float) -> list[Row]:
        """The rows settled in ``[start, end)``, in settlement order (after a catch-up)."""
        self.catch_up()
        with self.lock:
            return [r for r in self.rows if start <= r.settled_at < end]

    def summary(self, settlement: Settlement) -> dict[str, Any]:
        """A settlement as the control API shows it (gateways with an entity override this)."""
        return {"id": settlement.id, "currency": settlement.currency, "amount": settlement.amount,
                "fees": settlement.fees, "tax": settlement.tax, "status": settlement.status, "utr": settlement.utr,
                "created_at": settlement.created_at,
                "entity_ids": [r.entry.entity_id for r in settlement.rows]}

    def snapshot(self) -> list[dict[str, Any]]:
        """Every settlement, oldest first."""
        with self.lock:
            return [self.summary(s) for s in self.settlements.values()]
