"""PayGlocal request signing and callback-token checks, as PayGlocal's own SDKs do them (jwcrypto).

Facts from docs/gateways/payglocal.md §0.3-0.5, §1 and §4:

- A POST body is a compact **JWE** (``RSA-OAEP-256`` / ``A128CBC-HS256``) of the JSON payload,
  encrypted to PayGlocal's public key, sent raw as ``text/plain``.
- Every request carries ``x-gl-token-external``: an RS256 **JWS** signed with the merchant's private
  key whose claims hold ``digest`` = standard base64 (with padding) of SHA-256 over the compact JWE
  (POST) or over the request path ``/gl/v1/payments/<id>/status`` (GET status).
- ``iat`` is a *string* of epoch milliseconds and ``exp`` the *number* 300000 (a duration). PyJWT
  rejects such tokens, so nothing here uses it; freshness is our own check on ``iat``.
- The browser callback's ``x-gl-token`` is an RS256 JWS signed by PayGlocal. Two claim shapes exist
  (2021: ``gid``/``merchantUniqueId``/``status``; 2026: ``x-gl-gid``/``x-gl-orderId``); neither is
  required to carry ``status``.

A fresh token is made for every call; the clock is injected (``now_ms``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jwcrypto import jwe, jwk, jws
from jwcrypto.common import JWException

from gateways.errors import SignatureInvalid

#: PayGlocal's token lifetime claim: a duration in ms, not a timestamp (docs §0.4).
TOKEN_EXP_MS = 300_000

#: How old a callback token may be (by its ``iat``) before we call it stale.
DEFAULT_CALLBACK_MAX_AGE_MS = 900_000

#: How far in the future a callback ``iat`` may lie (clock skew between PayGlocal and us).
DEFAULT_CLOCK_SKEW_MS = 60_000

JWE_ALG = "RSA-OAEP-256"
JWE_ENC = "A128CBC-HS256"
JWS_ALG = "RS256"
DIGEST_ALGORITHM = "SHA-256"

_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_DIGITS = re.compile(r"^[0-9]{1,16}$")

NowMs = Callable[[], int]


def load_key(pem: str | bytes) -> jwk.JWK:
    """An RSA key (private, public, or an X.509 certificate's public key) from PEM text.

    Raises:
        ValueError: the text is not a PEM RSA key or certificate.
    """
    data = pem.encode("ascii") if isinstance(pem, str) else bytes(pem)
    try:
        key = jwk.JWK.from_pem(data)
    except (ValueError, TypeError, JWException) as exc:
        raise ValueError(f"not a PEM RSA key or certificate: {exc}") from None
    if key.get("kty") != "RSA":
        raise ValueError(f"PayGlocal keys are RSA keys, got kty={key.get('kty')!r}")
    return key


def digest_of(content: str | bytes) -> str:
    """Standard base64 (``+ /`` and ``=`` padding) of SHA-256 over ``content`` (UTF-8 when text)."""
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def status_path(identifier: str) -> str:
    """The request path PayGlocal signs for a status call: ``/gl/v1/payments/<id>/status``."""
    return f"/gl/v1/payments/{identifier}/status"


class RequestSigner:
    """Makes the JWE body and the ``x-gl-token-external`` JWS of each request to PayGlocal."""

    def __init__(
        self,
        *,
        merchant_id: str,
        private_key: jwk.JWK,
        private_kid: str,
        payglocal_public_key: jwk.JWK,
        payglocal_public_kid: str,
        now_ms: NowMs,
    ):
        """Args:
        merchant_id: our MID (``issued-by``, ``x-gl-merchantId``).
        private_key, private_kid: the merchant signing key and its kid (from ``<kid>_<mid>.pem``).
        payglocal_public_key, payglocal_public_kid: the key bodies are encrypted to, and its kid.
        now_ms: epoch milliseconds; injected so tests can make old or future tokens.
        """
        if not merchant_id or not private_kid or not payglocal_public_kid:
            raise ValueError("merchant_id, private_kid and payglocal_public_kid are all required")
        if not private_key.has_private:
            raise ValueError("the merchant signing key must be a private key")
        self.merchant_id = merchant_id
        self._private_key = private_key
        self._private_kid = private_kid
        self._public_key = payglocal_public_key
        self._public_kid = payglocal_public_kid
        self._now_ms = now_ms

    def __repr__(self) -> str:
        return f"RequestSigner(merchant_id={self.merchant_id!r}, private_kid={self._private_kid!r})"

    def encrypt(self, payload: Mapping[str, Any]) -> str:
        """The compact JWE of ``payload`` (JSON), encrypted to PayGlocal's public key."""
        header = {
            "alg": JWE_ALG,
            "enc": JWE_ENC,
            "kid": self._public_kid,
            "issued-by": self.merchant_id,
            "iat": str(self._now_ms()),
            "exp": TOKEN_EXP_MS,
            "is-digested": "true",
        }
        plaintext = json.dumps(dict(payload), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        token = jwe.JWE(plaintext, protected=json.dumps(header))
        token.add_recipient(self._public_key)
        return token.serialize(compact=True)

    def sign_digest(self, content: str) -> str:
        """The ``x-gl-token-external`` JWS whose ``digest`` covers ``content`` (a JWE or a path)."""
        header = {
            "alg": JWS_ALG,
            "kid": self._private_kid,
            "x-gl-merchantId": self.merchant_id,
            "issued-by": self.merchant_id,
            "x-gl-enc": "true",
            "is-digested": "true",
        }
        claims = {
            "digest": digest_of(content),
            "digestAlgorithm": DIGEST_ALGORITHM,
            "iat": str(self._now_ms()),
            "exp": TOKEN_EXP_MS,
        }
        token = jws.JWS(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
        token.add_signature(self._private_key, alg=JWS_ALG, protected=json.dumps(header))
        return token.serialize(compact=True)

    def sign_body(self, payload: Mapping[str, Any]) -> tuple[str, str]:
        """``(jwe_body, jws_header_token)`` for a POST of ``payload``."""
        body = self.encrypt(payload)
        return body, self.sign_digest(body)

    def sign_path(self, path: str) -> str:
        """The JWS for a GET of ``path`` (no body: the digest covers the path string)."""
        return self.sign_digest(path)


@dataclass(frozen=True, slots=True)
class CallbackClaims:
    """What a verified callback token says: the gid to check now, and what else it carried."""

    gid: str
    iat_ms: int
    merchant_id: str
    kid: str
    order_id: str | None = None  #: ``x-gl-orderId`` (2026 shape)
    merchant_unique_id: str | None = None  #: ``merchantUniqueId`` (2021 shape)
    status: str | None = None  #: a hint only; never required and never trusted as payment proof
    claims: Mapping[str, Any] = field(default_factory=dict)

    def gids(self) -> frozenset[str]:
        """Every PayGlocal id the token names (``gid``, ``x-gl-gid``, ``x-gl-orderId``)."""
        found = (self.claims.get("gid"), self.claims.get("x-gl-gid"), self.order_id)
        return frozenset(value for value in found if isinstance(value, str) and value)


def verify_callback_claims(
    token: str,
    *,
    public_keys: Mapping[str, jwk.JWK | str],
    merchant_id: str,
    now_ms: int | NowMs,
    max_age_ms: int = DEFAULT_CALLBACK_MAX_AGE_MS,
    skew_ms: int = DEFAULT_CLOCK_SKEW_MS,
) -> CallbackClaims:
    """Verify a PayGlocal-signed token (the callback's ``x-gl-token``) and return its claims.

    Checks, in order: compact RS256 JWS; ``kid`` names one of ``public_keys``; the signature; ``iat``
    (a string of epoch ms) is neither older than ``max_age_ms`` nor more than ``skew_ms`` ahead of
    ``now_ms``; ``x-gl-merchantId`` is ``merchant_id``; a gid is present.

    Args:
        public_keys: PayGlocal's public keys by kid (several during a rotation), as JWKs or PEM text.
        now_ms: epoch milliseconds now, or a zero-argument callable returning it.

    Raises:
        SignatureInvalid: with a message saying which check failed.
    """
    if not isinstance(token, str) or not _COMPACT_JWS.match(token.strip()):
        raise SignatureInvalid("PayGlocal token is not a compact JWS (three base64url parts)")
    parsed = jws.JWS()
    parsed.allowed_algs = [JWS_ALG]
    try:
        parsed.deserialize(token.strip())
        header = parsed.jose_header
    except (JWException, ValueError, TypeError) as exc:
        raise SignatureInvalid(f"PayGlocal token cannot be parsed: {exc}") from None
    if not isinstance(header, dict) or header.get("alg") != JWS_ALG:
        alg = header.get("alg") if isinstance(header, dict) else None
        raise SignatureInvalid(f"PayGlocal token alg must be RS256, got {alg!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SignatureInvalid("PayGlocal token has no kid")
    key = public_keys.get(kid)
    if isinstance(key, (str, bytes)):
        key = load_key(key)
    if key is None:
        raise SignatureInvalid(f"PayGlocal token kid {kid!r} is not a configured PayGlocal public key")
    try:
        parsed.verify(key, alg=JWS_ALG)
        claims = json.loads(parsed.payload)
    except (JWException, ValueError, TypeError):
        raise SignatureInvalid(f"PayGlocal token signature does not verify under kid {kid!r}") from None
    if not isinstance(claims, dict):
        raise SignatureInvalid("PayGlocal token payload is not a JSON object")

    iat_ms = _iat_ms(claims.get("iat"))
    now_ms = now_ms() if callable(now_ms) else now_ms
    if now_ms - iat_ms > max_age_ms:
        raise SignatureInvalid(f"PayGlocal token is stale: issued {(now_ms - iat_ms) // 1000} s ago")
    if iat_ms - now_ms > skew_ms:
        raise SignatureInvalid(f"PayGlocal token is stale: issued {(iat_ms - now_ms) // 1000} s in the future")
    token_mid = claims.get("x-gl-merchantId")
    if token_mid != merchant_id:
        raise SignatureInvalid(f"PayGlocal token is for merchant {token_mid!r}, not ours")
    gid = _text(claims.get("x-gl-gid")) or _text(claims.get("gid"))
    if gid is None:
        raise SignatureInvalid("PayGlocal token names no gid (neither x-gl-gid nor gid)")
    return CallbackClaims(
        gid=gid,
        iat_ms=iat_ms,
        merchant_id=token_mid,
        kid=kid,
        order_id=_text(claims.get("x-gl-orderId")),
        merchant_unique_id=_text(claims.get("merchantUniqueId")),
        status=_text(claims.get("status")),
        claims=claims,
    )


def verify_callback_token(
    token: str,
    *,
    public_keys: Mapping[str, jwk.JWK | str],
    merchant_id: str,
    now_ms: int | NowMs,
    max_age_ms: int = DEFAULT_CALLBACK_MAX_AGE_MS,
    skew_ms: int = DEFAULT_CLOCK_SKEW_MS,
) -> str:
    """Verify a callback ``x-gl-token`` (see :func:`verify_callback_claims`) and return its gid."""
    return verify_callback_claims(
        token, public_keys=public_keys, merchant_id=merchant_id, now_ms=now_ms, max_age_ms=max_age_ms, skew_ms=skew_ms
    ).gid


def stored_claims(token: str) -> CallbackClaims:
    """The claims of a token that was verified when it was stored (the worker's view of an inbox row).

    No signature or freshness check: freshness is an intake rule, and a queue that is slow must not turn
    a genuine callback into a refused one. Never use this on a token that was not verified at intake.

    Raises:
        SignatureInvalid: the token cannot be read or names no gid.
    """
    try:
        header, claims = _unverified_parts(token)
    except (ValueError, TypeError, AttributeError) as exc:
        raise SignatureInvalid(f"stored PayGlocal token cannot be read: {exc}") from None
    gid = _text(claims.get("x-gl-gid")) or _text(claims.get("gid"))
    if gid is None:
        raise SignatureInvalid("stored PayGlocal token names no gid")
    return CallbackClaims(gid=gid, iat_ms=_iat_ms(claims.get("iat")), merchant_id=str(claims.get("x-gl-merchantId")),
                          kid=str(header.get("kid")), order_id=_text(claims.get("x-gl-orderId")),
                          merchant_unique_id=_text(claims.get("merchantUniqueId")),
                          status=_text(claims.get("status")), claims=claims)


def unverified_gid(token: str) -> str | None:
    """The gid an *unverified* token names (``x-gl-gid`` or ``gid``), or None; never raises.

    Only to prompt a status check of an order we hold when verification failed; never trusted."""
    try:
        _, claims = _unverified_parts(token)
        gid = _text(claims.get("x-gl-gid")) or _text(claims.get("gid"))
    except (ValueError, TypeError, AttributeError):
        return None
    return gid if gid is not None and len(gid) <= 64 else None


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A compact JWS's header and payload as JSON objects, signature unchecked. Raises ValueError."""
    if not _COMPACT_JWS.match(token.strip()):
        raise ValueError("not a compact JWS")
    header, payload = (json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
                       for part in token.strip().split(".")[:2])
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise ValueError("not a JSON object")
    return header, payload


def _iat_ms(value: object) -> int:
    """``iat`` as epoch ms: PayGlocal sends a string of digits; a plain integer is accepted too."""
    if isinstance(value, str) and _DIGITS.match(value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise SignatureInvalid(f"PayGlocal token iat must be epoch milliseconds, got {value!r}")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
