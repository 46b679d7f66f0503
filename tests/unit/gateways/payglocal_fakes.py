"""A fake PayGlocal for unit tests, at the HTTP boundary only (``httpx.MockTransport``), plus test keys.

RSA keys are generated once per test run (``keys()``); joserfc, an independent JOSE library,
checks what our jwcrypto code produces and makes the PayGlocal-signed tokens we verify.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwe, jws
from joserfc.jwk import RSAKey

from gateways.payglocal import PayGlocalGateway
from gateways.port import RemoteOrder

MID = "mid_test_0001"
MERCHANT_KID = "c0f6da59-merchant-kid"
PAYGLOCAL_KID = "1c2a4b36-payglocal-kid"
NOW_MS = 1_700_000_000_000
GID = "gl_a64a176f-9bac-4170-950d-4dc625a35ca9"
CALLBACK_URL = "https://shop.example/payglocal/callback"
HOST = "api.uat.payglocal.in"

Handler = Callable[[httpx.Request], httpx.Response]

#: joserfc refuses PayGlocal's extra header fields and RSA-OAEP-256 unless told otherwise.
JWS_REGISTRY = jws.JWSRegistry(algorithms=["RS256"], strict_check_header=False)
JWE_REGISTRY = jwe.JWERegistry(algorithms=["RSA-OAEP-256", "A128CBC-HS256"], strict_check_header=False)


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


def _pair() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(private.decode("ascii"), public.decode("ascii"))


@lru_cache(maxsize=1)
def keys() -> dict[str, KeyPair]:
    """``merchant``, ``payglocal`` and ``other`` (an unrelated key) pairs, made once."""
    return {"merchant": _pair(), "payglocal": _pair(), "other": _pair()}


def payglocal_token(claims: dict[str, Any], *, kid: str = PAYGLOCAL_KID, signer: str = "payglocal",
                    **header: Any) -> str:
    """A PayGlocal-style callback token made with joserfc (header as PayGlocal sends it)."""
    protected = {"issued-by": "Glocal", "is-digested": "false", "alg": "RS256", "kid": kid, **header}
    key = RSAKey.import_key(keys()[signer].private_pem)
    return jws.serialize_compact(protected, json.dumps(claims), key, registry=JWS_REGISTRY)


def callback_claims(**overrides: Any) -> dict[str, Any]:
    """The 2021 production-shaped callback claims for :data:`GID`, issued at :data:`NOW_MS`."""
    claims = {
        "gid": GID,
        "statusUrl": f"https://api.uat.payglocal.in/gl/v1/payments/{GID}/status?x-gl-token=abc",
        "merchantUniqueId": "order-42",
        "exp": 300000,
        "iat": str(NOW_MS),
        "status": "SENT_FOR_CAPTURE",
        "x-gl-gid": GID,
        "x-gl-merchantId": MID,
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def read_jws(token: str, public_pem: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(header, claims)`` of a JWS, verified with joserfc (merchant public key by default)."""
    key = RSAKey.import_key(public_pem or keys()["merchant"].public_pem)
    result = jws.deserialize_compact(token, key, registry=JWS_REGISTRY)
    return dict(result.protected), json.loads(result.payload)


def read_jwe(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(protected header, payload)`` of a JWE, decrypted with joserfc and PayGlocal's private key."""
    key = RSAKey.import_key(keys()["payglocal"].private_pem)
    result = jwe.decrypt_compact(token, key, registry=JWE_REGISTRY)
    return dict(result.protected), json.loads(result.plaintext)


class FakePayGlocal:
    """Records every request, checks it targets the sandbox host, and answers with ``handler``."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == HOST
        request.read()
        self.requests.append(request)
        return self.handler(request)

    def calls(self) -> list[tuple[str, str]]:
        """``(method, path)`` of each request so far."""
        return [(r.method, r.url.path) for r in self.requests]


def gateway_kwargs(**overrides: Any) -> dict[str, Any]:
    """Constructor arguments of a PayGlocalGateway using the test keys (transport not included)."""
    arguments: dict[str, Any] = {
        "merchant_id": MID,
        "private_key_pem": keys()["merchant"].private_pem,
        "private_kid": MERCHANT_KID,
        "payglocal_public_keys": {PAYGLOCAL_KID: keys()["payglocal"].public_pem},
        "payglocal_public_kid": PAYGLOCAL_KID,
        "callback_url": CALLBACK_URL,
        "now_ms": lambda: NOW_MS,
    }
    arguments.update(overrides)
    return arguments


def make_gateway(
    handler: Handler, sleeps: list[float] | None = None, **overrides: Any
) -> tuple[PayGlocalGateway, FakePayGlocal]:
    """A gateway wired to a FakePayGlocal; sleeps of the GET retry are recorded in ``sleeps``."""
    fake = FakePayGlocal(handler)
    recorded = sleeps if sleeps is not None else []
    gateway = PayGlocalGateway(transport=httpx.MockTransport(fake), sleep=recorded.append,
                               **gateway_kwargs(**overrides))
    return gateway, fake


def status_json(
    status: str = "SENT_FOR_CAPTURE", *, gid: str = GID, amount: Any = "500.00", currency: str = "INR",
    top: str = "SUCCESS",
) -> dict[str, Any]:
    """A status-enquiry answer: top-level ``status`` is the call's outcome, ``data.status`` the truth."""
    return {
        "gid": gid,
        "status": top,
        "message": "Transaction status fetched",
        "timestamp": "08/12/2021 18:00:50",
        "reasonCode": "GL-201-001",
        "data": {
            "status": status,
            "gid": gid,
            "merchantTxnId": "order-42",
            "Amount": amount,
            "Currency": currency,
            "reasonCode": "GL-201-001",
            "detailedMessage": "ok",
            "transactionCreationTime": "08/12/2021 18:00:50",
        },
        "errors": None,
    }


def initiate_json(gid: str = GID) -> dict[str, Any]:
    """The real 2021 initiate answer's shape."""
    return {
        "gid": gid,
        "status": "INPROGRESS",
        "message": "Transaction Created Successfully",
        "timestamp": "08/12/2021 18:00:50",
        "reasonCode": "GL-201-001",
        "data": {
            "redirectUrl": "https://api.uat.payglocal.in/gl/payflow-ui/?x-gl-token=abc",
            "statusUrl": f"https://api.uat.payglocal.in/gl/v1/payments/{gid}/status?x-gl-token=abc",
            "merchantTxnId": "order-42",
        },
        "errors": None,
    }


def create(gateway: PayGlocalGateway, **overrides: Any) -> RemoteOrder:
    """Create the standard test order (receipt order-42, 500.00 INR, auto capture), with ``overrides``."""
    arguments = {"receipt": "order-42", "amount_minor": 50000, "currency": "INR", "notes": {"x": "y"},
                 "manual_capture": False}
    arguments.update(overrides)
    return gateway.create_order(**arguments)


def error_json(status: int, message: str, reason_code: str, **headers: str) -> httpx.Response:
    """A PayGlocal error envelope."""
    body = {
        "gid": None,
        "status": "REQUEST_ERROR",
        "message": message,
        "timestamp": "08/12/2021 18:00:50",
        "reasonCode": reason_code,
        "data": None,
        "errors": {"displayMessage": message, "detailedMessage": message},
    }
    return httpx.Response(status, json=body, headers=headers)
