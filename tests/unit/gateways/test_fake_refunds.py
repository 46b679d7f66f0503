"""FakeGateway refunds and disputes: idempotent per key, refused above what was captured, scripted states, and
webhooks that parse back into the same DTOs."""

from __future__ import annotations

import pytest

from gateways.errors import GatewayNotFound, GatewayPermanent
from gateways.fake import FakeGateway
from gateways.port import DisputeStatus, PaymentGateway, RefundStatus, RemotePayment, RemoteStatus


def captured(fake: FakeGateway, status: RemoteStatus = RemoteStatus.CAPTURED) -> RemotePayment:
    order = fake.create_order(receipt="r-1", amount_minor=10_000, currency="INR", notes={}, manual_capture=False)
    return fake.pay(order.gateway_order_id, status)


def ask(fake: FakeGateway, payment: RemotePayment, amount: int = 4_000, *, key: str = "refund-key-0001",
        full: bool = False):
    return fake.create_refund(payment.gateway_payment_id, amount_minor=amount, currency="INR", full=full,
                              idempotency_key=key, reason="asked")


def test_the_fake_is_a_payment_gateway() -> None:
    assert isinstance(FakeGateway(), PaymentGateway)


def test_a_refund_starts_pending_and_the_same_key_gives_the_same_refund() -> None:
    fake = FakeGateway()
    payment = captured(fake)
    first = ask(fake, payment)
    assert (first.status, first.amount_minor, first.currency, first.idempotency_key) == (
        RefundStatus.PENDING, 4_000, "INR", "refund-key-0001")
    assert first.payment_captured is True and first.gateway_payment_id == payment.gateway_payment_id
    fake.set_refund_status(first.gateway_refund_id, RefundStatus.PROCESSED)
    again = ask(fake, payment)
    assert again.gateway_refund_id == first.gateway_refund_id and again.status is RefundStatus.PROCESSED
    assert fake.fetch_refunds(payment.gateway_payment_id) == (again,)
    with pytest.raises(GatewayPermanent, match="Different request"):
        ask(fake, payment, 3_000)
    assert fake.calls.count("create_refund") == 3


def test_refunds_above_what_was_captured_are_refused_and_full_refunds_the_rest() -> None:
    fake = FakeGateway(refund_status=RefundStatus.PROCESSED)
    payment = captured(fake)
    ask(fake, payment, 6_000)
    with pytest.raises(GatewayPermanent, match="greater than amount captured"):
        ask(fake, payment, 4_001, key="refund-key-0002")
    rest = ask(fake, payment, 10_000, key="refund-key-0003", full=True)
    assert (rest.amount_minor, rest.status) == (4_000, RefundStatus.PROCESSED)
    with pytest.raises(GatewayPermanent, match="fully refunded already"):
        ask(fake, payment, 1, key="refund-key-0004")


def test_a_failed_refund_frees_its_amount_and_uncaptured_or_unknown_payments_are_refused() -> None:
    fake = FakeGateway()
    payment = captured(fake)
    failed = ask(fake, payment, 10_000)
    fake.set_refund_status(failed.gateway_refund_id, RefundStatus.FAILED)
    assert ask(fake, payment, 10_000, key="refund-key-0002").status is RefundStatus.PENDING
    with pytest.raises(GatewayPermanent, match="cannot be refunded"):
        ask(fake, captured(fake, RemoteStatus.AUTHORIZED))
    with pytest.raises(GatewayNotFound):
        fake.fetch_refunds("fake_pay_nope")


def test_refund_and_dispute_webhooks_parse_back_with_their_payment() -> None:
    fake = FakeGateway()
    payment = fake.set_status(captured(fake).gateway_payment_id, RemoteStatus.REFUNDED, amount_refunded_minor=4_000)
    made = fake.set_refund_status(ask(fake, payment).gateway_refund_id, RefundStatus.PROCESSED)
    event = fake.verify_webhook(*fake.refund_webhook(made))
    assert (event.event_type, event.refund, event.dispute) == ("refund.processed", made, None)
    assert event.gateway_order_id == payment.gateway_order_id and event.payment is not None
    assert event.payment.amount_refunded_minor == 4_000 and event.payment.status is RemoteStatus.REFUNDED

    auto = fake.add_refund(payment.gateway_payment_id, payment_captured=False)
    assert fake.verify_webhook(*fake.refund_webhook(auto, "refund.created")).refund == auto

    dispute = fake.dispute(payment.gateway_payment_id, respond_by=1_700_000_000)
    assert fake.disputes[dispute.gateway_dispute_id] == dispute and dispute.amount_minor == 10_000
    event = fake.verify_webhook(*fake.dispute_webhook(dispute))
    assert (event.event_type, event.dispute, event.refund) == ("payment.dispute.created", dispute, None)
    lost = fake.dispute(payment.gateway_payment_id, DisputeStatus.LOST, amount_deducted_minor=10_000)
    assert fake.verify_webhook(*fake.dispute_webhook(lost, "payment.dispute.lost")).dispute == lost


def test_the_payment_webhook_is_unchanged_and_carries_neither() -> None:
    fake = FakeGateway()
    event = fake.verify_webhook(*fake.webhook(captured(fake), event_id="evt_1"))
    assert event.event_id == "evt_1" and event.refund is None and event.dispute is None
    assert event.payment is not None and event.payment.amount_refunded_minor == 0
