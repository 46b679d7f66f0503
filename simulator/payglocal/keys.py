"""The simulated PayGlocal's keys, and its checks on merchant requests as payglocal.md describes them.

- PayGlocal's own RSA key pair signs callback tokens (RS256 JWS, header ``issued-by: Glocal``,
  ``is-digested: false``: payglocal.md §4) and decrypts the JWE bodies merchants send (``RSA-OAEP-256`` /
  ``A128CBC-HS256``: payglocal.md §1).
- The merchant's public key verifies the ``x-gl-token-external`` JWS. When the config gives none, a merchant
  key pair is generated and its private half is exposed, so tests and the demo can configure the adapter.

Request checks (payglocal.md §1, 2026 docs): a missing, malformed, badly signed or expired JWS -> 401; an
unknown kid or another MID -> 403; a digest (standard Base64 of SHA-256 over the raw JWE body, or over the
request path for GET status: §0.3, §1) that does not match -> 400.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto import jwe, jwk, jws
from jwcrypto.common import JWException

from simulator.config import SimulatorConfig
from simulator.payglocal.codec import PayGlocalApiError, now_ms

#: A merchant token older than this (by ``iat``) is refused: "tokens are meant to live 5 minutes" (payglocal.md §0.3).
TOKEN_LIFETIME_MS = 300_000
#: How far ahead of the simulator's clock a token's ``iat`` may be.
CLOCK_SKEW_MS = 60_000

_COMPACT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$")


def _new_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _public_pem(key: jwk.JWK) -> str:
    return key.export_to_pem(private_key=False).decode("ascii")


class SimKeys:
    """PayGlocal's key pair and the merchant's key (public, plus private when generated here)."""

    def __init__(self, config: SimulatorConfig):
        self.merchant_id = config.payglocal_merchant_id
        self.payglocal_kid = config.payglocal_kid
        self.merchant_kid = config.payglocal_merchant_kid
        self._payglocal_key = jwk.JWK.from_pem((config.payglocal_private_pem or _new_private_pem()).encode("ascii"))
        self.payglocal_public_pem = _public_pem(self._payglocal_key)
        if config.payglocal_merchant_public_pem:
            self.merchant_private_pem: str | None = None
            self._merchant_public = jwk.JWK.from_pem(config.payglocal_merchant_public_pem.encode("ascii"))
        else:
            self.merchant_private_pem = _new_private_pem()
            self._merchant_public = jwk.JWK.from_pem(self.merchant_private_pem.encode("ascii"))
        self.merchant_public_pem = _public_pem(self._merchant_public)

    def adapter_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``PayGlocalGateway`` (add ``base_url`` and ``callback_url``)."""
        if self.merchant_private_pem is None:
            raise LookupError("the merchant key was configured from outside; its private half is not known here")
        return {
            "merchant_id": self.merchant_id,
            "private_key_pem": self.merchant_private_pem,
            "private_kid": self.merchant_kid,
            "payglocal_public_keys": {self.payglocal_kid: self.payglocal_public_pem},
            "payglocal_public_kid": self.payglocal_kid,
        }

    # -- checks on merchant requests -----------------------------------------------------------
    def verify_request(self, headers: Mapping[str, str], digested: bytes) -> dict[str, Any]:
        """Check ``x-gl-token-external`` over ``digested`` (the raw body, or the path of a GET).

        Returns the JWS claims. Raises :class:`PayGlocalApiError` 401 / 403 / 400.
        """
        token = headers.get("x-gl-token-external")
        if not token or not _COMPACT.match(token.strip()):
            raise PayGlocalApiError(401, "Missing or malformed x-gl-token-external", reason_code="GL-401-001")
        parsed = jws.JWS()
        parsed.allowed_algs = ["RS256"]
        try:
            parsed.deserialize(token.strip())
            header = parsed.jose_header
        except (JWException, ValueError, TypeError):
            raise PayGlocalApiError(401, "Invalid token", reason_code="GL-401-001") from None
        if header.get("alg") != "RS256":
            raise PayGlocalApiError(401, "Unsupported token algorithm", reason_code="GL-401-001")
        if header.get("kid") != self.merchant_kid:
            raise PayGlocalApiError(403, "Unknown key id", reason_code="GL-403-001")
        if header.get("x-gl-merchantId") != self.merchant_id:
            raise PayGlocalApiError(403, "Merchant id does not match the key", reason_code="GL-403-002")
        try:
            parsed.verify(self._merchant_public, alg="RS256")
            claims = json.loads(parsed.payload)
        except (JWException, ValueError, TypeError):
            raise PayGlocalApiError(401, "Token signature verification failed", reason_code="GL-401-002") from None
        self._check_time(claims)
        expected = base64.b64encode(hashlib.sha256(digested).digest()).decode("ascii")
        if claims.get("digestAlgorithm") != "SHA-256" or claims.get("digest") != expected:
            raise PayGlocalApiError(400, "Digest mismatch", reason_code="GL-400-003")
        return claims

    def _check_time(self, claims: Any) -> None:
        iat = claims.get("iat") if isinstance(claims, dict) else None
        if not (isinstance(iat, str) and iat.isdigit()):
            raise PayGlocalApiError(401, "Token iat missing or invalid", reason_code="GL-401-003")
        issued = int(iat)
        exp = claims.get("exp")
        lifetime = TOKEN_LIFETIME_MS
        if isinstance(exp, int) and not isinstance(exp, bool):  # a duration, or (newer JS SDK) an absolute time
            lifetime = min(lifetime, exp - issued if exp > 10**11 else exp)
        current = now_ms()
        if current - issued > lifetime or issued - current > CLOCK_SKEW_MS:
            raise PayGlocalApiError(401, "Token expired", reason_code="GL-401-003")

    def decrypt(self, body: bytes) -> Any:
        """The JSON payload of a compact JWE encrypted to PayGlocal's key (400 when it is not one)."""
        token = jwe.JWE()
        token.allowed_algs = ["RSA-OAEP-256", "A128CBC-HS256"]
        try:
            token.deserialize(body.decode("ascii").strip())
            header = token.jose_header
            if header.get("kid") != self.payglocal_kid:
                raise PayGlocalApiError(400, "Body encrypted to an unknown PayGlocal key", reason_code="GL-400-004")
            token.decrypt(self._payglocal_key)
            return json.loads(token.payload)
        except PayGlocalApiError:
            raise
        except (JWException, ValueError, TypeError, UnicodeDecodeError):
            raise PayGlocalApiError(400, "Request body could not be decrypted", reason_code="GL-400-004") from None

    # -- PayGlocal-signed tokens ---------------------------------------------------------------
    def sign(self, claims: Mapping[str, Any]) -> str:
        """A compact RS256 JWS over ``claims`` signed with PayGlocal's key (callbacks, status URLs)."""
        header = {"issued-by": "Glocal", "is-digested": "false", "alg": "RS256", "kid": self.payglocal_kid}
        token = jws.JWS(json.dumps(dict(claims), separators=(",", ":")).encode("utf-8"))
        token.add_signature(self._payglocal_key, alg="RS256", protected=json.dumps(header))
        return token.serialize(compact=True)

    def verify_own(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this simulator signed, or ``None`` if it does not verify."""
        parsed = jws.JWS()
        parsed.allowed_algs = ["RS256"]
        try:
            parsed.deserialize(token)
            parsed.verify(self._payglocal_key, alg="RS256")
            claims = json.loads(parsed.payload)
        except (JWException, ValueError, TypeError):
            return None
        return claims if isinstance(claims, dict) else None
