"""The chaos run's money checks fail when they should: crafted gateway truths and databases, no services needed.

Each case feeds :func:`ops.chaos.checks.judge` one broken promise (an over-credit, a payment credited twice, a
lost capture, ...) next to orders that are fine, and asserts that exactly the broken one is reported; the last
cases read the truth from an in-memory simulator, as the run does.
"""

from __future__ import annotations

from ops.chaos import checks
from ops.chaos.checks import GatewayPayment, LedgerRow, OurOrder, Ours, Tally, judge

T0 = 1_700_000_000.0
ORG, OTHER_ORG = "org-a", "org-b"


def order(order_id: str, state: str, *, credits: int = 1_000, amount: int = 236_000, org: str = ORG,
          gateway: str = "razorpay") -> OurOrder:
    return OurOrder(order_id, org, state, credits, amount, "INR", gateway)


def payment(payment_id: str, order_id: str, status: str, *, amount: int = 236_000, captured: bool | None = None,
            refunded_at: float | None = None, gateway: str = "razorpay") -> GatewayPayment:
    ever = status in ("captured", "refunded", "partly_refunded") if captured is None else captured
    return GatewayPayment(gateway, payment_id, order_id, status, amount, "INR", ever, refunded_at)


def credit(order_id: str, payment_id: str, at: float, *, credits: int = 1_000, org: str = ORG,
           kind: str = "credits", gateway: str = "razorpay") -> LedgerRow:
    return LedgerRow(order_id, org, gateway, payment_id, kind, credits, at)


def a_good_run() -> tuple[list[GatewayPayment], Ours]:
    """Three orders all fine: one paid and credited, one abandoned with a declined payment, one refunded after
    its credit and waiting for a person in needs_review."""
    truth = [payment("pay_ok", "ord_ok", "captured"), payment("pay_no", "ord_no", "failed"),
             payment("pay_back", "ord_back", "refunded", refunded_at=T0 + 50)]
    ours = Ours(orders={"ord_ok": order("ord_ok", "paid"), "ord_no": order("ord_no", "abandoned"),
                        "ord_back": order("ord_back", "needs_review")},
                ledger=[credit("ord_ok", "pay_ok", T0 + 1), credit("ord_back", "pay_back", T0 + 10)],
                refund_known_at={("razorpay", "pay_back"): T0 + 51}, balances={ORG: 2_000})
    return truth, ours


def reported(verdict) -> dict[str, list[str]]:
    """Every failing check of the verdict, by attribute (informational lists left out)."""
    return {attr: getattr(verdict, attr) for _, attr, _ in checks.MONEY_CHECKS if getattr(verdict, attr)}


def test_a_good_run_reports_nothing_and_counts_the_flagged_refund():
    truth, ours = a_good_run()
    verdict = judge(truth, ours)
    assert reported(verdict) == {}
    assert verdict.refunded_after_credit_flagged == ["ord_back"] and verdict.deserving == 1
    assert checks.failures(Tally(verdict=verdict)) == []


def test_a_refunded_payment_credited_and_left_paid_is_an_over_credit():
    truth, ours = a_good_run()
    truth.append(payment("pay_gone", "ord_gone", "refunded", refunded_at=T0 + 5))
    ours.orders["ord_gone"] = order("ord_gone", "paid")
    ours.ledger.append(credit("ord_gone", "pay_gone", T0 + 20))  # credited after the refund, and nobody flagged it
    ours.balances[ORG] += 1_000
    verdict = judge(truth, ours)
    assert reported(verdict) == {"over_credited": ["ord_gone"], "credit_for_refunded": ["pay_gone"],
                                 "org_mismatch": [ORG]}
    assert verdict.credited_while_refund_in_flight == ["pay_gone"]
    assert any(f.startswith("over-credited: 1 e.g. ord_gone") for f in checks.failures(Tally(verdict=verdict)))


def test_a_credit_written_after_we_processed_the_refund_fails_even_in_needs_review():
    truth, ours = a_good_run()
    truth.append(payment("pay_stale", "ord_stale", "refunded", refunded_at=T0 + 5))
    ours.orders["ord_stale"] = order("ord_stale", "needs_review")
    ours.ledger.append(credit("ord_stale", "pay_stale", T0 + 30))  # a stale capture webhook, processed after ...
    ours.refund_known_at[("razorpay", "pay_stale")] = T0 + 8  # ... we had processed the refund
    ours.balances[ORG] += 1_000
    assert reported(judge(truth, ours)) == {"credited_after_refund_known": ["pay_stale"]}


