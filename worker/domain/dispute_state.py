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
#: A case only moves forward through its phases (after-capture.md §3.1); webhooks come in any order, so a
#: snapshot of an earlier phase than the one we hold is stale.
PHASE_RANK = {"fraud": 1, "retrieval": 1, "chargeback": 1, "pre_arbitration": 2, "arbitration": 3}


def phase_before(phase: str, than: str) -> bool | None:
    """Whether ``phase`` comes before ``than``; None when either is a phase we do not know (no order)."""
    if phase not in PHASE_RANK or than not in PHASE_RANK:
        return None
    return PHASE_RANK[phase] < PHASE_RANK[than]


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
    stale: bool = False  #: an older snapshot than what we hold: nothing of it is written (not even its phase)

    @property
    def changed(self) -> bool:
        return self.to_state != self.from_state


def decide_dispute(current: DisputeState | None, held: bool, status: DisputeStatus, phase: str = "",
                   current_phase: str = "", *, opening: bool = False) -> DisputeMove:
    """What a dispute's new status does, given its state, the phase we hold it in, and whether its credits are
    held now.

    Lost and closed are final: a stale ``open`` or ``won`` after them moves nothing. A ``won`` followed by an
    ``open`` moves back only when the case was reopened into a later phase (pre-arbitration, arbitration)
    than the won one; the same or an earlier phase is a stale snapshot (the reopen's own event delivered
    after the second win). An ``opening`` snapshot (the dispute's announcement) of a dispute we already
    hold in that phase is stale too: ``under_review`` delivered first must not be undone by it (a real move
    back to ``open``, ``action_required``, is not an opening). Any snapshot of an earlier phase than the one
    we hold is stale, whatever its status: a ``won`` of the case before it was reopened restores nothing, and
    an ``open`` of the first round does not move our phase back (which would let that first round's late
    ``won`` restore a reopened hold).
    """
    target = observed(status)
    if target is None or (current is not None and current in FINAL):
        return DisputeMove(current, current or DisputeState.OPEN, stale=target is not None)
    if current is not None and current_phase and phase_before(phase, current_phase):
        return DisputeMove(current, current, stale=True)  # e.g. the first win delivered after the reopen
    if opening and current is not None and current != DisputeState.WON and not phase_before(current_phase, phase):
        return DisputeMove(current, current, stale=True)  # the announcement delivered after under_review
    if current == DisputeState.WON and target in (DisputeState.OPEN, DisputeState.UNDER_REVIEW):
        later = phase_before(current_phase, phase) if current_phase else None
        if phase not in REOPENING_PHASES or later is False:
            return DisputeMove(current, current, stale=True)
    if target == DisputeState.WON:
        return DisputeMove(current, target, restore=held)
    # open, under_review, lost, closed: the credits are held (again, after a reopened win)
    return DisputeMove(current, target, hold=not held)
