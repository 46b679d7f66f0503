"""The rule for taking credits back. Pure.

A reversal (processed refund, dispute hold, recorded chargeback) takes back the credits the money paid
for, but never more than the order still grants, and, by default, never more than the organisation
holds: credits already spent are not silently turned into a negative balance. What could not be taken
is the **shortfall**, kept on the ledger entry so finance sees it (``recon_credit_shortfall_total``).
``RECON_ALLOW_NEGATIVE_BALANCE=true`` takes it all instead, and the balance may go below zero.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Clawback:
    taken: int  #: credits removed from the balance
    shortfall: int  #: credits owed back but not taken (already spent)

    @property
    def wanted(self) -> int:
        return self.taken + self.shortfall


def clawback(wanted: int, *, balance: int, still_granted: int, allow_negative: bool) -> Clawback:
    """How much of ``wanted`` to take from a balance of ``balance``, for an order still granting
    ``still_granted`` credits."""
    due = max(0, min(wanted, still_granted))
    if allow_negative:
        return Clawback(due, 0)
    taken = max(0, min(due, balance))
    return Clawback(taken, due - taken)
