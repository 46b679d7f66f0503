"""PayGlocal JWS/JWE signing and callback-token checks, cross-checked with joserfc and a real PayGlocal token."""

from __future__ import annotations

import base64
import hashlib
import json
from itertools import count
from pathlib import Path

import pytest

from gateways.errors import SignatureInvalid
from gateways.payglocal import tokens
from tests.unit.gateways.payglocal_fakes import (
    GID,
    MERCHANT_KID,
    MID,
    NOW_MS,
    PAYGLOCAL_KID,
    callback_claims,
    keys,
    payglocal_token,
    read_jwe,
    read_jws,
)

FIXTURES = Path(__file__).parent / "fixtures" / "payglocal"
DOCUMENTED_PATH = "/gl/v1/payments/gl_a64a176f-9bac-4170-950d-4dc625a35ca9/status"
DOCUMENTED_DIGEST = "gudDUpKXGsu0BtpLKuXbNGKf5xJU4s4ebErBt99mD+E="


def make_signer(now_ms=lambda: NOW_MS) -> tokens.RequestSigner:
    return tokens.RequestSigner(
        merchant_id=MID,
        private_key=tokens.load_key(keys()["merchant"].private_pem),
        private_kid=MERCHANT_KID,
        payglocal_public_key=tokens.load_key(keys()["payglocal"].public_pem),
        payglocal_public_kid=PAYGLOCAL_KID,
        now_ms=now_ms,
    )


def verify(token: str, *, now_ms: int = NOW_MS + 1_000, merchant_id: str = MID, **kwargs) -> tokens.CallbackClaims:
    public_keys = kwargs.pop("public_keys", {PAYGLOCAL_KID: keys()["payglocal"].public_pem})
    return tokens.verify_callback_claims(token, public_keys=public_keys, merchant_id=merchant_id, now_ms=now_ms,
                                         **kwargs)


# Request signing ---------------------------------------------------------------------------


def test_the_digest_of_the_documented_status_path_matches_the_verified_vector() -> None:
    """SHA-256 of the status path, standard base64 with padding, equals the digest's test vector."""
    assert tokens.status_path(GID) == DOCUMENTED_PATH
    assert tokens.digest_of(DOCUMENTED_PATH) == DOCUMENTED_DIGEST


def test_a_jws_made_with_jwcrypto_verifies_with_joserfc_and_carries_payglocals_fields() -> None:
    """The x-gl-token-external JWS has PayGlocal's header, string iat, duration exp and the path digest."""
    token = make_signer().sign_path(DOCUMENTED_PATH)
    header, claims = read_jws(token)
    assert header == {
        "alg": "RS256",
        "kid": MERCHANT_KID,
        "x-gl-merchantId": MID,
        "issued-by": MID,
        "x-gl-enc": "true",
        "is-digested": "true",
    }
    assert claims == {"digest": DOCUMENTED_DIGEST, "digestAlgorithm": "SHA-256", "iat": str(NOW_MS), "exp": 300000}


def test_a_jwe_body_decrypts_with_joserfc_and_the_jws_digest_covers_the_compact_jwe() -> None:
    """The POST body is a compact JWE (RSA-OAEP-256/A128CBC-HS256) and the JWS digest is over its exact text."""
    payload = {"merchantTxnId": "order-42", "paymentData": {"totalAmount": "500.00", "txnCurrency": "INR"}}
    body, token = make_signer().sign_body(payload)
    assert body.count(".") == 4
    header, plaintext = read_jwe(body)
    assert plaintext == payload
    assert header == {
        "alg": "RSA-OAEP-256",
        "enc": "A128CBC-HS256",
        "kid": PAYGLOCAL_KID,
        "issued-by": MID,
        "iat": str(NOW_MS),
        "exp": 300000,
        "is-digested": "true",
    }
    _, claims = read_jws(token)
    assert claims["digest"] == base64.b64encode(hashlib.sha256(body.encode("ascii")).digest()).decode()


def test_every_call_gets_a_fresh_token_from_the_injected_clock() -> None:
    """Two signatures of the same path carry the clock's two readings as iat."""
    ticks = count(NOW_MS, 1_000)
    signer = make_signer(lambda: next(ticks))
    first, second = signer.sign_path(DOCUMENTED_PATH), signer.sign_path(DOCUMENTED_PATH)
    assert first != second
    assert [read_jws(t)[1]["iat"] for t in (first, second)] == [str(NOW_MS), str(NOW_MS + 1_000)]


def test_the_signer_refuses_a_public_key_as_the_merchant_signing_key() -> None:
    """A public key cannot sign; configuring one is an error at start, not at the first request."""
    with pytest.raises(ValueError, match="private"):
        tokens.RequestSigner(
            merchant_id=MID,
            private_key=tokens.load_key(keys()["merchant"].public_pem),
            private_kid=MERCHANT_KID,
            payglocal_public_key=tokens.load_key(keys()["payglocal"].public_pem),
            payglocal_public_kid=PAYGLOCAL_KID,
            now_ms=lambda: NOW_MS,
        )
    with pytest.raises(ValueError, match="PEM"):
        tokens.load_key("not a key")


# Callback tokens ---------------------------------------------------------------------------


