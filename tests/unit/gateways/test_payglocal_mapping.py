"""PayGlocal JSON -> DTOs: the status table row by row, data.status over status, and exact decimal amounts."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from gateways.errors import GatewayPermanent
from gateways.payglocal import mapping
from gateways.port import FailureKind, RemoteStatus
from tests.unit.gateways.payglocal_fakes import GID, initiate_json, status_json

#: after-capture.md §6.1: the 30 values of openapi's ExternalStatus, in the table's order.
EXTERNAL_STATUS = [
    "CREATED", "INPROGRESS", "AUTHORIZED", "SENT_FOR_CAPTURE", "SENT_FOR_REFUND", "REVERSED", "ABANDONED",
    "CUSTOMER_CANCELLED", "ISSUER_DECLINE", "GENERAL_DECLINE", "AUTHENTICATION_TIMEOUT", "REQUEST_ERROR",
    "SYSTEM_ERROR", "CONFIG_ERROR", "SUCCESS",
    # the 15 UNDOCUMENTED ones
    "STEP_UP", "REFUND_STARTED", "CAPTURE_STARTED", "AUTH_REVERSAL_STARTED", "EXPIRED", "PRE_PAYNOW_ABANDONED",
    "RULE_CONFIG_ERROR", "SYSTEM_DECLINED", "NOT_FOUND", "MARKED_AS_FRAUD", "ALTPAY_DECLINE", "PENDING",
    "AUTHENTICATION_FAILED", "REFUND_VOIDED", "AUTHORIZED_PENDING_CAPTURE",
]
#: §6.1's statuses outside the enum: CONDITIONAL_DECLINE, FAILURE / INITIATED, the "coming soon" placeholders.
OUTSIDE_THE_ENUM = ["CONDITIONAL_DECLINE", "FAILURE", "INITIATED", "FAILED", "REFUNDED", "DISPUTED", "CANCELLED",
                    "REFUND_INITIATED"]
#: Mapped to UNKNOWN on purpose (keep checking, alert): what they say about the money is not known.
DELIBERATELY_UNKNOWN = {"SUCCESS", "NOT_FOUND", "REFUND_VOIDED", "DISPUTED", "FAILURE", "INITIATED"}

STATUS_ROWS = [
    ("SENT_FOR_CAPTURE", RemoteStatus.CAPTURED, None),
    ("AUTHORIZED", RemoteStatus.AUTHORIZED, None),
    ("AUTHORIZED_PENDING_CAPTURE", RemoteStatus.AUTHORIZED, None),
    ("CAPTURE_STARTED", RemoteStatus.AUTHORIZED, None),
    ("CREATED", RemoteStatus.CREATED, None),
    ("INPROGRESS", RemoteStatus.CREATED, None),
    ("STEP_UP", RemoteStatus.CREATED, None),
    ("PENDING", RemoteStatus.CREATED, None),
    ("ABANDONED", RemoteStatus.FAILED, FailureKind.WINDOW_CLOSED),
    ("CUSTOMER_CANCELLED", RemoteStatus.FAILED, FailureKind.WINDOW_CLOSED),
    ("EXPIRED", RemoteStatus.FAILED, FailureKind.WINDOW_CLOSED),
    ("PRE_PAYNOW_ABANDONED", RemoteStatus.FAILED, FailureKind.WINDOW_CLOSED),
    ("CANCELLED", RemoteStatus.FAILED, FailureKind.WINDOW_CLOSED),
    ("ISSUER_DECLINE", RemoteStatus.FAILED, FailureKind.DECLINED),
    ("GENERAL_DECLINE", RemoteStatus.FAILED, FailureKind.DECLINED),
    ("SYSTEM_DECLINED", RemoteStatus.FAILED, FailureKind.DECLINED),
    ("MARKED_AS_FRAUD", RemoteStatus.FAILED, FailureKind.DECLINED),
    ("AUTHENTICATION_FAILED", RemoteStatus.FAILED, FailureKind.DECLINED),
    ("ALTPAY_DECLINE", RemoteStatus.FAILED, FailureKind.DECLINED),
    ("FAILED", RemoteStatus.FAILED, FailureKind.DECLINED),
    ("AUTHENTICATION_TIMEOUT", RemoteStatus.FAILED, FailureKind.TIMED_OUT),
    ("CONDITIONAL_DECLINE", RemoteStatus.FAILED, FailureKind.TIMED_OUT),
    ("REQUEST_ERROR", RemoteStatus.FAILED, FailureKind.GATEWAY_ERROR),
    ("SYSTEM_ERROR", RemoteStatus.FAILED, FailureKind.GATEWAY_ERROR),
    ("CONFIG_ERROR", RemoteStatus.FAILED, FailureKind.GATEWAY_ERROR),
    ("RULE_CONFIG_ERROR", RemoteStatus.FAILED, FailureKind.GATEWAY_ERROR),
    ("SENT_FOR_REFUND", RemoteStatus.REFUNDED, None),
    ("REFUND_STARTED", RemoteStatus.REFUNDED, None),
    ("REFUND_INITIATED", RemoteStatus.REFUNDED, None),
    ("REFUNDED", RemoteStatus.REFUNDED, None),
    ("REVERSED", RemoteStatus.REFUNDED, None),
    ("AUTH_REVERSAL_STARTED", RemoteStatus.REFUNDED, None),
    *((wire, RemoteStatus.UNKNOWN, None) for wire in sorted(DELIBERATELY_UNKNOWN)),
]


@pytest.mark.parametrize(("wire", "status", "kind"), STATUS_ROWS)
def test_every_status_maps_as_the_table_lays_out(wire: str, status: RemoteStatus, kind) -> None:
    """Each row gives its normalised status and failure kind (case-insensitive); the gid is both ids."""
    for spelling in (wire, wire.lower()):
        payment = mapping.payment_from_status(status_json(spelling))
        assert (payment.status, payment.failure_kind, payment.wire_status) == (status, kind, spelling)
    assert payment.gateway_payment_id == payment.gateway_order_id == GID
    assert (payment.amount_minor, payment.currency) == (50000, "INR")
    assert (payment.failure_reason is not None) == (status is RemoteStatus.FAILED)


def test_every_status_payglocal_is_known_to_send_is_mapped_explicitly() -> None:
    """§6.1 lists 30 ExternalStatus values and 8 more: all are in STATUS_MAP, none maps to UNKNOWN by
    default, and only the deliberate ones map to UNKNOWN at all."""
    listed = EXTERNAL_STATUS + OUTSIDE_THE_ENUM
    assert len(EXTERNAL_STATUS) == len(set(EXTERNAL_STATUS)) == 30
    assert set(mapping.STATUS_MAP) == set(listed) == {row[0] for row in STATUS_ROWS}
    unknown = {wire for wire in listed if mapping.STATUS_MAP[wire][0] is RemoteStatus.UNKNOWN}
    assert unknown == DELIBERATELY_UNKNOWN


def test_only_sent_for_capture_means_money_taken() -> None:
    """No other status, documented or not, reads as CAPTURED: nothing else is ever credited."""
    assert {name for name, (status, _) in mapping.STATUS_MAP.items() if status is RemoteStatus.CAPTURED} == {
        "SENT_FOR_CAPTURE"}


@pytest.mark.parametrize("wire", ["SETTLED", "PARTIALLY_REFUNDED", "   ", ""])
def test_any_other_status_is_unknown_never_failed(wire: str) -> None:
    """Statuses no source lists (and an empty one) are UNKNOWN: keep checking, alert."""
    envelope = status_json(wire, top="")
    payment = mapping.payment_from_status(envelope)
    assert payment.status is RemoteStatus.UNKNOWN and payment.failure_kind is None


@pytest.mark.parametrize("wire", ["REVERSED", "AUTH_REVERSAL_STARTED", "REFUND_STARTED", "REFUNDED"])
def test_reversals_and_refunds_under_way_are_money_we_do_not_keep(wire: str) -> None:
    """A released hold or a refund on its way: REFUNDED in full, so it is never credited."""
    payment = mapping.payment_from_status(status_json(wire))
    assert payment.status is RemoteStatus.REFUNDED
    assert payment.amount_refunded_minor == payment.amount_minor == 50000


def test_data_status_wins_over_the_top_level_status() -> None:
    """Top-level CREATED/SUCCESS describe the call; data.status SENT_FOR_CAPTURE is the transaction."""
    assert mapping.payment_from_status(status_json("SENT_FOR_CAPTURE", top="CREATED")).status is RemoteStatus.CAPTURED
    assert mapping.payment_from_status(status_json("ISSUER_DECLINE", top="SUCCESS")).status is RemoteStatus.FAILED


def test_the_top_level_status_is_used_only_when_data_status_is_missing() -> None:
    """Without data.status the envelope's status is the transaction state."""
    envelope = status_json(top="SENT_FOR_CAPTURE")
    del envelope["data"]["status"]
    assert mapping.transaction_status(envelope) == "SENT_FOR_CAPTURE"
    assert mapping.payment_from_status(envelope).status is RemoteStatus.CAPTURED
    envelope["data"]["status"] = "AUTHORIZED"
    assert mapping.payment_from_status(envelope).status is RemoteStatus.AUTHORIZED


