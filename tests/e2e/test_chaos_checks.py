"""The chaos run's money checks fail when they should: crafted gateway truths and databases, no services needed.

Each case feeds :func:`ops.chaos.checks.judge` one broken promise (an over-credit, a refund not reversed, a
dispute whose hold was not restored, a refund made twice, a lost capture, ...) next to orders that are fine,
and asserts that exactly the broken one is reported; the last cases read the truth from an in-memory
simulator, as the run does.
"""

from __future__ import annotations

import pytest

from ops.chaos import checks
from ops.chaos.checks import (
    GatewayDispute,
    GatewayPayment,
    GatewayRefund,
    LedgerRow,
    OurDispute,
    OurOrder,
    OurRefund,
    Ours,
    Tally,
    judge,
)

T0 = 1_700_000_000.0
ORG, OTHER_ORG = "org-a", "org-b"
AMOUNT, CREDITS = 236_000, 1_000


def order(order_id: str, state: str, *, credits: int = CREDITS, amount: int = AMOUNT, org: str = ORG,
          gateway: str = "razorpay") -> OurOrder:
    return OurOrder(order_id, org, state, credits, amount, "INR", gateway)


def payment(payment_id: str, order_id: str, status: str, *, amount: int = AMOUNT, captured: bool | None = None,
            refunds: tuple[GatewayRefund, ...] = (), disputes: tuple[GatewayDispute, ...] = (),
            gateway: str = "razorpay") -> GatewayPayment:
    ever = status in ("captured", "refunded", "partly_refunded") if captured is None else captured
    return GatewayPayment(gateway, payment_id, order_id, status, amount, "INR", ever, refunds, disputes)


def credit(order_id: str, payment_id: str, at: float, *, credits: int = CREDITS, org: str = ORG,
           gateway: str = "razorpay") -> LedgerRow:
    return LedgerRow(order_id, org, gateway, payment_id, "credits", credits, at, "grant", payment_id)


def reversal(order_id: str, payment_id: str, at: float, credits: int, event: str, *, kind: str = "refund",
             entry: str = "reversal", shortfall: int = 0) -> LedgerRow:
    return LedgerRow(order_id, ORG, "razorpay", payment_id, kind, credits, at, entry, event, shortfall)


def refund_row(order_id: str, payment_id: str, refund_id: str | None, amount: int, state: str, *,
               key: str | None = None, origin: str = "support") -> OurRefund:
    return OurRefund(order_id, "razorpay", payment_id, refund_id, key, amount, state, origin)


def dispute_row(order_id: str, payment_id: str, dispute_id: str, amount: int, state: str, *, phase: str = "chargeback",
                held: bool | None = None) -> OurDispute:
    return OurDispute(order_id, "razorpay", dispute_id, payment_id, amount, state, phase,
                      state != "won" if held is None else held)