def test_a_payment_credited_twice_is_reported_by_payment_and_by_order():
    truth, ours = a_good_run()
    ours.ledger.append(credit("ord_ok", "pay_ok", T0 + 2))  # the schema forbids it; the check must not rely on that
    ours.balances[ORG] += 1_000
    verdict = judge(truth, ours)
    assert reported(verdict) == {"double_order": ["ord_ok"], "double_payment": ["pay_ok"], "over_credited": ["ord_ok"],
                                 "org_mismatch": [ORG]}
    assert verdict.org_detail[ORG] == "ledger 3,000 != deserved 2,000"


def test_one_payment_credited_on_two_orders_is_a_double_credit_of_that_payment():
    truth, ours = a_good_run()
    ours.orders["ord_twin"] = order("ord_twin", "paid")
    ours.ledger.append(credit("ord_twin", "pay_ok", T0 + 3))
    ours.balances[ORG] += 1_000
    verdict = judge(truth, ours)
    assert verdict.double_payment == ["pay_ok"] and verdict.over_credited == ["ord_twin"]


def test_a_reversal_row_cancels_a_credit():
    truth, ours = a_good_run()
    truth.append(payment("pay_rev", "ord_rev", "refunded", refunded_at=T0 + 40))
    ours.orders["ord_rev"] = order("ord_rev", "paid")
    ours.ledger += [credit("ord_rev", "pay_rev", T0 + 30), credit("ord_rev", "pay_rev", T0 + 60, credits=-1_000,
                                                                  kind="reversal")]
    assert reported(judge(truth, ours)) == {}


def test_an_authorised_matching_payment_left_uncaptured_on_an_unpaid_order_is_a_lost_capture():
    truth, ours = a_good_run()
    truth += [payment("pay_auth", "ord_late", "authorized"),
              payment("pay_wrong", "ord_wrong", "authorized", amount=235_900)]  # mismatched: a person's, not ours
    ours.orders["ord_late"] = order("ord_late", "abandoned")
    ours.orders["ord_wrong"] = order("ord_wrong", "needs_review")
    assert reported(judge(truth, ours)) == {"lost_captures": ["pay_auth"]}


def test_money_kept_and_not_credited_is_under_credited_unless_a_person_has_it():
    truth, ours = a_good_run()
    truth += [payment("pay_kept", "ord_kept", "captured"), payment("pay_review", "ord_review", "captured"),
              payment("pay_closed", "ord_closed", "captured")]
    ours.orders.update({"ord_kept": order("ord_kept", "failed"), "ord_review": order("ord_review", "needs_review"),
                        "ord_closed": order("ord_closed", "closed")})
    ours.reviews["ord_closed"] = [(T0 + 70, "close")]
    verdict = judge(truth, ours)
    assert reported(verdict) == {"under_credited": ["ord_kept"], "uncredited_payments": ["pay_kept"],
                                 "org_mismatch": [ORG]}
    assert verdict.org_detail[ORG] == "ledger 2,000 != deserved 3,000"
    assert verdict.money_with_a_person == ["ord_closed", "ord_review"]


def test_a_second_kept_payment_on_a_credited_order_must_be_credited_or_flagged():
    truth, ours = a_good_run()
    truth.append(payment("pay_second", "ord_ok", "captured"))
    assert reported(judge(truth, ours)) == {"uncredited_payments": ["pay_second"]}
    ours.orders["ord_ok"] = order("ord_ok", "needs_review")
    assert reported(judge(truth, ours)) == {}


def test_credits_for_payments_never_captured_or_unknown_at_the_gateway():
    truth, ours = a_good_run()
    truth.append(payment("pay_auto", "ord_auto", "refunded", captured=False, refunded_at=T0))  # an automatic refund
    ours.orders["ord_auto"] = order("ord_auto", "needs_review")
    ours.orders["ord_ghost"] = order("ord_ghost", "paid")
    ours.ledger += [credit("ord_auto", "pay_auto", T0 + 5), credit("ord_ghost", "pay_ghost", T0 + 5),
                    credit("ord_no", "pay_no", T0 + 5)]
    ours.balances[ORG] += 3_000
    verdict = judge(truth, ours)
    assert verdict.credit_without_capture == ["pay_auto", "pay_ghost", "pay_no"]
    assert verdict.over_credited == ["ord_ghost", "ord_no"]