def test_a_refund_reads_as_a_full_refund() -> None:
    """SENT_FOR_REFUND carries no amount; the payment counts as fully refunded (no money kept)."""
    payment = mapping.payment_from_status(status_json("SENT_FOR_REFUND"))
    assert payment.amount_refunded_minor == payment.amount_minor == 50000


@pytest.mark.parametrize(
    ("extra", "refunded"),
    [({"refundAmount": "100.00"}, 10000), ({"refundAmount": "100.00", "refundCurrency": "inr"}, 10000),
     ({"refundAmount": "100.00", "refundCurrency": "USD"}, 50000), ({"refundAmount": "900.00"}, 50000),
     ({"refundAmount": "1.001"}, 50000), ({"refundAmount": ""}, 50000)],
)
def test_a_refund_amount_in_the_answer_is_used_when_it_is_readable(extra: dict, refunded: int) -> None:
    """data.refundAmount (in the payment's currency, at most its amount) is the refunded part; else full."""
    envelope = status_json("SENT_FOR_REFUND")
    envelope["data"].update(extra)
    assert mapping.payment_from_status(envelope).amount_refunded_minor == refunded
    envelope["data"]["status"] = "REVERSED"  # a reversal is always of the whole hold
    assert mapping.payment_from_status(envelope).amount_refunded_minor == 50000


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("500.00", "INR", 50000),
        ("500", "INR", 50000),
        ("10.5", "INR", 1050),
        ("0.01", "USD", 1),
        ("12345678901234567.89", "INR", 1234567890123456789),
        ("1.234", "KWD", 1234),
        ("1.2", "BHD", 1200),
        ("7", "OMR", 7000),
        ("500", "JPY", 500),
        (" 10.10 ", "inr", 1010),
        (10.1, "INR", 1010),
        (0.29, "INR", 29),
        (1.005, "KWD", 1005),
        (100, "INR", 10000),
        (Decimal("19.99"), "USD", 1999),
    ],
)
def test_amounts_convert_exactly_to_minor_units(amount, currency: str, minor: int) -> None:
    """Decimal strings, and float-looking JSON numbers, become exact minor units per currency exponent."""
    assert mapping.amount_to_minor(amount, currency) == minor
    assert isinstance(mapping.amount_to_minor(amount, currency), int)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("10.001", "INR"), ("500.5", "JPY"), ("1.2345", "KWD"), ("1e3", "INR"), ("-5.00", "INR"), ("", "INR"),
     ("1,000.00", "INR"), ("NaN", "INR"), ("Infinity", "INR"), (True, "INR"), (None, "INR"), ("10", "RUPEES"),
     (0.001, "INR")],
)
def test_amounts_with_too_many_decimals_or_odd_forms_are_a_bad_response(amount, currency: str) -> None:
    """More decimals than the currency allows, signs, exponents, separators or non-numbers raise GatewayPermanent."""
    with pytest.raises(GatewayPermanent):
        mapping.amount_to_minor(amount, currency)