def test_a_real_payglocal_callback_token_verifies_with_the_dev_public_key() -> None:
    """The 2021 dev-environment x-gl-token from PayGlocal's PHP SDK verifies; PyJWT would reject its iat/exp."""
    token = (FIXTURES / "callback_token_dev_2021.txt").read_text().strip()
    pem = (FIXTURES / "dev_1c2a4b36-5449-4ed3-90a6-0a7999874234_payglocal_mid.pem").read_text()
    kid = "1c2a4b36-5449-4ed3-90a6-0a7999874234"
    claims = verify(token, public_keys={kid: pem}, merchant_id="yogesh_dem", now_ms=1636980973327 + 5_000)
    assert (claims.gid, claims.iat_ms, claims.status, claims.kid) == (GID, 1636980973327, "SENT_FOR_CAPTURE", kid)
    assert claims.merchant_unique_id == "4YHc1Er3BdICgy4w"
    with pytest.raises(SignatureInvalid, match="stale"):
        verify(token, public_keys={kid: pem}, merchant_id="yogesh_dem", now_ms=1636980973327 + 16 * 60_000)


def test_a_joserfc_made_token_of_either_shape_verifies_with_ours_and_status_is_not_required() -> None:
    """The 2021 shape (gid, status) and the 2026 shape (x-gl-gid, x-gl-orderId, no status) both give the gid."""
    assert tokens.verify_callback_token(
        payglocal_token(callback_claims()),
        public_keys={PAYGLOCAL_KID: keys()["payglocal"].public_pem},
        merchant_id=MID,
        now_ms=NOW_MS,
    ) == GID
    claims_2026 = {"x-gl-gid": GID, "x-gl-orderId": "gl_o-a64a176f", "x-gl-merchantId": MID, "x-gl-enc": "false",
                   "amplifier-mid": MID, "iat": str(NOW_MS), "exp": 300000}
    claims = verify(payglocal_token(claims_2026))
    assert (claims.gid, claims.order_id, claims.status) == (GID, "gl_o-a64a176f", None)
    assert claims.gids() == {GID, "gl_o-a64a176f"}
    only_gid = verify(payglocal_token(callback_claims(**{"x-gl-gid": None, "status": None})))
    assert only_gid.gid == GID


def test_rotated_keys_are_chosen_by_kid() -> None:
    """During a rotation both public keys are configured; each token is checked with the key its kid names."""
    token = payglocal_token(callback_claims(), kid="old-kid", signer="other")
    public_keys = {PAYGLOCAL_KID: keys()["payglocal"].public_pem, "old-kid": keys()["other"].public_pem}
    assert verify(token, public_keys=public_keys).kid == "old-kid"


@pytest.mark.parametrize("part", [0, 1, 2])
def test_a_token_altered_by_one_byte_is_rejected(part: int) -> None:
    """Changing one character of the header, the payload or the signature breaks verification."""
    pieces = payglocal_token(callback_claims()).split(".")
    target = pieces[part]
    index = len(target) // 2
    pieces[part] = target[:index] + ("A" if target[index] != "A" else "B") + target[index + 1 :]
    with pytest.raises(SignatureInvalid):
        verify(".".join(pieces))


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: payglocal_token(callback_claims(), signer="other"), "does not verify"),
        (lambda: payglocal_token(callback_claims(), kid="unknown-kid"), "kid 'unknown-kid' is not a configured"),
        (lambda: payglocal_token(callback_claims(**{"x-gl-merchantId": "someone_else"})), "merchant 'someone_else'"),
        (lambda: payglocal_token(callback_claims(**{"x-gl-merchantId": None})), "merchant None"),
        (lambda: payglocal_token(callback_claims(iat=str(NOW_MS - 16 * 60_000))), "stale: issued 961 s ago"),
        (lambda: payglocal_token(callback_claims(iat=str(NOW_MS + 5 * 60_000))), "stale: .* in the future"),
        (lambda: payglocal_token(callback_claims(iat="yesterday")), "iat must be epoch milliseconds"),
        (lambda: payglocal_token(callback_claims(iat=None)), "iat must be epoch milliseconds"),
        (lambda: payglocal_token(callback_claims(gid=None, **{"x-gl-gid": None})), "names no gid"),
        (lambda: "not.a-token", "not a compact JWS"),
        (lambda: '{"payload": "e30", "signature": "AAAA"}', "not a compact JWS"),
    ],
)
def test_callback_tokens_are_rejected_with_a_clear_reason(token, reason: str) -> None:
    """Bad signature, unknown kid, another merchant, stale or future iat, no gid: each says why."""
    with pytest.raises(SignatureInvalid, match=reason):
        verify(token())


def test_only_rs256_is_accepted() -> None:
    """An HS256 token (the public key used as an HMAC secret) or an unsigned one is refused before any key use."""
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": PAYGLOCAL_KID}).encode()).rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(callback_claims()).encode()).rstrip(b"=").decode()
    with pytest.raises(SignatureInvalid):
        verify(f"{header}.{body}.AAAA")
    hs_header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": PAYGLOCAL_KID}).encode()).rstrip(b"=")
    with pytest.raises(SignatureInvalid, match="alg must be RS256"):
        verify(f"{hs_header.decode()}.{body}.AAAA")


def test_the_freshness_window_is_configurable() -> None:
    """max_age_ms bounds how old a token may be; the clock may be a callable."""
    token = payglocal_token(callback_claims())
    assert verify(token, now_ms=lambda: NOW_MS + 60_000, max_age_ms=120_000).gid == GID
    with pytest.raises(SignatureInvalid, match="stale"):
        verify(token, now_ms=NOW_MS + 60_000, max_age_ms=30_000)