def test_a_mismatched_payment_credited_without_a_person_is_an_over_credit_with_one_it_is_not():
    truth, ours = a_good_run()
    truth.append(payment("pay_less", "ord_less", "captured", amount=235_900))
    ours.orders["ord_less"] = order("ord_less", "paid")
    ours.ledger.append(credit("ord_less", "pay_less", T0 + 5))
    ours.balances[ORG] += 1_000
    assert reported(judge(truth, ours)) == {"over_credited": ["ord_less"], "org_mismatch": [ORG]}
    ours.reviews["ord_less"] = [(T0 + 5, "credit")]  # support decided to credit it: the grant is the decision's
    assert reported(judge(truth, ours)) == {}


def test_a_credit_after_support_closed_the_order_fails():
    truth, ours = a_good_run()
    truth.append(payment("pay_closed", "ord_closed", "captured"))
    ours.orders["ord_closed"] = order("ord_closed", "paid")
    ours.reviews["ord_closed"] = [(T0 + 10, "close")]
    ours.ledger.append(credit("ord_closed", "pay_closed", T0 + 30))
    ours.balances[ORG] += 1_000
    assert reported(judge(truth, ours)) == {"credited_after_decision": ["ord_closed"], "org_mismatch": [ORG]}


def test_credits_on_the_wrong_organisation_and_balances_that_disagree():
    truth, ours = a_good_run()
    ours.ledger[0] = credit("ord_ok", "pay_ok", T0 + 1, org=OTHER_ORG)
    ours.balances = {ORG: 1_000, OTHER_ORG: 1_000}
    assert reported(judge(truth, ours)) == {"org_mismatch": [ORG, OTHER_ORG]}
    ours.ledger[0] = credit("ord_ok", "pay_ok", T0 + 1)
    ours.balances = {ORG: 2_500}
    assert reported(judge(truth, ours)) == {"balance_mismatch": [ORG]}


def test_the_truth_is_read_from_the_simulator_for_both_gateways():
    from simulator import Simulator, SimulatorConfig

    sim = Simulator(SimulatorConfig(seed=3))
    try:
        kept = sim.razorpay.create_order({"amount": 236_000, "currency": "INR", "receipt": "ord_kept"})
        gone = sim.razorpay.create_order({"amount": 236_000, "currency": "INR", "receipt": "ord_gone"})
        held = sim.razorpay.create_order({"amount": 236_000, "currency": "INR", "receipt": "ord_held",
                                          "payment": {"capture": "automatic",
                                                      "capture_options": {"automatic_expiry_period": 12}}})
        sim.pay(kept["id"], "success", deliver_webhooks=False)
        refunded = sim.pay(gone["id"], "success", deliver_webhooks=False)
        sim.refund(refunded["id"], deliver_webhooks=False)
        late = sim.pay(held["id"], "timeout", deliver_webhooks=False)
        sim.late_authorize(late["id"], minutes_after_creation=30, deliver_webhooks=False)  # past A: left authorized
        txn = sim.payglocal.initiate({"merchantTxnId": "ord_us", "paymentData": {"totalAmount": "30.00",
                                                                                "txnCurrency": "USD"}}, "http://x")
        sim.pay_payglocal(txn["gid"], "success", deliver_callback=False)
        truth = {p.order_id: p for p in checks.gateway_truth(sim, {refunded["id"]: T0})}
    finally:
        sim.close()
    assert truth["ord_kept"].kept and truth["ord_kept"].status == "captured"
    assert truth["ord_gone"].status == "refunded" and truth["ord_gone"].captured and truth["ord_gone"].refunded_at == T0
    assert truth["ord_held"].status == "authorized" and not truth["ord_held"].captured
    us = truth["ord_us"]
    assert (us.gateway, us.payment_id, us.status, us.amount_minor, us.currency) == \
        ("payglocal", txn["gid"], "captured", 3_000, "USD")
    ours = Ours(orders={"ord_held": order("ord_held", "abandoned")})
    assert judge(truth.values(), ours).lost_captures == [late["id"]]