def a_good_run() -> tuple[list[GatewayPayment], Ours]:
    """Orders all fine: one paid and credited; one abandoned with a declined payment; one refunded in full
    after its credit (reversed, still paid); one refunded by a quarter through our API (asked twice, made once,
    reversed once, rounded down once); one whose refund failed (nothing reversed); one disputed and won (held,
    then restored); one disputed and lost (held; Razorpay's own refund of it counts once)."""
    quarter = AMOUNT // 4
    truth = [
        payment("pay_ok", "ord_ok", "captured"),
        payment("pay_no", "ord_no", "failed"),
        payment("pay_back", "ord_back", "refunded", refunds=(GatewayRefund("rfnd_back", AMOUNT, "processed",
                                                                           by_harness=True),)),
        payment("pay_part", "ord_part", "partly_refunded",
                refunds=(GatewayRefund("rfnd_part", quarter, "processed", key="chaosKEY0000001"),)),
        payment("pay_fail", "ord_fail", "captured",
                refunds=(GatewayRefund("rfnd_fail", AMOUNT, "failed", key="chaosKEY0000002"),)),
        payment("pay_won", "ord_won", "captured",
                disputes=(GatewayDispute("disp_won", AMOUNT, "won", "chargeback"),)),
        payment("pay_lost", "ord_lost", "refunded", refunds=(GatewayRefund("rfnd_lost", AMOUNT, "processed"),),
                disputes=(GatewayDispute("disp_lost", AMOUNT, "lost", "chargeback"),)),
    ]
    ours = Ours(
        orders={o.id: o for o in (order("ord_ok", "paid"), order("ord_no", "abandoned"), order("ord_back", "paid"),
                                  order("ord_part", "paid"), order("ord_fail", "paid"), order("ord_won", "paid"),
                                  order("ord_lost", "paid"))},
        ledger=[credit("ord_ok", "pay_ok", T0 + 1),
                credit("ord_back", "pay_back", T0 + 10), reversal("ord_back", "pay_back", T0 + 60, -CREDITS,
                                                                  "refund:rfnd_back"),
                credit("ord_part", "pay_part", T0 + 10), reversal("ord_part", "pay_part", T0 + 60, -(CREDITS // 4),
                                                                  "refund:rfnd_part"),
                credit("ord_fail", "pay_fail", T0 + 10),
                credit("ord_won", "pay_won", T0 + 10),
                reversal("ord_won", "pay_won", T0 + 20, -CREDITS, "dispute:disp_won:hold:0", kind="dispute"),
                reversal("ord_won", "pay_won", T0 + 30, CREDITS, "dispute:disp_won:restore:0", kind="dispute",
                         entry="restore"),
                credit("ord_lost", "pay_lost", T0 + 10),
                reversal("ord_lost", "pay_lost", T0 + 20, -CREDITS, "dispute:disp_lost:hold:0", kind="dispute")],
        refunds=[refund_row("ord_back", "pay_back", "rfnd_back", AMOUNT, "processed", origin="gateway"),
                 refund_row("ord_part", "pay_part", "rfnd_part", quarter, "processed", key="chaosKEY0000001"),
                 refund_row("ord_fail", "pay_fail", "rfnd_fail", AMOUNT, "failed", key="chaosKEY0000002"),
                 refund_row("ord_lost", "pay_lost", "rfnd_lost", AMOUNT, "processed", origin="gateway")],
        disputes=[dispute_row("ord_won", "pay_won", "disp_won", AMOUNT, "won"),
                  dispute_row("ord_lost", "pay_lost", "disp_lost", AMOUNT, "lost")],
        balances={ORG: 4 * CREDITS - CREDITS // 4})
    return truth, ours


ASKED = {"pay_part": 2, "pay_fail": 1}  # pay_part's refund was asked for twice: the same key both times (one)


def reported(verdict) -> dict[str, list[str]]:
    """Every failing check of the verdict, by attribute (informational lists left out)."""
    return {attr: getattr(verdict, attr) for _, attr, _ in checks.MONEY_CHECKS if getattr(verdict, attr)}


def add_order(truth, ours, o: OurOrder, p: GatewayPayment, *rows: LedgerRow) -> None:
    truth.append(p)
    ours.orders[o.id] = o
    ours.ledger += rows
    ours.balances[o.organisation_id] = ours.balances.get(o.organisation_id, 0) + sum(r.credits for r in rows)


def test_a_good_run_reports_nothing():
    truth, ours = a_good_run()
    verdict = judge(truth, ours, ASKED)
    assert reported(verdict) == {}
    assert verdict.deserving == 4 and verdict.credited == 4  # ok, part, fail, won: the money is still held
    assert checks.failures(Tally(verdict=verdict)) == []


def test_every_money_check_is_in_the_table_and_fails_the_run():
    attrs = [attr for _, attr, _ in checks.MONEY_CHECKS]
    assert {"over_credited", "under_credited", "double_refunds", "refunds_out_of_step", "disputes_out_of_step",
            "stuck_refunds", "shortfall", "org_mismatch", "balance_mismatch"} <= set(attrs)
    for label, attr, _ in checks.MONEY_CHECKS:
        verdict = checks.Verdict(**{attr: ["x"]})
        assert checks.failures(Tally(verdict=verdict)) == [f"{label}: 1 e.g. x"]


def test_a_refund_the_gateway_processed_and_we_never_reversed_is_an_over_credit():
    truth, ours = a_good_run()
    add_order(truth, ours, order("ord_gone", "paid"),
              payment("pay_gone", "ord_gone", "refunded", refunds=(GatewayRefund("rfnd_gone", AMOUNT, "processed",
                                                                                 by_harness=True),)),
              credit("ord_gone", "pay_gone", T0 + 5))
    verdict = judge(truth, ours, ASKED)
    assert reported(verdict) == {"over_credited": ["ord_gone"], "refunds_out_of_step": ["pay_gone"],
                                 "org_mismatch": [ORG]}
    assert verdict.detail["ord_gone"].startswith("ledger 1,000 != entitled 0")
    assert any(f.startswith("over-credited: 1 e.g. ord_gone") for f in checks.failures(Tally(verdict=verdict)))


def test_partial_refunds_are_rounded_once_per_order_not_once_per_refund():
    truth, ours = a_good_run()
    third = AMOUNT // 3  # 78,666: two of them leave 78,668 of 236,000, i.e. 333.33… credits: 333
    refunds = (GatewayRefund("rfnd_a", third, "processed", key="chaosKEYaaaaaaa"),
               GatewayRefund("rfnd_b", third, "processed", key="chaosKEYbbbbbbb"))
    each = CREDITS * third // AMOUNT  # 333 per refund, rounded each time: 334 would be left
    add_order(truth, ours, order("ord_thirds", "paid"), payment("pay_thirds", "ord_thirds", "partly_refunded",
                                                                refunds=refunds),
              credit("ord_thirds", "pay_thirds", T0 + 5),
              reversal("ord_thirds", "pay_thirds", T0 + 6, -each, "refund:rfnd_a"),
              reversal("ord_thirds", "pay_thirds", T0 + 7, -each, "refund:rfnd_b"))
    ours.refunds += [refund_row("ord_thirds", "pay_thirds", "rfnd_a", third, "processed", key="chaosKEYaaaaaaa"),
                     refund_row("ord_thirds", "pay_thirds", "rfnd_b", third, "processed", key="chaosKEYbbbbbbb")]
    asked = {**ASKED, "pay_thirds": 2}
    assert checks.entitled(ours.orders["ord_thirds"], truth[-1]) == 333
    assert reported(judge(truth, ours, asked)) == {"over_credited": ["ord_thirds"], "org_mismatch": [ORG]}
    ours.ledger[-1] = reversal("ord_thirds", "pay_thirds", T0 + 7, -(CREDITS - 333 - each), "refund:rfnd_b")
    ours.balances[ORG] -= 1
    assert reported(judge(truth, ours, asked)) == {}


def test_a_failed_or_pending_refund_reverses_nothing():
    truth, ours = a_good_run()
    ours.ledger.append(reversal("ord_fail", "pay_fail", T0 + 70, -CREDITS, "refund:rfnd_fail"))
    ours.balances[ORG] -= CREDITS
    verdict = judge(truth, ours, ASKED)
    assert reported(verdict) == {"under_credited": ["ord_fail"], "org_mismatch": [ORG]}
    truth[4] = payment("pay_fail", "ord_fail", "captured",
                       refunds=(GatewayRefund("rfnd_fail", AMOUNT, "pending", key="chaosKEY0000002"),))
    assert judge(truth, ours, ASKED).under_credited == ["ord_fail"]


def test_a_dispute_must_hold_its_credits_while_open_and_once_lost():
    truth, ours = a_good_run()
    add_order(truth, ours, order("ord_open", "paid"),
              payment("pay_open", "ord_open", "captured",
                      disputes=(GatewayDispute("disp_open", AMOUNT // 2, "under_review"),)),
              credit("ord_open", "pay_open", T0 + 5))  # the hold is missing
    ours.disputes.append(dispute_row("ord_open", "pay_open", "disp_open", AMOUNT // 2, "under_review"))
    verdict = judge(truth, ours, ASKED)
    assert reported(verdict) == {"over_credited": ["ord_open"], "org_mismatch": [ORG]}
    assert "disputes held 118,000" in verdict.detail["ord_open"]


def test_a_won_dispute_not_restored_is_an_under_credit_and_a_reopened_one_is_held_again():
    truth, ours = a_good_run()
    ours.ledger = [row for row in ours.ledger if row.money_event_id != "dispute:disp_won:restore:0"]
    ours.balances[ORG] -= CREDITS
    assert reported(judge(truth, ours, ASKED)) == {"under_credited": ["ord_won"], "org_mismatch": [ORG]}
    truth[5] = payment("pay_won", "ord_won", "captured",
                       disputes=(GatewayDispute("disp_won", AMOUNT, "open", "pre_arbitration"),))
    ours.disputes[0] = dispute_row("ord_won", "pay_won", "disp_won", AMOUNT, "open", phase="pre_arbitration")
    assert reported(judge(truth, ours, ASKED)) == {}  # reopened by pre-arbitration: held again, nothing restored


def test_a_lost_dispute_and_its_own_refund_are_one_money_event():
    truth, ours = a_good_run()
    assert truth[6].taken_minor == AMOUNT  # the dispute's amount and its refund entity: counted once
    ours.ledger.append(reversal("ord_lost", "pay_lost", T0 + 40, -CREDITS, "refund:rfnd_lost"))  # reversed twice
    ours.balances[ORG] -= CREDITS
    assert reported(judge(truth, ours, ASKED)) == {"under_credited": ["ord_lost"], "org_mismatch": [ORG]}


def test_two_gateway_refunds_for_one_key_are_a_double_refund():
    truth, ours = a_good_run()
    truth[3] = payment("pay_part", "ord_part", "partly_refunded", refunds=(
        GatewayRefund("rfnd_part", AMOUNT // 4, "processed", key="chaosKEY0000001"),
        GatewayRefund("rfnd_part2", AMOUNT // 4, "processed", key="chaosKEY0000001")))
    verdict = judge(truth, ours, ASKED)
    assert verdict.double_refunds == ["pay_part"] and "share key" in verdict.detail["pay_part"]
    assert verdict.over_credited == ["ord_part"]


def test_more_keyed_refunds_at_the_gateway_than_support_asked_for_is_a_double_refund():
    truth, ours = a_good_run()
    truth[3] = payment("pay_part", "ord_part", "partly_refunded", refunds=(  # two keys for one request: a new key
        GatewayRefund("rfnd_part", AMOUNT // 4, "processed", key="chaosKEY0000001"),  # made on a retry
        GatewayRefund("rfnd_part2", AMOUNT // 4, "pending", key="rfDERIVEDKEY0001")))
    assert judge(truth, ours, ASKED).double_refunds == []  # asked twice: two are allowed
    assert judge(truth, ours, {**ASKED, "pay_part": 1}).double_refunds == ["pay_part"]
    ours.refunds.append(refund_row("ord_part", "pay_part", "rfnd_part2", AMOUNT // 4, "pending",
                                   key="rfDERIVEDKEY0001", origin="duplicate"))  # the service's own: not asked for
    assert judge(truth, ours, {**ASKED, "pay_part": 1}).double_refunds == []


def test_reversing_more_refunded_money_than_the_gateway_refunded_is_a_double_refund():
    truth, ours = a_good_run()
    ours.refunds.append(refund_row("ord_part", "pay_part", "pay_part:refunded", AMOUNT // 4, "processed",
                                   origin="gateway"))  # the same refund seen again under another id
    ours.ledger.append(reversal("ord_part", "pay_part", T0 + 80, -(CREDITS // 4), "refund:pay_part:refunded"))
    ours.balances[ORG] -= CREDITS // 4
    verdict = judge(truth, ours, ASKED)
    assert reported(verdict) == {"double_refunds": ["pay_part"], "under_credited": ["ord_part"],
                                 "org_mismatch": [ORG]}


def test_one_money_event_in_the_ledger_twice_is_reported_even_though_the_schema_forbids_it():
    truth, ours = a_good_run()
    ours.ledger.append(reversal("ord_part", "pay_part", T0 + 61, 0, "refund:rfnd_part"))
    assert reported(judge(truth, ours, ASKED)) == {"double_refunds": ["pay_part"]}


def test_refunds_whose_state_differs_from_the_gateways_are_out_of_step():
    truth, ours = a_good_run()
    ours.refunds[2] = refund_row("ord_fail", "pay_fail", "rfnd_fail", AMOUNT, "processed", key="chaosKEY0000002")
    verdict = judge(truth, ours, ASKED)  # processed here, failed there: and more reversed than refunded
    assert verdict.refunds_out_of_step == ["pay_fail"] and verdict.double_refunds == ["pay_fail"]
    truth[4] = payment("pay_fail", "ord_fail", "refunded",
                       refunds=(GatewayRefund("rfnd_fail", AMOUNT, "processed", key="chaosKEY0000002"),))
    ours.refunds[2] = refund_row("ord_fail", "pay_fail", "rfnd_fail", AMOUNT, "failed", key="chaosKEY0000002")
    verdict = judge(truth, ours, ASKED)
    assert verdict.refunds_out_of_step == ["pay_fail"] and verdict.over_credited == ["ord_fail"]


def test_a_refund_still_requested_or_pending_at_quiescence_is_stuck():
    truth, ours = a_good_run()
    ours.refunds.append(refund_row("ord_ok", "pay_ok", None, AMOUNT, "requested", key="chaosKEY0000009"))
    verdict = judge(truth, ours, {**ASKED, "pay_ok": 1})
    assert reported(verdict) == {"stuck_refunds": ["ord_ok"]}
    assert verdict.detail["stuck:ord_ok"] == "support refund chaosKEY0000009 requested"


@pytest.mark.parametrize(("ours_state", "held", "phase"), [("under_review", True, "chargeback"),
                                                           ("won", False, "pre_arbitration"),
                                                           ("lost", True, "chargeback")])
def test_a_dispute_whose_state_phase_or_hold_differs_from_the_gateways_is_out_of_step(ours_state, held, phase):
    truth, ours = a_good_run()
    ours.disputes[0] = dispute_row("ord_won", "pay_won", "disp_won", AMOUNT, ours_state, phase=phase, held=held)
    assert judge(truth, ours, ASKED).disputes_out_of_step == ["disp_won"]


def test_a_gateway_dispute_we_do_not_hold_and_one_of_ours_it_does_not_know_are_out_of_step():
    truth, ours = a_good_run()
    ours.disputes = [ours.disputes[1], dispute_row("ord_ok", "pay_ok", "disp_ghost", AMOUNT, "open")]
    verdict = judge(truth, ours, ASKED)
    assert verdict.disputes_out_of_step == ["disp_ghost", "disp_won"]
    assert verdict.failing_orders(truth) == ["ord_ok", "ord_won"]
    ours.disputes[1] = OurDispute("ord_ok", "razorpay", "chargeback_abc", "pay_ok", AMOUNT, "lost", "chargeback",
                                  True, source="support")  # recorded by hand: no gateway dispute is expected
    assert judge(truth, ours, ASKED).disputes_out_of_step == ["disp_won"]


def test_a_shortfall_is_reported():
    truth, ours = a_good_run()
    ours.ledger[2] = reversal("ord_back", "pay_back", T0 + 60, -(CREDITS - 10), "refund:rfnd_back", shortfall=10)
    ours.balances[ORG] += 10
    verdict = judge(truth, ours, ASKED)
    assert verdict.shortfall == ["ord_back"] and verdict.over_credited == ["ord_back"]


def test_a_payment_credited_twice_is_reported_by_payment_and_by_order():
    truth, ours = a_good_run()
    ours.ledger.append(credit("ord_ok", "pay_ok", T0 + 2))  # the schema forbids it; the check must not rely on that
    ours.balances[ORG] += CREDITS
    verdict = judge(truth, ours, ASKED)
    assert reported(verdict) == {"double_order": ["ord_ok"], "double_payment": ["pay_ok"], "over_credited": ["ord_ok"],
                                 "org_mismatch": [ORG]}
    assert verdict.org_detail[ORG] == "ledger 4,750 != entitled 3,750"


def test_one_payment_credited_on_two_orders_is_a_double_credit_of_that_payment():
    truth, ours = a_good_run()
    ours.orders["ord_twin"] = order("ord_twin", "paid")
    ours.ledger.append(credit("ord_twin", "pay_ok", T0 + 3))
    ours.balances[ORG] += CREDITS
    verdict = judge(truth, ours, ASKED)
    assert verdict.double_payment == ["pay_ok"] and verdict.over_credited == ["ord_twin"]


def test_an_authorised_matching_payment_left_uncaptured_on_an_unpaid_order_is_a_lost_capture():
    truth, ours = a_good_run()
    truth += [payment("pay_auth", "ord_late", "authorized"),
              payment("pay_wrong", "ord_wrong", "authorized", amount=235_900)]  # mismatched: a person's, not ours
    ours.orders["ord_late"] = order("ord_late", "abandoned")
    ours.orders["ord_wrong"] = order("ord_wrong", "needs_review")
    assert reported(judge(truth, ours, ASKED)) == {"lost_captures": ["pay_auth"]}


def test_money_kept_and_not_credited_is_under_credited_unless_a_person_has_it():
    truth, ours = a_good_run()
    truth += [payment("pay_kept", "ord_kept", "captured"), payment("pay_review", "ord_review", "captured"),
              payment("pay_closed", "ord_closed", "captured")]
    ours.orders.update({"ord_kept": order("ord_kept", "failed"), "ord_review": order("ord_review", "needs_review"),
                        "ord_closed": order("ord_closed", "closed")})
    ours.reviews["ord_closed"] = [(T0 + 70, "close")]
    verdict = judge(truth, ours, ASKED)
    assert reported(verdict) == {"under_credited": ["ord_kept"], "uncredited_payments": ["pay_kept"],
                                 "org_mismatch": [ORG]}
    assert verdict.org_detail[ORG] == "ledger 3,750 != entitled 4,750"
    assert verdict.money_with_a_person == ["ord_closed", "ord_review"]


def test_a_second_kept_payment_on_a_credited_order_must_be_credited_or_flagged():
    truth, ours = a_good_run()
    truth.append(payment("pay_second", "ord_ok", "captured"))
    assert reported(judge(truth, ours, ASKED)) == {"uncredited_payments": ["pay_second"]}
    ours.orders["ord_ok"] = order("ord_ok", "needs_review")
    assert reported(judge(truth, ours, ASKED)) == {}


def test_credits_for_payments_never_captured_or_unknown_at_the_gateway():
    truth, ours = a_good_run()
    truth.append(payment("pay_auto", "ord_auto", "refunded", captured=False,
                         refunds=(GatewayRefund("rfnd_auto", AMOUNT, "processed"),)))  # an automatic refund
    ours.orders["ord_auto"] = order("ord_auto", "needs_review")
    ours.orders["ord_ghost"] = order("ord_ghost", "paid")
    ours.ledger += [credit("ord_auto", "pay_auto", T0 + 5), credit("ord_ghost", "pay_ghost", T0 + 5),
                    credit("ord_no", "pay_no", T0 + 5)]
    ours.balances[ORG] += 3 * CREDITS
    verdict = judge(truth, ours, ASKED)
    assert verdict.credit_without_capture == ["pay_auto", "pay_ghost", "pay_no"]
    assert verdict.over_credited == ["ord_auto", "ord_ghost", "ord_no"]


def test_a_mismatched_payment_credited_without_a_person_is_an_over_credit_with_one_it_is_not():
    truth, ours = a_good_run()
    add_order(truth, ours, order("ord_less", "paid"), payment("pay_less", "ord_less", "captured", amount=235_900),
              credit("ord_less", "pay_less", T0 + 5))
    assert reported(judge(truth, ours, ASKED)) == {"over_credited": ["ord_less"], "org_mismatch": [ORG]}
    ours.reviews["ord_less"] = [(T0 + 5, "credit")]  # support decided to credit it: the grant is the decision's
    assert reported(judge(truth, ours, ASKED)) == {}


def test_a_credit_after_support_closed_the_order_fails():
    truth, ours = a_good_run()
    add_order(truth, ours, order("ord_closed", "paid"), payment("pay_closed", "ord_closed", "captured"),
              credit("ord_closed", "pay_closed", T0 + 30))
    ours.reviews["ord_closed"] = [(T0 + 10, "close")]
    assert reported(judge(truth, ours, ASKED)) == {"credited_after_decision": ["ord_closed"],
                                                   "over_credited": ["ord_closed"], "org_mismatch": [ORG]}
    ours.reviews["ord_closed"] = [(T0 + 40, "close")]  # credited before it went to review: the credit stands
    assert reported(judge(truth, ours, ASKED)) == {}


def test_credits_on_the_wrong_organisation_and_balances_that_disagree():
    truth, ours = a_good_run()
    ours.ledger[0] = credit("ord_ok", "pay_ok", T0 + 1, org=OTHER_ORG)
    ours.balances = {ORG: 2 * CREDITS + 3 * CREDITS // 4, OTHER_ORG: CREDITS}
    assert reported(judge(truth, ours, ASKED)) == {"org_mismatch": [ORG, OTHER_ORG]}
    ours.ledger[0] = credit("ord_ok", "pay_ok", T0 + 1)
    ours.balances = {ORG: 5_000}
    assert reported(judge(truth, ours, ASKED)) == {"balance_mismatch": [ORG]}


def test_the_idle_test_waits_for_refunds_in_flight_on_both_sides():
    tally = Tally(webhooks={"pending": 0}, our_refunds={"support:processed": 3})
    assert checks.idle(tally)
    tally.our_refunds["support:pending"] = 1
    assert not checks.idle(tally) and checks.idle(tally, refunds=False)
    tally.our_refunds.pop("support:pending")
    tally.gateway_refunds = {"razorpay:pending": 1}
    assert not checks.idle(tally)


def test_the_truth_is_read_from_the_simulator_for_both_gateways():
    from simulator import Simulator, SimulatorConfig

    sim = Simulator(SimulatorConfig(seed=3))
    try:
        kept = sim.razorpay.create_order({"amount": 236_000, "currency": "INR", "receipt": "ord_kept"})
        gone = sim.razorpay.create_order({"amount": 236_000, "currency": "INR", "receipt": "ord_gone"})
        ours = sim.razorpay.create_order({"amount": 236_000, "currency": "INR", "receipt": "ord_ours"})
        lost = sim.razorpay.create_order({"amount": 236_000, "currency": "INR", "receipt": "ord_lost"})
        held = sim.razorpay.create_order({"amount": 236_000, "currency": "INR", "receipt": "ord_held",
                                          "payment": {"capture": "automatic",
                                                      "capture_options": {"automatic_expiry_period": 12}}})
        sim.pay(kept["id"], "success", deliver_webhooks=False)
        refunded = sim.pay(gone["id"], "success", deliver_webhooks=False)
        dashboard = sim.dashboard_refund(refunded["id"], 59_000, deliver_webhooks=False)
        mine = sim.pay(ours["id"], "success", deliver_webhooks=False)
        key = "chaosKEY000000001"
        sim.razorpay.create_refund(mine["id"], {"amount": 118_000, "notes": {"idempotency_key": key}}, key)
        disputed = sim.pay(lost["id"], "success", deliver_webhooks=False)
        dispute = sim.open_dispute(disputed["id"], deliver_webhooks=False)
        sim.move_dispute(dispute["id"], status="lost", deliver_webhooks=False)  # and Razorpay refunds the customer
        late = sim.pay(held["id"], "timeout", deliver_webhooks=False)
        sim.late_authorize(late["id"], minutes_after_creation=30, deliver_webhooks=False)  # past A: left authorized
        txn = sim.payglocal.initiate({"merchantTxnId": "ord_us", "paymentData": {"totalAmount": "30.00",
                                                                                "txnCurrency": "USD"}}, "http://x")
        sim.pay_payglocal(txn["gid"], "success", deliver_callback=False)
        sim.payglocal.create_refund(txn["gid"], {"merchantTxnId": "chaosKEY000000002", "refundType": "P",
                                                 "paymentData": {"totalAmount": "10.00"}})
        truth = {p.order_id: p for p in checks.gateway_truth(sim, {dashboard["id"]})}
    finally:
        sim.close()
    assert truth["ord_kept"].kept and truth["ord_kept"].status == "captured" and truth["ord_kept"].taken_minor == 0
    gone_truth = truth["ord_gone"]
    assert gone_truth.status == "partly_refunded" and gone_truth.captured and not gone_truth.kept
    assert gone_truth.refunds == (checks.GatewayRefund(dashboard["id"], 59_000, "processed", None, True),)
    assert [(r.amount_minor, r.status, r.key) for r in truth["ord_ours"].refunds] == [(118_000, "processed", key)]
    assert [(d.status, d.held) for d in truth["ord_lost"].disputes] == [("lost", True)]
    assert truth["ord_lost"].refunded_minor == 236_000 == truth["ord_lost"].taken_minor  # counted once
    assert checks.entitled(order("ord_ours", "paid"), truth["ord_ours"]) == CREDITS // 2
    assert truth["ord_held"].status == "authorized" and not truth["ord_held"].captured
    us = truth["ord_us"]
    assert (us.gateway, us.payment_id, us.status, us.amount_minor, us.currency) == \
        ("payglocal", txn["gid"], "partly_refunded", 3_000, "USD")
    assert [(r.amount_minor, r.status, r.key) for r in us.refunds] == [(1_000, "processed", "chaosKEY000000002")]
    judged = judge(truth.values(), Ours(orders={"ord_held": order("ord_held", "abandoned")}))
    assert judged.lost_captures == [late["id"]]
