"""Property-based fuzzing of webhook intake: whatever bytes and headers arrive, the adapters either
return an event or raise one of the two documented errors; nothing else escapes."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateways.errors import MalformedEvent, SignatureInvalid
from gateways.razorpay import RazorpayGateway, mapping
from gateways.razorpay.signature import sign

SECRET = "whsec_fuzz"
GATEWAY = RazorpayGateway(key_id="rzp_test_fuzz", key_secret="ks", webhook_secrets=[SECRET])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
envelopes = st.fixed_dictionaries({
    "event": st.one_of(st.sampled_from(["payment.captured", "payment.failed", "order.paid", "refund.processed",
                                        "payment.dispute.created"]), st.text(max_size=12), st.integers()),
    "payload": st.one_of(json_values, st.fixed_dictionaries({
        "payment": st.fixed_dictionaries({"entity": st.dictionaries(
            st.sampled_from(["id", "amount", "currency", "status", "order_id", "amount_refunded", "error_source"]),
            json_values)})}))})


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=400), event_id=st.text(max_size=30))
def test_random_bytes_never_raise_anything_but_malformed(body, event_id):
    with contextlib.suppress(MalformedEvent):
        mapping.parse_webhook(body, event_id)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(envelope=envelopes, event_id=st.text(min_size=1, max_size=30))
def test_signed_random_envelopes_parse_or_are_malformed_and_never_invent_money(envelope, event_id):
    body = json.dumps(envelope, allow_nan=True).encode()
    headers = {"X-Razorpay-Signature": sign(SECRET, body), "X-Razorpay-Event-Id": event_id}
    try:
        event = GATEWAY.verify_webhook(body, headers)
    except MalformedEvent:
        return
    if event.payment is not None:
        assert isinstance(event.payment.amount_minor, int) and not isinstance(event.payment.amount_minor, bool)
        assert event.payment.amount_minor >= 0


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=200), signature=st.text(max_size=80))
def test_unsigned_or_wrongly_signed_bodies_are_refused_before_parsing(body, signature):
    try:
        GATEWAY.verify_webhook(body, {"X-Razorpay-Signature": signature, "X-Razorpay-Event-Id": "evt"})
    except SignatureInvalid:
        return
    raise AssertionError("a body signed by chance?")  # 64 hex chars matching an HMAC: impossible in practice


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=400))
def test_claimed_order_id_never_raises(body):
    claimed = GATEWAY.claimed_order_id(body)
    assert claimed is None or (isinstance(claimed, str) and 0 < len(claimed) <= 64)