def test_a_status_response_with_a_three_decimal_amount_maps_exactly() -> None:
    """KWD 12.345 in data.Amount is 12345 minor units; a 4th decimal is refused."""
    assert mapping.payment_from_status(status_json(amount="12.345", currency="KWD")).amount_minor == 12345
    with pytest.raises(GatewayPermanent, match="more decimals than KWD allows"):
        mapping.payment_from_status(status_json(amount="12.3456", currency="KWD"))


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(50000, "INR", "500.00"), (1, "INR", "0.01"), (1050, "usd", "10.50"), (500, "JPY", "500"), (1234, "KWD", "1.234"),
     (5, "TND", "0.005"), (0, "INR", "0.00")],
)
def test_minor_units_become_payglocals_decimal_strings(minor: int, currency: str, text: str) -> None:
    """totalAmount is sent as a decimal string with the currency's decimals, and converts back exactly."""
    assert mapping.minor_to_amount(minor, currency) == text
    assert mapping.amount_to_minor(text, currency) == minor


def test_minor_to_amount_refuses_non_integers() -> None:
    """A float or a negative amount never reaches the wire."""
    with pytest.raises(TypeError):
        mapping.minor_to_amount(10.5, "INR")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        mapping.minor_to_amount(-1, "INR")


def test_the_requested_gid_names_the_payment_and_the_order_keeps_the_merchant_txn_id() -> None:
    """order_from_status wraps the single payment; a gid passed in wins over the response's."""
    order = mapping.order_from_status(status_json("AUTHORIZED"), gid="gl_stored")
    assert order.gateway_order_id == order.payments[0].gateway_payment_id == "gl_stored"
    assert (order.receipt, order.wire_status, order.amount_minor) == ("order-42", "AUTHORIZED", 50000)
    assert mapping.order_from_status(status_json()).gateway_order_id == GID


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("data"),
        lambda e: e["data"].pop("Amount"),
        lambda e: e["data"].pop("Currency"),
        lambda e: e["data"].update(Amount=None, totalAmount="", amount=None),
        lambda e: e["data"].update(Amount="10.00.0"),
        lambda e: (e.pop("gid"), e["data"].pop("gid")),
    ],
)
def test_a_status_response_missing_what_we_need_is_a_bad_response(mutate) -> None:
    """No data, amount, currency or gid: GatewayPermanent naming the problem."""
    envelope = status_json()
    mutate(envelope)
    with pytest.raises(GatewayPermanent):
        mapping.payment_from_status(envelope)


