"""The refund and dispute lifecycles and the clawback rule: pure, so every sequence can be tried."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateways.port import DisputeStatus, RefundStatus
from worker.domain.dispute_state import DisputeState, decide_dispute
from worker.domain.ledger import clawback
from worker.domain.refund_state import RefundState, amount_for_credits, credits_for, decide_refund


@given(st.lists(st.sampled_from(list(RefundStatus)), max_size=12))
def test_credits_are_reversed_once_per_refund_whatever_the_gateway_says_in_whatever_order(statuses):
    state, reversals = RefundState.REQUESTED, 0
    for status in statuses:
        move = decide_refund(state, status)
        state, reversals = move.to_state, reversals + move.reverse_credits
    assert reversals == (1 if RefundStatus.PROCESSED in statuses else 0)
    assert state == RefundState.PROCESSED or RefundStatus.PROCESSED not in statuses  # processed is final


@pytest.mark.parametrize("current, status, to", [
    (RefundState.PENDING, RefundStatus.UNKNOWN, RefundState.PENDING),  # an unknown status is never "done"
    (RefundState.FAILED, RefundStatus.PENDING, RefundState.FAILED),  # a stale refund.created after refund.failed
    (RefundState.PROCESSED, RefundStatus.FAILED, RefundState.PROCESSED),  # a refund "cannot be reversed"
    (RefundState.FAILED, RefundStatus.PROCESSED, RefundState.PROCESSED),  # the money did go back: reverse
])
def test_refund_moves(current, status, to):
    assert decide_refund(current, status).to_state == to


def test_partial_refunds_never_take_back_more_than_was_granted():
    for parts in itertools.product([1, 333, 1_000, 117_999], repeat=3):
        assert sum(credits_for(p, order_amount_minor=118_000, order_credits=1_000) for p in parts) <= 1_000 or \
            sum(parts) > 118_000
    assert credits_for(118_000, order_amount_minor=118_000, order_credits=1_000) == 1_000
    assert amount_for_credits(250, order_amount_minor=118_000, order_credits=1_000) == 29_500


@given(st.lists(st.tuples(st.sampled_from(list(DisputeStatus)),
                          st.sampled_from(["chargeback", "pre_arbitration", "arbitration", "fraud"])), max_size=14))
def test_a_dispute_restores_only_what_it_holds_and_never_moves_after_a_loss(events):
    state, held, holds, restores, lost_at = None, False, 0, 0, None
    for i, (status, phase) in enumerate(events):
        move = decide_dispute(state, held, status, phase)
        assert not (move.hold and move.restore)
        assert not (move.restore and not held)
        holds, restores = holds + move.hold, restores + move.restore
        held = (held or move.hold) and not move.restore
        state = move.to_state
        if state in (DisputeState.LOST, DisputeState.CLOSED) and lost_at is None:
            lost_at = i
    assert holds - restores == (1 if held else 0)
    if lost_at is not None:
        assert state in (DisputeState.LOST, DisputeState.CLOSED) and held


def test_a_won_case_is_held_again_only_when_its_phase_reopens_it():
    assert decide_dispute(DisputeState.WON, False, DisputeStatus.OPEN, "chargeback").to_state == DisputeState.WON
    reopened = decide_dispute(DisputeState.WON, False, DisputeStatus.OPEN, "pre_arbitration")
    assert (reopened.to_state, reopened.hold) == (DisputeState.OPEN, True)


@given(st.integers(0, 10_000), st.integers(-500, 10_000), st.integers(0, 10_000), st.booleans())
def test_a_clawback_never_takes_more_than_due_nor_below_zero_unless_allowed(wanted, balance, still, negative):
    taken = clawback(wanted, balance=balance, still_granted=still, allow_negative=negative)
    due = max(0, min(wanted, still))
    assert taken.taken + taken.shortfall == due and taken.taken >= 0 and taken.shortfall >= 0
    if negative:
        assert taken.shortfall == 0
    else:
        assert balance - taken.taken >= min(balance, 0)


def test_snapshots_of_an_earlier_phase_are_stale_whatever_order_they_come_in():
    # the gateway: chargeback won, reopened in pre-arbitration, won again; we see the reopen's event last
    assert decide_dispute(DisputeState.WON, False, DisputeStatus.OPEN, "pre_arbitration",
                          current_phase="pre_arbitration").to_state == DisputeState.WON
    # the gateway: won, reopened, lost or still open; the first win is delivered after the reopen
    assert decide_dispute(DisputeState.OPEN, True, DisputeStatus.WON, "chargeback",
                          current_phase="pre_arbitration").to_state == DisputeState.OPEN
    assert decide_dispute(DisputeState.OPEN, True, DisputeStatus.WON, "pre_arbitration",
                          current_phase="pre_arbitration").restore


def test_a_snapshot_of_an_earlier_phase_with_our_own_status_is_stale_too():
    # we hold the reopened case (pre-arbitration); the first round's open and won arrive late
    for current, held, status in ((DisputeState.OPEN, True, DisputeStatus.OPEN),
                                  (DisputeState.WON, False, DisputeStatus.WON),
                                  (DisputeState.WON, False, DisputeStatus.OPEN)):
        move = decide_dispute(current, held, status, "chargeback", current_phase="pre_arbitration")
        assert (move.stale, move.to_state, move.hold, move.restore) == (True, current, False, False)
    fresh = decide_dispute(DisputeState.OPEN, True, DisputeStatus.OPEN, "pre_arbitration", current_phase="chargeback")
    assert not fresh.stale


def test_the_announcement_of_a_dispute_delivered_after_under_review_is_stale_but_action_required_is_not():
    late = decide_dispute(DisputeState.UNDER_REVIEW, True, DisputeStatus.OPEN, "chargeback",
                          current_phase="chargeback", opening=True)
    assert (late.stale, late.to_state) == (True, DisputeState.UNDER_REVIEW)
    action_required = decide_dispute(DisputeState.UNDER_REVIEW, True, DisputeStatus.OPEN, "chargeback",
                                     current_phase="chargeback")
    assert (action_required.stale, action_required.to_state) == (False, DisputeState.OPEN)
    reopened_while_we_missed_the_win = decide_dispute(DisputeState.UNDER_REVIEW, True, DisputeStatus.OPEN,
                                                      "pre_arbitration", current_phase="chargeback", opening=True)
    assert (reopened_while_we_missed_the_win.stale, reopened_while_we_missed_the_win.to_state) == (
        False, DisputeState.OPEN)
    reopened = decide_dispute(DisputeState.WON, False, DisputeStatus.OPEN, "pre_arbitration",
                              current_phase="chargeback", opening=True)
    assert reopened.hold and reopened.to_state == DisputeState.OPEN
