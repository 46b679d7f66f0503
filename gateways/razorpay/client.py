"""Razorpay's REST API over httpx: paths, Basic auth, and HTTP status -> gateway error.

Methods return the parsed JSON object; turning it into DTOs is :mod:`gateways.razorpay.mapping`'s job.

Error mapping (Razorpay hides "not found" behind a 400, see docs/gateways/razorpay.md §2, §6)::

    400 + "does not exist" / "is not a valid id"  -> GatewayNotFound
    429                                          -> GatewayRateLimited (retry_after from Retry-After)
    5xx, timeouts, connection errors             -> GatewayTransient
    any other non-2xx with a non-JSON body        -> GatewayTransient (an HTML page from a proxy)
    any other 4xx                                -> GatewayPermanent

GETs are retried in-call a few times (:func:`gateways.http.retry_idempotent`). POSTs are never
retried here: a lost ``create_order`` response is recovered by looking the order up by receipt
(see :meth:`gateways.razorpay.RazorpayGateway.create_order`), and a repeated capture answers
"already been captured".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from gateways.errors import GatewayError, GatewayNotFound, GatewayPermanent, GatewayRateLimited, GatewayTransient
from gateways.http import (
    DEFAULT_ATTEMPTS,
    DEFAULT_TIMEOUT,
    EventHooks,
    build_client,
    parse_retry_after,
    retry_idempotent,
    translate_errors,
)

#: Razorpay's API root; paths carry the version (``/v1/...``).
DEFAULT_BASE_URL = "https://api.razorpay.com"

#: Razorpay documents no request-id header; this one is kept in errors when it is present.
REQUEST_ID_HEADER = "x-razorpay-request-id"

#: Phrases of a 400 that mean "unknown id" rather than "bad request".
NOT_FOUND_PHRASES = ("does not exist", "is not a valid id")

#: Phrase of the 400 Razorpay answers to capturing a payment twice.
ALREADY_CAPTURED_PHRASE = "already been captured"

JsonObject = dict[str, Any]


def is_already_captured(error: GatewayError) -> bool:
    """True when ``error`` is Razorpay's 400 for capturing an already captured payment."""
    return isinstance(error, GatewayPermanent) and ALREADY_CAPTURED_PHRASE in str(error.args[0]).lower()


class RazorpayClient:
    """A thin, typed-errors client for the Razorpay endpoints the reconciler needs."""

    def __init__(
        self,
        *,
        key_id: str,
        key_secret: str,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        event_hooks: EventHooks | None = None,
        retry_attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not key_id or not key_secret:
            raise ValueError("Razorpay key_id and key_secret are both required")
        self.key_id = key_id
        self._retry_attempts = retry_attempts
        self._sleep = sleep
        self._http = build_client(
            base_url=base_url,
            auth=httpx.BasicAuth(key_id, key_secret),
            transport=transport,
            timeout=timeout,
            event_hooks=event_hooks,
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"RazorpayClient(key_id={self.key_id!r}, base_url={str(self._http.base_url)!r})"

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> RazorpayClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Endpoints -------------------------------------------------------------------------

    def create_order(self, body: Mapping[str, Any]) -> JsonObject:
        """``POST /v1/orders``. Not retried: see the module docstring."""
        return self._send("POST", "/v1/orders", json=dict(body))

    def find_order_by_receipt(self, receipt: str) -> JsonObject | None:
        """``GET /v1/orders?receipt=...``: the oldest order whose receipt is exactly ``receipt``, or ``None``."""
        collection = self._get("/v1/orders", params={"receipt": receipt})
        items = collection.get("items")
        if not isinstance(items, list):
            raise GatewayTransient("razorpay GET /v1/orders: response has no 'items' list")
        matches = [item for item in items if isinstance(item, dict) and item.get("receipt") == receipt]
        if not matches:
            return None
        return min(matches, key=lambda item: item.get("created_at") or 0)

    def fetch_order(self, gateway_order_id: str) -> JsonObject:
        """``GET /v1/orders/{id}``."""
        return self._get(f"/v1/orders/{_segment(gateway_order_id)}")

    def fetch_order_payments(self, gateway_order_id: str) -> JsonObject:
        """``GET /v1/orders/{id}/payments``: a collection of every attempt, failed ones included."""
        return self._get(f"/v1/orders/{_segment(gateway_order_id)}/payments")

    def fetch_payment(self, gateway_payment_id: str) -> JsonObject:
        """``GET /v1/payments/{id}``."""
        return self._get(f"/v1/payments/{_segment(gateway_payment_id)}")

    def capture(self, gateway_payment_id: str, amount_minor: int, currency: str) -> JsonObject:
        """``POST /v1/payments/{id}/capture`` with the authorised amount. Not retried."""
        path = f"/v1/payments/{_segment(gateway_payment_id)}/capture"
        return self._send("POST", path, json={"amount": amount_minor, "currency": currency})

    # Plumbing --------------------------------------------------------------------------

    def _get(self, path: str, *, params: Mapping[str, str] | None = None) -> JsonObject:
        return retry_idempotent(
            lambda: self._send("GET", path, params=params),
            attempts=self._retry_attempts,
            sleep=self._sleep,
        )

    def _send(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, json: JsonObject | None = None
    ) -> JsonObject:
        what = f"razorpay {method} {path}"
        with translate_errors(what):
            response = self._http.request(method, path, params=params, json=json)
        return _json_or_raise(response, what)


def _segment(identifier: str) -> str:
    """Quote an id for use as one path segment, so ``"../x"`` cannot change the endpoint."""
    if not identifier:
        raise ValueError("an empty id cannot be fetched")
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

    code, description = _error_fields(payload)
    if response.status_code == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise GatewayRateLimited(f"{what}: rate limited ({code or 'no code'})", retry_after=retry_after, **evidence)
    if response.status_code >= 500:
        detail = f" {code}: {description}" if code or description else ""
        raise GatewayTransient(f"{what}: server error{detail}", **evidence)
    if payload is None:
        raise GatewayTransient(f"{what}: error response is not JSON", **evidence)
    if response.status_code == 400 and any(phrase in description.lower() for phrase in NOT_FOUND_PHRASES):
        raise GatewayNotFound(f"{what}: {description}", **evidence)
    raise GatewayPermanent(f"{what}: {code or 'error'}: {description or 'no description'}", **evidence)


def _json_object(response: httpx.Response) -> JsonObject | None:
    """The body as a JSON object, or ``None`` when it is empty, not JSON, or not an object."""
    try:
        payload = response.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _error_fields(payload: JsonObject | None) -> tuple[str, str]:
    """``(error.code, error.description)`` of a Razorpay error body, empty strings when absent."""
    error = (payload or {}).get("error")
    if not isinstance(error, dict):
        return "", ""
    code, description = error.get("code"), error.get("description")
    return (code if isinstance(code, str) else ""), (description if isinstance(description, str) else "")
