"""PayGlocal browser callbacks: the x-gl-token form as a webhook, verify_callback, and unverified gid claims."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import httpx
import pytest

from gateways.errors import MalformedEvent, SignatureInvalid
from tests.unit.gateways.payglocal_fakes import GID, NOW_MS, callback_claims, make_gateway, payglocal_token


def form(token: str) -> bytes:
    return urlencode({"x-gl-token": token}).encode("ascii")


FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def test_a_callback_form_post_becomes_an_event_without_a_payment() -> None:
    """x-gl-token=<token> verifies and gives event callback:<gid>:<iat>; payment stays None (query status)."""
    gateway, fake = make_gateway(lambda request: httpx.Response(500))
    event = gateway.verify_webhook(form(payglocal_token(callback_claims())), FORM_HEADERS)
    assert (event.event_id, event.event_type) == (f"callback:{GID}:{NOW_MS}", "payglocal.callback")
    assert event.gateway_order_id == GID
    assert event.payment is None and event.created_at == NOW_MS // 1000
    assert fake.requests == []


@pytest.mark.parametrize(
    ("body", "headers", "error", "reason"),
    [
        (json.dumps({"event": "PAYMENT_SUCCESS"}).encode(), {"Content-Type": "application/json"}, MalformedEvent,
         "server webhooks are not supported"),
        (b"status=SENT_FOR_CAPTURE", FORM_HEADERS, MalformedEvent, "exactly one non-empty x-gl-token"),
        (b"x-gl-token=a&x-gl-token=b", FORM_HEADERS, MalformedEvent, "exactly one"),
        (b"", FORM_HEADERS, MalformedEvent, "body is empty"),
        (b"x-gl-token", FORM_HEADERS, MalformedEvent, "not a form-encoded"),
        (b"x-gl-token=not-a-token", FORM_HEADERS, SignatureInvalid, "not a compact JWS"),
    ],
)
def test_anything_but_a_valid_callback_form_is_refused_with_a_reason(body, headers, error, reason) -> None:
    """JSON webhooks, forms without a token and tokens that are not JWS are refused, saying why."""
    gateway, _ = make_gateway(lambda request: httpx.Response(500))
    with pytest.raises(error, match=reason):
        gateway.verify_webhook(body, headers)


def test_a_stale_or_foreign_callback_form_is_a_signature_error() -> None:
    """The webhook path applies the same checks as the callback: freshness and merchant id."""
    gateway, _ = make_gateway(lambda request: httpx.Response(500), now_ms=lambda: NOW_MS + 16 * 60_000)
    with pytest.raises(SignatureInvalid, match="stale"):
        gateway.verify_webhook(form(payglocal_token(callback_claims())), FORM_HEADERS)
    gateway, _ = make_gateway(lambda request: httpx.Response(500))
    with pytest.raises(SignatureInvalid, match="merchant 'other_mid'"):
        gateway.verify_webhook(form(payglocal_token(callback_claims(**{"x-gl-merchantId": "other_mid"}))), FORM_HEADERS)


def test_an_unverifiable_callback_still_names_its_gid_for_a_check_but_never_raises() -> None:
    """claimed_order_id reads the gid of a badly signed token (to prompt a status check) and is None otherwise."""
    gateway, _ = make_gateway(lambda request: httpx.Response(500))
    forged = payglocal_token(callback_claims(), signer="other")
    assert gateway.claimed_order_id(form(forged)) == GID
    assert gateway.claimed_order_id(form(payglocal_token(callback_claims(gid=None)))) == GID
    for body in (b"", b"x-gl-token=abc", b"\xff\xfe", b'{"gid": "gl_x"}', form("a.!!!.c"), form("e30.bm90IGpzb24.c")):
        assert gateway.claimed_order_id(body) is None


def test_verify_callback_checks_the_token_against_the_stored_gid() -> None:
    """The token's gid must be the gid we stored; a payment id, when given, must be that gid too."""
    gateway, _ = make_gateway(lambda request: httpx.Response(500))
    token = payglocal_token(callback_claims())
    result = gateway.verify_callback(GID, "", token)
    assert (result.gateway_order_id, result.gateway_payment_id) == (GID, GID)
    assert gateway.verify_callback(GID, GID, token).gateway_payment_id == GID
    with pytest.raises(SignatureInvalid, match="not the gid we stored"):
        gateway.verify_callback("gl_another", "", token)
    with pytest.raises(SignatureInvalid, match="payment id"):
        gateway.verify_callback(GID, "gl_another", token)
    with pytest.raises(SignatureInvalid, match="does not verify"):
        gateway.verify_callback(GID, "", payglocal_token(callback_claims(), signer="other"))
