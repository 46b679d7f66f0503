"""A dispute's (chargeback's) lifecycle and what it does to credits. Pure: no I/O, no clock.

Lifecycle (Razorpay, after-capture.md §3)::

    open ⇄ under_review ──► won ──(pre_arbitration / arbitration: open again)──► open …
      │          │
      └──────────┴────────► lost | closed

Credits follow the money, and we read the money the safer way. One Razorpay page deducts the disputed
amount "at the outset — before the case is resolved"; the API keeps ``amount_deducted`` at 0 until
``lost`` (§3.4, a contradiction). We take the onset reading: the disputed credits are **held** (reversed)
when the dispute is first seen, because spendable credits whose money the gateway has taken back are
credits paid for by nobody. A win **restores** them; a loss or a (fraud) closure keeps the hold, which is
then final. A won case reopened by pre-arbitration or arbitration is held again (a new generation, so
every hold and restore stays a ledger entry of its own, exactly once).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateways.port import DisputeStatus


class DisputeState(StrEnum):
    OPEN = "open"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"
    CLOSED = "closed"


FINAL = frozenset({DisputeState.LOST, DisputeState.CLOSED})
#: Someone must answer before ``respond_by``.
AWAITING_US = frozenset({DisputeState.OPEN})
REOPENING_PHASES = frozenset({"pre_arbitration", "arbitration"})


def observed(status: DisputeStatus) -> DisputeState | None:
    """The gateway's status as ours; None for a status we do not know (nothing moves on it)."""
    try:
        return DisputeState(status.value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DisputeMove:
    from_state: DisputeState | None  #: None: first sight of this dispute
    to_state: DisputeState
    hold: bool = False  #: take the disputed credits back now
    restore: bool = False  #: give back what the current hold took

    @property
    def changed(self) -> bool:
        return self.to_state != self.from_state


def decide_dispute(current: DisputeState | None, held: bool, status: DisputeStatus, phase: str = "") -> DisputeMove:
    """What a dispute's new status does, given its state and whether its credits are held now.

    Lost and closed are final: a stale ``open`` or ``won`` after them moves nothing. A ``won`` followed by
    an ``open`` moves back only when the phase says the case was reopened (pre-arbitration, arbitration);
    otherwise it is a stale snapshot.
    """
    target = observed(status)
    if target is None or (current is not None and current in FINAL):
        return DisputeMove(current, current or DisputeState.OPEN)
    if current == DisputeState.WON and target in (DisputeState.OPEN, DisputeState.UNDER_REVIEW) \
            and phase not in REOPENING_PHASES:
        return DisputeMove(current, current)
    if target == DisputeState.WON:
        return DisputeMove(current, target, restore=held)
    # open, under_review, lost, closed: the credits are held (again, after a reopened win)
    return DisputeMove(current, target, hold=not held)
