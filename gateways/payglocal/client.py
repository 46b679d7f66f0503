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
are: a lost initiate is found again by ``merchantTxnId`` (see :class:`gateways.payglocal.PayGlocalGateway`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from gateways.errors import GatewayNotFound, GatewayPermanent, GatewayRateLimited, GatewayTransient
from gateways.http import (
    DEFAULT_ATTEMPTS,
    DEFAULT_TIMEOUT,
    EventHooks,
    build_client,
    parse_retry_after,
    retry_idempotent,
    translate_errors,
)
from gateways.payglocal.tokens import RequestSigner, status_path

#: PayGlocal's sandbox (UAT). Production is ``https://api.payglocal.in`` or ``https://api.prod.payglocal.in``
#: depending on the source (docs §0.9): configure it and confirm with PayGlocal.
SANDBOX_BASE_URL = "https://api.uat.payglocal.in"

TOKEN_HEADER = "x-gl-token-external"

#: PayGlocal documents no request-id header; this one is kept in errors when present.
REQUEST_ID_HEADER = "x-request-id"

#: A 400 carrying one of these (in reasonCode, message or errors) means "unknown id".
NOT_FOUND_CODES = ("GL-400-999",)
NOT_FOUND_PHRASES = ("transaction not found",)

JsonObject = dict[str, Any]


class PayGlocalClient:
    """A thin, typed-errors client for the PayGlocal endpoints the reconciler needs."""

    def __init__(
        self,
        *,
        signer: RequestSigner,
        base_url: str = SANDBOX_BASE_URL,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        event_hooks: EventHooks | None = None,
        retry_attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ):
        """Args:
        signer: makes the JWE bodies and the JWS header of every request.
        base_url: the API root (no path), e.g. :data:`SANDBOX_BASE_URL`.
        transport: ``None`` in production; ``httpx.MockTransport`` in tests.
        timeout, event_hooks: passed to :func:`gateways.http.build_client` (a timeout is mandatory).
        retry_attempts, sleep: the bounded in-call retry of GETs.
        """
        self._signer = signer
        self._retry_attempts = retry_attempts
        self._sleep = sleep
        self._http = build_client(
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            event_hooks=event_hooks,
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"PayGlocalClient(merchant_id={self._signer.merchant_id!r}, base_url={str(self._http.base_url)!r})"

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> PayGlocalClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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

        return retry_idempotent(attempt, attempts=self._retry_attempts, sleep=self._sleep)

    def capture(self, gid: str, payload: Mapping[str, Any]) -> JsonObject:
        """``POST /gl/v1/payments/{gid}/capture`` (auth-only flows). Not retried."""
        return self._post(f"/gl/v1/payments/{_segment(gid)}/capture", payload)

    # Plumbing --------------------------------------------------------------------------

    def _post(self, path: str, payload: Mapping[str, Any]) -> JsonObject:
        body, token = self._signer.sign_body(payload)
        headers = {TOKEN_HEADER: token, "Content-Type": "text/plain"}
        return self._send("POST", path, headers=headers, content=body.encode("ascii"))

    def _send(self, method: str, path: str, *, headers: Mapping[str, str], content: bytes | None = None) -> JsonObject:
        what = f"payglocal {method} {path}"
        with translate_errors(what):
            response = self._http.request(method, path, headers=dict(headers), content=content)
        return _json_or_raise(response, what)


def _segment(identifier: str) -> str:
    """Quote an id for use as one path segment, so ``"../x"`` cannot change the endpoint."""
    if not identifier:
        raise ValueError("an empty PayGlocal id cannot be used")
    return quote(identifier, safe="")


def _json_or_raise(response: httpx.Response, what: str) -> JsonObject:
    """The JSON object of a 2xx response; otherwise the gateway error its status calls for."""
    evidence = {
        "status": response.status_code,
        "body": response.text[:500],
        "request_id": response.headers.get(REQUEST_ID_HEADER),
    }
    payload = _json_object(response)
    if response.is_success:
        if payload is None:
            raise GatewayTransient(f"{what}: success response is not a JSON object", **evidence)
        return payload

    summary = _error_summary(payload)
    status = response.status_code
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise GatewayRateLimited(f"{what}: rate limited ({summary or 'no detail'})", retry_after=retry_after, **evidence)
    if status >= 500 or status == 408:
        raise GatewayTransient(f"{what}: server error {summary}".rstrip(), **evidence)
    if payload is None:
        raise GatewayTransient(f"{what}: error response is not JSON (not PayGlocal's answer)", **evidence)
    if status == 404 and not _is_payglocal_error(payload):
        raise GatewayTransient(f"{what}: 404 outside PayGlocal's error envelope: {summary or 'no detail'}",
                               **evidence)
    if status == 404 or (status == 400 and _is_not_found(payload)):
        raise GatewayNotFound(f"{what}: not found ({summary or 'no detail'})", **evidence)
    raise GatewayPermanent(f"{what}: {summary or 'no detail'}", **evidence)


def _json_object(response: httpx.Response) -> JsonObject | None:
    """The body as a JSON object (decimals kept exact), or ``None`` when it is not one."""
    try:
        payload = json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


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
