"""Razorpay callback and webhook signatures: the documented test vectors, tampering and rotation."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateways.errors import MalformedEvent, SignatureInvalid
from gateways.port import CallbackResult, RemoteStatus
from gateways.razorpay import RazorpayGateway
from gateways.razorpay.signature import checkout_message, matches_any, sign

FIXTURES = Path(__file__).parent / "fixtures" / "razorpay"
#: razorpay/razorpay-python tests/mocks/fake_payment_authorized_webhook.json, byte for byte (971 bytes, final LF).
AUTHORIZED_WEBHOOK = (FIXTURES / "fake_payment_authorized_webhook.json").read_bytes()

NON_ASCII_BODY = '{"entity":"event","event":"order.paid","note":"Tea, Earl Grey… decaf."}'.encode()

# docs/gateways/razorpay.md §4: (secret, message, expected hex signature)
CHECKOUT_VECTORS = [
    ("key_secret", "fake_order_id|fake_payment_id", "b2335e3b0801106b84a7faff035df56ecffde06918c9ddd1f0fafbb37a51cc89"),
    (
        "EnLs21M47BllR3X8PSFtjtbd",
        "order_IEIaMR65cu6nz3|pay_IH4NVgf4Dreq1l",
        "0d4e745a1838664ad6c9c9902212a32d627d68e917290b0ad5f08ff4561bc50f",
    ),
    (
        "EnLs21M47BllR3X8PSFtjtbd",
        "pay_IDZNwZZFtnjyym|sub_ID6MOhgkcoHj9I",
        "601f383334975c714c91a7d97dd723eb56520318355863dcf3821c0d07a17693",
    ),
    (
        "EnLs21M47BllR3X8PSFtjtbd",
        "plink_IH3cNucfVEgV68|TSsd1989|paid|pay_IH3d0ara9bSsjQ",
        "07ae18789e35093e51d0a491eb9922646f3f82773547e5b0f67ee3f2d3bf7d5b",
    ),
    (
        "rzp_secret_local",
        "order_TESTORDER0001|pay_TESTPAYMENT001",
        "eece263efc69c1cc1da4850bbe5b4de8e1685da875311387f850280124c47a50",
    ),
]

# docs/gateways/razorpay.md §5.3: (secret, raw body bytes, expected X-Razorpay-Signature)
WEBHOOK_VECTORS = [
    ("123456", b'{"a":1,"b":2,"c":{"d":3}}', "2fe04e22977002e6c7cb553adab8b460cb9e2a4970d5953cb27a8472752e3bbc"),
    ("key_secret", AUTHORIZED_WEBHOOK, "d60e67fd884556c045e9be7dad57903e33efc7172c17c6e3ef77db42d2b366e9"),
    ("key_secret", AUTHORIZED_WEBHOOK[:-1], "0971cde1d9216765d9aa72c766aef4a913fedfd2d36cc05cbca5de1ef90c12e4"),
    ("whsec_local_test", NON_ASCII_BODY, "d71d755c3143bbb210639942d9cebddefde5ed76b2a5d5f4be660d240a51374f"),
    ("whsec_local_test", NON_ASCII_BODY + b"\n", "e69eb217ea0ac52cad18c63b4b1c4d0697f04f1613e108fce29247be45ccf5d7"),
]


def make_gateway(**overrides) -> RazorpayGateway:
    settings = {"key_id": "rzp_test_key", "key_secret": "EnLs21M47BllR3X8PSFtjtbd", "webhook_secrets": ["key_secret"]}
    settings.update(overrides)
    return RazorpayGateway(**settings)


def test_fixture_file_is_the_exact_upstream_bytes() -> None:
    """The stored webhook fixture is the 971-byte upstream file, ending in one LF."""
    import hashlib

    assert len(AUTHORIZED_WEBHOOK) == 971
    assert AUTHORIZED_WEBHOOK.endswith(b"}\n")
    assert hashlib.sha256(AUTHORIZED_WEBHOOK).hexdigest() == (
        "9cc0236491299f34a154292eaed46d94b010f44b22095c034f884ca6a1862bef"
    )
    assert len(NON_ASCII_BODY) == 73


@pytest.mark.parametrize(("secret", "message", "expected"), CHECKOUT_VECTORS)
def test_checkout_signature_matches_the_documented_vectors(secret: str, message: str, expected: str) -> None:
    """sign() reproduces every checkout-style vector, and matches_any accepts it."""
    assert sign(secret, message.encode("utf-8")) == expected
    assert matches_any([secret], message.encode("utf-8"), expected)


@pytest.mark.parametrize(("secret", "body", "expected"), WEBHOOK_VECTORS)
def test_webhook_signature_matches_the_documented_vectors(secret: str, body: bytes, expected: str) -> None:
    """The HMAC is over the raw bytes: non-ASCII and a trailing LF are signed as sent."""
    assert sign(secret, body) == expected
    assert matches_any([secret], body, expected)


def test_one_trailing_newline_changes_the_signature() -> None:
    """A body with its final LF stripped does not verify under the original signature."""
    with_lf = WEBHOOK_VECTORS[1][2]
    assert not matches_any(["key_secret"], AUTHORIZED_WEBHOOK[:-1], with_lf)
    assert not matches_any(["whsec_local_test"], NON_ASCII_BODY + b"\n", WEBHOOK_VECTORS[3][2])


def test_verify_webhook_accepts_the_upstream_fixture_and_parses_it() -> None:
    """A correctly signed body yields the event with its header event id and payment."""
    gateway = make_gateway(webhook_secrets=["key_secret"])
    event = gateway.verify_webhook(
        AUTHORIZED_WEBHOOK,
        {"X-Razorpay-Signature": WEBHOOK_VECTORS[1][2], "X-Razorpay-Event-Id": "evt_1"},
    )
    assert event.event_id == "evt_1"
    assert event.event_type == "payment.authorized"
    assert event.gateway_order_id == "order_100000000order"
    assert event.payment is not None
    assert event.payment.gateway_payment_id == "pay_6koWN7bvxujzxM"
    assert event.payment.status is RemoteStatus.CAPTURED
    assert event.payment.amount_minor == 1000000
    assert event.created_at == 1400826760


def test_verify_webhook_headers_are_case_insensitive() -> None:
    """Lower-case header names (as ASGI servers give them) work too."""
    gateway = make_gateway()
    event = gateway.verify_webhook(
        AUTHORIZED_WEBHOOK,
        {"x-razorpay-signature": WEBHOOK_VECTORS[1][2], "x-razorpay-event-id": "evt_2"},
    )
    assert event.event_id == "evt_2"


@pytest.mark.parametrize(
    "body",
    [
        AUTHORIZED_WEBHOOK.replace(b"1000000", b"9000000"),
        AUTHORIZED_WEBHOOK[:-1],
        AUTHORIZED_WEBHOOK + b" ",
    ],
    ids=["amount-changed", "lf-stripped", "space-appended"],
)
def test_verify_webhook_rejects_a_tampered_body(body: bytes) -> None:
    """Any change to the signed bytes fails verification with SignatureInvalid."""
    gateway = make_gateway()
    with pytest.raises(SignatureInvalid, match="does not match"):
        gateway.verify_webhook(body, {"X-Razorpay-Signature": WEBHOOK_VECTORS[1][2], "X-Razorpay-Event-Id": "e"})


@pytest.mark.parametrize("headers", [{}, {"X-Razorpay-Signature": ""}, {"X-Razorpay-Signature": "  "}])
def test_verify_webhook_rejects_a_missing_signature(headers: dict[str, str]) -> None:
    """No signature header means SignatureInvalid, with the reason in the message."""
    gateway = make_gateway()
    with pytest.raises(SignatureInvalid, match="no X-Razorpay-Signature"):
        gateway.verify_webhook(AUTHORIZED_WEBHOOK, {**headers, "X-Razorpay-Event-Id": "e"})


def test_verify_webhook_rejects_a_signature_made_with_the_api_key_secret() -> None:
    """The webhook secret signs webhooks; a body signed with another secret is refused."""
    gateway = make_gateway(key_secret="api_secret", webhook_secrets=["whsec_real"])
    forged = sign("api_secret", AUTHORIZED_WEBHOOK)
    with pytest.raises(SignatureInvalid):
        gateway.verify_webhook(AUTHORIZED_WEBHOOK, {"X-Razorpay-Signature": forged, "X-Razorpay-Event-Id": "e"})


def test_verify_webhook_needs_an_event_id_after_a_valid_signature() -> None:
    """A valid signature without X-Razorpay-Event-Id is a MalformedEvent (nothing to dedupe on)."""
    gateway = make_gateway()
    with pytest.raises(MalformedEvent, match="X-Razorpay-Event-Id"):
        gateway.verify_webhook(AUTHORIZED_WEBHOOK, {"X-Razorpay-Signature": WEBHOOK_VECTORS[1][2]})


def test_verify_webhook_checks_the_signature_before_parsing() -> None:
    """A correctly signed non-ASCII body gets past the signature and fails only in parsing."""
    gateway = make_gateway(webhook_secrets=["whsec_local_test"])
    headers = {"X-Razorpay-Signature": WEBHOOK_VECTORS[3][2], "X-Razorpay-Event-Id": "e"}
    with pytest.raises(MalformedEvent, match=r"payload\.payment\.entity"):
        gateway.verify_webhook(NON_ASCII_BODY, headers)
    with pytest.raises(SignatureInvalid):
        gateway.verify_webhook(NON_ASCII_BODY + b"\n", headers)


def test_verify_webhook_refuses_a_decoded_body() -> None:
    """Passing str (a decoded body) is a programming error, not a signature failure."""
    gateway = make_gateway()
    with pytest.raises(TypeError, match="raw body bytes"):
        gateway.verify_webhook(AUTHORIZED_WEBHOOK.decode("utf-8"), {"X-Razorpay-Signature": "x"})  # type: ignore[arg-type]


def test_webhook_secret_rotation_accepts_old_and_new_but_not_others() -> None:
    """During a rotation both secrets verify; a third secret does not."""
    gateway = make_gateway(webhook_secrets=["whsec_old", "whsec_new"])
    for secret in ("whsec_old", "whsec_new"):
        event = gateway.verify_webhook(
            AUTHORIZED_WEBHOOK,
            {"X-Razorpay-Signature": sign(secret, AUTHORIZED_WEBHOOK), "X-Razorpay-Event-Id": f"evt_{secret}"},
        )
        assert event.event_id == f"evt_{secret}"
    with pytest.raises(SignatureInvalid):
        gateway.verify_webhook(
            AUTHORIZED_WEBHOOK,
            {"X-Razorpay-Signature": sign("whsec_other", AUTHORIZED_WEBHOOK), "X-Razorpay-Event-Id": "e"},
        )


def test_a_gateway_without_webhook_secrets_cannot_be_built() -> None:
    """Unsigned webhooks must be refusable, so at least one secret is required."""
    with pytest.raises(ValueError, match="webhook secret"):
        make_gateway(webhook_secrets=[])
    with pytest.raises(ValueError, match="webhook secret"):
        make_gateway(webhook_secrets=[""])


def test_verify_callback_accepts_the_documented_vector() -> None:
    """The official integration-steps vector verifies against the order id we stored."""
    gateway = make_gateway(key_secret="EnLs21M47BllR3X8PSFtjtbd")
    result = gateway.verify_checkout_form(
        "order_IEIaMR65cu6nz3",
        {
            "razorpay_payment_id": "pay_IH4NVgf4Dreq1l",
            "razorpay_order_id": "order_IEIaMR65cu6nz3",
            "razorpay_signature": "0d4e745a1838664ad6c9c9902212a32d627d68e917290b0ad5f08ff4561bc50f",
        },
    )
    assert result == CallbackResult(gateway_order_id="order_IEIaMR65cu6nz3", gateway_payment_id="pay_IH4NVgf4Dreq1l")


def test_verify_callback_uses_our_stored_order_id_not_the_echoed_one() -> None:
    """A valid signature for another (cheaper) order cannot be replayed against ours."""
    gateway = make_gateway(key_secret="rzp_secret_local")
    cheap_order_params = {
        "razorpay_payment_id": "pay_TESTPAYMENT001",
        "razorpay_signature": "eece263efc69c1cc1da4850bbe5b4de8e1685da875311387f850280124c47a50",
    }
    verified = gateway.verify_checkout_form("order_TESTORDER0001", cheap_order_params)
    assert verified.gateway_payment_id == "pay_TESTPAYMENT001"
    with pytest.raises(SignatureInvalid, match="does not match"):
        gateway.verify_checkout_form("order_EXPENSIVE0001", cheap_order_params)
    with pytest.raises(SignatureInvalid, match="differs"):
        gateway.verify_checkout_form(
            "order_EXPENSIVE0001", {**cheap_order_params, "razorpay_order_id": "order_TESTORDER0001"}
        )


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"razorpay_signature": "ab" * 32}, "razorpay_payment_id"),
        ({"razorpay_payment_id": "pay_TESTPAYMENT001"}, "razorpay_signature"),
        ({"razorpay_payment_id": "pay_TESTPAYMENT001", "razorpay_signature": "not-hex"}, "does not match"),
        ({"error[code]": "BAD_REQUEST_ERROR", "error[description]": "Payment failed"}, "razorpay_payment_id"),
    ],
)
def test_verify_callback_rejects_missing_or_bad_fields_with_a_reason(params: dict[str, str], reason: str) -> None:
    """Every refusal is a SignatureInvalid whose message says what was wrong."""
    gateway = make_gateway(key_secret="rzp_secret_local")
    with pytest.raises(SignatureInvalid, match=reason):
        gateway.verify_checkout_form("order_TESTORDER0001", params)


def test_verify_callback_accepts_old_and_new_key_secrets_during_rotation() -> None:
    """With key_secrets given, a callback signed by either key verifies."""
    gateway = make_gateway(key_secret="new_secret", key_secrets=["new_secret", "old_secret"])
    message = checkout_message("order_A", "pay_B")
    for secret in ("new_secret", "old_secret"):
        params = {"razorpay_payment_id": "pay_B", "razorpay_signature": sign(secret, message)}
        assert gateway.verify_checkout_form("order_A", params).gateway_order_id == "order_A"
    with pytest.raises(SignatureInvalid):
        gateway.verify_checkout_form("order_A",
                                     {"razorpay_payment_id": "pay_B", "razorpay_signature": sign("x", message)})


def test_verify_callback_does_not_accept_the_webhook_secret() -> None:
    """Callbacks are signed with the API key secret only."""
    gateway = make_gateway(key_secret="api_secret", webhook_secrets=["whsec"])
    params = {"razorpay_payment_id": "pay_B", "razorpay_signature": sign("whsec", checkout_message("order_A", "pay_B"))}
    with pytest.raises(SignatureInvalid):
        gateway.verify_checkout_form("order_A", params)


def test_verify_callback_takes_the_payment_id_and_signature_of_the_message_contract() -> None:
    gateway = make_gateway(key_secret="EnLs21M47BllR3X8PSFtjtbd")
    sent = "0d4e745a1838664ad6c9c9902212a32d627d68e917290b0ad5f08ff4561bc50f"
    result = gateway.verify_callback("order_IEIaMR65cu6nz3", "pay_IH4NVgf4Dreq1l", sent)
    assert (result.gateway_order_id, result.gateway_payment_id) == ("order_IEIaMR65cu6nz3", "pay_IH4NVgf4Dreq1l")
    with pytest.raises(SignatureInvalid):
        gateway.verify_callback("order_IEIaMR65cu6nz3", "pay_IH4NVgf4Dreq1l", sent[:-1] + "0")
