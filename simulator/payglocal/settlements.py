"""PayGlocal's settlements and the CSV settlement report a merchant downloads from the GCC dashboard.

PayGlocal has **no** settlement, payout or report API; the dashboard "download[s] reports" whose formats and
columns are UNDOCUMENTED (after-capture.md §7). Funds "are settled after you capture the payment and refunds are
adjusted from the settlement cycle" (§7): the simulator settles a ``SENT_FOR_CAPTURE`` transaction on the shared
schedule of :mod:`simulator.settlements` (``settlement_delay_s``; PayGlocal says "typically 1-3 business days")
and nets its accepted (``SENT_FOR_REFUND``) refunds out of the next settlement. Fees are the same knobs; no
PayGlocal answer carries a fee (§7), so they are ours.

The report (:meth:`PayGlocalSettlements.report`, ``GET /_sim/payglocal/settlement-report?date=YYYY-MM-DD``) is
our invention, shaped like a dashboard export: one line per settled capture (``SALE``) or refund (``REFUND``),
:data:`COLUMNS`, every field quoted, amounts in major units (payglocal.md §5, :func:`minor_to_major`), dates in
IST (``DD/MM/YYYY HH:MM:SS``, payglocal.md §3; ``Settlement Date`` ``DD/MM/YYYY``). ``Fee`` excludes the tax
(``Tax``, GST on the fee); ``Net Amount`` is signed: ``Gross − Fee − Tax`` for a sale, ``−Gross`` for a refund.
"""

from __future__ import annotations

import csv
import io
import re
import string
import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from simulator.errors import SimulatorError
from simulator.payglocal.codec import minor_to_major
from simulator.settlements import IST, Entry, Ledger, Row, ist_start

#: The report's columns (our invention: the real export is undocumented, after-capture.md §7).
COLUMNS = ("Transaction Date", "Transaction Type", "GID", "Original GID", "Merchant Txn Id", "Merchant Unique Id",
           "Currency", "Gross Amount", "Fee", "Tax", "Net Amount", "Settlement Date", "Settlement Id", "UTR")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def signed_major(amount_minor: int, currency: str) -> str:
    """A signed amount in major units (``-250.50``)."""
    text = minor_to_major(abs(amount_minor), currency)
    return "-" + text if amount_minor < 0 else text


class PayGlocalSettlements(Ledger):
    """The settlements of the simulated PayGlocal merchant."""

    gateway = "payglocal"

    def _gid(self) -> str:
        return "gl_" + str(uuid.UUID(int=self.ids.getrandbits(128), version=4))

    def _settlement_id(self) -> str:
        while True:
            candidate = "PGSTL" + "".join(self.ids.choice(string.digits) for _ in range(12))
            if candidate not in self.settlements:
                return candidate


    def _unknown_entry(self, currency: str, now: float) -> Entry:
        amount = self.ids.randrange(1, 1000) * 100
        fee, tax = self.payment_fees(amount)
        txn_id = "".join(self.ids.choice("0123456789ABCDEF") for _ in range(19))
        return Entry(seq=-1, kind="payment", entity_id=self._gid(), amount=amount, currency=currency, fee=fee,
                     tax=tax, created_at=int(now - self.config.settlement_delay_s), moved_at=now,
                     info={"merchantTxnId": txn_id, "merchantUniqueId": None})

    # -- money moves (called by PayGlocalSim, under its lock) -----------------------------------------
    def captured(self, txn: Mapping[str, Any]) -> None:
        """A transaction turned ``SENT_FOR_CAPTURE``: its paid amount settles on the schedule."""
        amount = txn["paid_amount_minor"]
        fee, tax = self.payment_fees(amount)
        self.add("payment", txn["gid"], amount, txn["paid_currency"], created_at=int(txn["created_at"]), fee=fee,
                 tax=tax, info={"merchantTxnId": txn["merchantTxnId"], "merchantUniqueId": txn["merchantUniqueId"]})

    def refunded(self, refund: Mapping[str, Any]) -> None:
        """An accepted refund (``SENT_FOR_REFUND``), netted out of the next settlement."""
        self.add("refund", refund["gid"], refund["amount_minor"], refund["currency"],
                 created_at=int(refund["created_at"]),
                 info={"originalGid": refund["originalGid"], "merchantTxnId": refund["merchantTxnId"],
                       "merchantUniqueId": refund["merchantUniqueId"]})

    # -- the report ------------------------------------------------------------------------------------
    def report(self, day: str | None = None) -> str:
        """The CSV report of the rows settled on ``day`` (``YYYY-MM-DD``, IST), or of every settled row."""
        if day is None:
            rows = self.rows_between(0, float("inf"))
        else:
            if not _DATE.match(day):
                raise SimulatorError("date must be YYYY-MM-DD", status=400)
            try:
                first = date.fromisoformat(day)
            except ValueError:
                raise SimulatorError("date must be YYYY-MM-DD", status=400) from None
            rows = self.rows_between(ist_start(first), ist_start(first + timedelta(days=1)))
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        with self.lock:
            writer.writerows(self._line(r) for r in rows)
        return out.getvalue()

    def _line(self, row: Row) -> list[str]:
        entry, currency = row.entry, row.entry.currency
        sale = entry.kind == "payment"
        base_fee = row.fee - row.tax
        net = row.credit if sale else -row.debit

        def when(epoch: float, pattern: str) -> str:
            return datetime.fromtimestamp(epoch, IST).strftime(pattern)

        return [
            when(entry.created_at, "%d/%m/%Y %H:%M:%S"), "SALE" if sale else "REFUND", entry.entity_id,
            entry.info.get("originalGid") or "", entry.info.get("merchantTxnId") or "",
            entry.info.get("merchantUniqueId") or "", currency, signed_major(row.amount, currency),
            minor_to_major(base_fee, currency), minor_to_major(row.tax, currency), signed_major(net, currency),
            when(row.settled_at, "%d/%m/%Y"), row.settlement_id, self.settlements[row.settlement_id].utr or "",
        ]
