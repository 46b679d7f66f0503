"""PayGlocal's payment API over httpx: paths, JWE bodies, JWS headers, HTTP status -> gateway error.

Methods return the parsed JSON object; turning it into DTOs is :mod:`gateways.payglocal.mapping`'s job.
Each request gets a freshly signed ``x-gl-token-external`` (tokens live 5 minutes), so a retried
GET is re-signed too.

Error mapping (docs/gateways/payglocal.md §3, §5; PayGlocal says "not found" two ways)::

    404 in PayGlocal's error envelope, or 400 with GL-400-999 / "Transaction not found" -> GatewayNotFound
    429                                                   -> GatewayRateLimited (retry_after from Retry-After)
    5xx (501 is PayGlocal's "system error"), 408, timeouts -> GatewayTransient
    4xx with a non-JSON body, 404 without the envelope     -> GatewayTransient (a proxy answered, not PayGlocal)
    any other 4xx (400, 401, 403, 409...)                  -> GatewayPermanent

Only PayGlocal's own envelope may say "not found" (the order then goes to review): an HTML 404 from
a proxy in front of PayGlocal says nothing about the transaction. The Razorpay adapter also treats
non-JSON errors as transient.

GETs (status) are retried in-call a few times (:func:`gateways.http.retry_idempotent`); POSTs never
are: a lost initiate is found again by ``merchantTxnId`` (see :class:`gateways.payglocal.PayGlocalGateway`),
and a repeated refund is a duplicate ``merchantTxnId`` (:func:`is_duplicate`) that the adapter looks up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx

from gateways.base import GatewayClient, JsonObject, path_segment, rate_limited
from gateways.errors import GatewayError, GatewayNotFound, GatewayPermanent, GatewayTransient
from gateways.payglocal.settings import SANDBOX_BASE_URL
from gateways.payglocal.tokens import RequestSigner, status_path

__all__ = ["SANDBOX_BASE_URL", "PayGlocalClient", "is_duplicate"]

TOKEN_HEADER = "x-gl-token-external"

#: PayGlocal documents no request-id header; this one is kept in errors when present.
REQUEST_ID_HEADER = "x-request-id"

#: A 400 carrying one of these (in reasonCode, message or errors) means "unknown id".
NOT_FOUND_CODES = ("GL-400-999",)
NOT_FOUND_PHRASES = ("transaction not found",)

#: A repeated ``merchantTxnId``: the refund API answers 409 (after-capture.md §5.4); initiate and capture
#: answer a 400 that says "duplicate" (payglocal.md §0.6), which a refund may do as well.
DUPLICATE_PHRASE = "duplicate"


def is_duplicate(error: GatewayError) -> bool:
    """True when ``error`` is PayGlocal refusing a ``merchantTxnId`` it has seen: a 409, or a 400 saying so."""
    if not isinstance(error, GatewayPermanent):
        return False
    return error.status == 409 or (error.status == 400 and DUPLICATE_PHRASE in str(error.args[0]).lower())


class PayGlocalClient(GatewayClient):
    """A thin, typed-errors client for the PayGlocal endpoints the reconciler needs."""

    gateway = "payglocal"
    request_id_header = REQUEST_ID_HEADER

    def __init__(self, *, signer: RequestSigner, base_url: str = SANDBOX_BASE_URL, **http: Any):
        """Args:
        signer: makes the JWE bodies and the JWS header of every request.
        base_url: the API root (no path), e.g. :data:`SANDBOX_BASE_URL`.
        http: ``transport``, ``timeout``, ``event_hooks``, ``retry_attempts``, ``sleep``
            (see :class:`gateways.base.GatewayClient`; a timeout is mandatory).
        """
        self._signer = signer
        super().__init__(base_url=base_url, **http)

    def __repr__(self) -> str:
        return f"PayGlocalClient(merchant_id={self._signer.merchant_id!r}, base_url={str(self._http.base_url)!r})"

    # Endpoints -------------------------------------------------------------------------

    def initiate_paycollect(self, payload: Mapping[str, Any]) -> JsonObject:
        """``POST /gl/v1/payments/initiate/paycollect`` (hosted page). Not retried."""
        return self._post("/gl/v1/payments/initiate/paycollect", payload)

    def status(self, identifier: str) -> JsonObject:
        """``GET /gl/v1/payments/{id}/status``; ``id`` is a gid (or a merchantTxnId). Retried."""
        path = status_path(_segment(identifier))

        def attempt() -> JsonObject:
            headers = {TOKEN_HEADER: self._signer.sign_path(path)}
            return self._send("GET", path, headers=headers)

        return self._retried(attempt)

    def capture(self, gid: str, payload: Mapping[str, Any]) -> JsonObject:
        """``POST /gl/v1/payments/{gid}/capture`` (auth-only flows). Not retried."""
        return self._post(f"/gl/v1/payments/{_segment(gid)}/capture", payload)

    def refund(self, gid: str, payload: Mapping[str, Any]) -> JsonObject:
        """``POST /gl/v1/payments/{gid}/refund`` (``gid`` = the original payment). Not retried: a repeat is
        refused as a duplicate ``merchantTxnId``, which the adapter then looks up."""
        return self._post(f"/gl/v1/payments/{_segment(gid)}/refund", payload)

    # Plumbing --------------------------------------------------------------------------

    def _post(self, path: str, payload: Mapping[str, Any]) -> JsonObject:
        body, token = self._signer.sign_body(payload)
        headers = {TOKEN_HEADER: token, "Content-Type": "text/plain"}
        return self._send("POST", path, headers=headers, content=body.encode("ascii"))

    @staticmethod
    def _json_object(response: httpx.Response) -> JsonObject | None:
        """The body as a JSON object (decimals kept exact), or ``None`` when it is not one."""
        try:
            payload = json.loads(response.content, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            return None
        return payload if isinstance(payload, dict) else None

    def _error(self, response: httpx.Response, payload: JsonObject | None, what: str,
               evidence: dict[str, Any]) -> GatewayError:
        summary = _error_summary(payload)
        status = response.status_code
        if status == 429:
            return rate_limited(response, f"{what}: rate limited ({summary or 'no detail'})", evidence)
        if status >= 500 or status == 408:
            return GatewayTransient(f"{what}: server error {summary}".rstrip(), **evidence)
        if payload is None:
            return GatewayTransient(f"{what}: error response is not JSON (not PayGlocal's answer)", **evidence)
        if status == 404 and not _is_payglocal_error(payload):
            return GatewayTransient(f"{what}: 404 outside PayGlocal's error envelope: {summary or 'no detail'}",
                                    **evidence)
        if status == 404 or (status == 400 and _is_not_found(payload)):
            return GatewayNotFound(f"{what}: not found ({summary or 'no detail'})", **evidence)
        return GatewayPermanent(f"{what}: {summary or 'no detail'}", **evidence)


def _segment(identifier: str) -> str:
    return path_segment(identifier, gateway="PayGlocal")


def _error_texts(payload: JsonObject | None) -> list[str]:
    """``reasonCode``, ``message`` and the ``errors`` / ``data`` details of a PayGlocal error envelope."""
    if not payload:
        return []
    texts = [payload.get("reasonCode"), payload.get("message"), payload.get("status")]
    for nested in ("errors", "data"):
        block = payload.get(nested)
        if isinstance(block, dict):
            texts += [block.get(k) for k in ("code", "reasonCode", "displayMessage", "detailedMessage", "message")]
    return [text for text in texts if isinstance(text, str) and text]


def _error_summary(payload: JsonObject | None) -> str:
    return "; ".join(dict.fromkeys(_error_texts(payload)))[:300]


def _is_not_found(payload: JsonObject) -> bool:
    joined = " ".join(_error_texts(payload))
    return any(code in joined for code in NOT_FOUND_CODES) or any(p in joined.lower() for p in NOT_FOUND_PHRASES)


def _is_payglocal_error(payload: JsonObject) -> bool:
    """PayGlocal's error envelope (payglocal.md §3, §5): a ``GL-`` reasonCode, an ``errors`` object, or
    its not-found code or phrase. A proxy's or framework's JSON 404 has none of them."""
    reason = payload.get("reasonCode")
    has_code = isinstance(reason, str) and reason.upper().startswith("GL-")
    return has_code or isinstance(payload.get("errors"), dict) or _is_not_found(payload)