#: after-capture.md §6.2, payments-v2 (get-transaction-status.mdx), verbatim.
V2_STATUS = {
    "gid": "gl_o-a057c4d6b6c620741apzp0ZX2", "status": "SENT_FOR_CAPTURE", "message": "Transaction Successful",
    "timestamp": "02/06/2026 21:52:10", "reasonCode": "200",
    "data": {"merchantTxnId": "23AEE8CB6B62EE2AF07", "merchantUniqueId": "IFNN939494NJFJ", "status": "SENT_FOR_CAPTURE",
             "paymentMethod": "CARD", "totalAmount": "10.00", "txnCurrency": "INR",
             "cardData": {"maskedCardNumber": "411111XXXXXX1111", "cardScheme": "VISA", "cardType": "CREDIT"}},
    "errors": None,
}


def test_the_payments_v2_status_answer_maps_from_total_amount_and_txn_currency() -> None:
    """The v2 shape has data.totalAmount / data.txnCurrency and no data.Amount: it is read, not refused."""
    order = mapping.order_from_status(V2_STATUS)
    [payment] = order.payments
    assert (payment.status, payment.amount_minor, payment.currency) == (RemoteStatus.CAPTURED, 1000, "INR")
    assert payment.gateway_payment_id == order.gateway_order_id == "gl_o-a057c4d6b6c620741apzp0ZX2"
    assert (order.receipt, order.wire_status) == ("23AEE8CB6B62EE2AF07", "SENT_FOR_CAPTURE")


@pytest.mark.parametrize(
    ("data", "minor", "currency"),
    [
        ({"Amount": "100", "txnCurrency": "CAD", "Currency": "INR"}, 10000, "CAD"),  # openapi card example
        ({"amount": "100.00", "currency": "INR"}, 10000, "INR"),  # older openapi
        ({"Amount": "10", "Currency": "INR"}, 1000, "INR"),  # v1
        ({"totalAmount": "1.5", "Amount": "9", "amount": "8", "txnCurrency": "KWD", "Currency": "INR"}, 1500, "KWD"),
        ({"totalAmount": "", "Amount": "12.34", "amount": "8", "txnCurrency": "", "Currency": "USD"}, 1234, "USD"),
        ({"totalAmount": Decimal("10.10"), "txnCurrency": "INR"}, 1010, "INR"),  # a JSON number, parsed exactly
    ],
)
def test_amount_and_currency_are_the_first_present_of_each_shapes_keys(data: dict, minor: int, currency: str) -> None:
    """Amount: totalAmount, Amount, amount; currency: txnCurrency (the original payment's), Currency, currency."""
    envelope = status_json()
    envelope["data"] = {"status": "AUTHORIZED", **data}
    payment = mapping.payment_from_status(envelope)
    assert (payment.amount_minor, payment.currency) == (minor, currency)


def test_the_v2_top_level_status_is_the_transaction_state_when_data_has_none() -> None:
    """v2: top-level status is the state, read when data.status is missing; data.status still wins."""
    envelope = copy.deepcopy(V2_STATUS)
    del envelope["data"]["status"]
    assert mapping.payment_from_status(envelope).status is RemoteStatus.CAPTURED
    envelope["data"]["status"] = "EXPIRED"
    assert mapping.payment_from_status(envelope).failure_kind is FailureKind.WINDOW_CLOSED


def test_the_initiate_answer_becomes_an_order_with_its_redirect_url() -> None:
    """gid and data.redirectUrl make the checkout; a missing redirectUrl is a bad response."""
    order = mapping.initiated_order(initiate_json(), receipt="order-42", amount_minor=50000, currency="inr")
    assert (order.gateway_order_id, order.currency, order.wire_status, order.payments) == (GID, "INR", "INPROGRESS", ())
    assert order.checkout == {"redirect_url": "https://api.uat.payglocal.in/gl/payflow-ui/?x-gl-token=abc", "gid": GID}
    broken = initiate_json()
    del broken["data"]["redirectUrl"]
    with pytest.raises(GatewayPermanent, match="redirectUrl"):
        mapping.initiated_order(broken, receipt="order-42", amount_minor=50000, currency="INR")


def test_capture_txn_ids_are_new_deterministic_and_short() -> None:
    """A capture's merchantTxnId is derived from the gid, alphanumeric and at most 50 characters."""
    txn_id = mapping.capture_txn_id(GID)
    assert txn_id == "gla64a176f9bac4170950d4dc625a35ca9cap" and txn_id != GID
    long = mapping.capture_txn_id("gl_" + "x" * 60)
    assert len(long) <= 50 and long.isalnum() and long != mapping.capture_txn_id("gl_" + "y" * 60)
