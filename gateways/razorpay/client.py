"""Razorpay's REST API over httpx: paths, Basic auth, and HTTP status -> gateway error.

Methods return the parsed JSON object; turning it into DTOs is :mod:`gateways.razorpay.mapping`'s job.

Error mapping (Razorpay hides "not found" behind a 400, see docs/gateways/razorpay.md §2, §6)::

    400 + "does not exist" / "is not a valid id"  -> GatewayNotFound
    429                                          -> GatewayRateLimited (retry_after from Retry-After)
    5xx, timeouts, connection errors             -> GatewayTransient
    409 + "still in progress" (refund key busy)  -> GatewayTransient
    any other non-2xx with a non-JSON body        -> GatewayTransient (an HTML page from a proxy)
    any other 4xx                                -> GatewayPermanent

GETs are retried in-call a few times (:func:`gateways.http.retry_idempotent`). POSTs are not
retried here: a lost ``create_order`` response is recovered by looking the order up by receipt
(see :meth:`gateways.razorpay.RazorpayGateway.create_order`), and a repeated capture answers
"already been captured". The one exception is the refund POST: it carries ``X-Refund-Idempotency``,
so a repeat with the same key and body is the same refund (after-capture.md §2.1), and it is retried
like a GET. Its 409 "…still in progress" is transient (try again with the same key); its 500
"Failed to fetch idempotency record" is a 5xx, transient too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from gateways.base import GatewayClient, JsonObject, path_segment, rate_limited
from gateways.errors import GatewayError, GatewayNotFound, GatewayPermanent, GatewayTransient
from gateways.razorpay.settings import DEFAULT_BASE_URL

#: Razorpay documents no request-id header; this one is kept in errors when it is present.
REQUEST_ID_HEADER = "x-razorpay-request-id"

#: Phrases of a 400 that mean "unknown id" rather than "bad request".
NOT_FOUND_PHRASES = ("does not exist", "is not a valid id")

#: Phrase of the 400 Razorpay answers to capturing a payment twice.
ALREADY_CAPTURED_PHRASE = "already been captured"

#: The refund idempotency header (after-capture.md §2.1): same key and body = the same refund.
REFUND_IDEMPOTENCY_HEADER = "X-Refund-Idempotency"

#: Phrase of the 409 for a refund whose key is still being processed: retry later with the same key.
IN_PROGRESS_PHRASE = "still in progress"

__all__ = ["DEFAULT_BASE_URL", "RazorpayClient", "is_already_captured"]


def is_already_captured(error: GatewayError) -> bool:
    """True when ``error`` is Razorpay's 400 for capturing an already captured payment."""
    return isinstance(error, GatewayPermanent) and ALREADY_CAPTURED_PHRASE in str(error.args[0]).lower()


class RazorpayClient(GatewayClient):
    """A thin, typed-errors client for the Razorpay endpoints the reconciler needs."""

    gateway = "razorpay"
    request_id_header = REQUEST_ID_HEADER

    def __init__(self, *, key_id: str, key_secret: str, base_url: str = DEFAULT_BASE_URL, **http: Any):
        """Args:
        key_id, key_secret: the API key pair (HTTP Basic auth).
        base_url: the API root, :data:`DEFAULT_BASE_URL` unless a stand-in is configured.
        http: ``transport``, ``timeout``, ``event_hooks``, ``retry_attempts``, ``sleep``
            (see :class:`gateways.base.GatewayClient`).
        """
        if not key_id or not key_secret:
            raise ValueError("Razorpay key_id and key_secret are both required")
        self.key_id = key_id
        super().__init__(base_url=base_url, auth=httpx.BasicAuth(key_id, key_secret), **http)

    def __repr__(self) -> str:
        return f"RazorpayClient(key_id={self.key_id!r}, base_url={str(self._http.base_url)!r})"

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

    def create_refund(self, gateway_payment_id: str, body: Mapping[str, Any], idempotency_key: str) -> JsonObject:
        """``POST /v1/payments/{id}/refund`` with ``X-Refund-Idempotency``. Retried in-call, which only the
        key makes safe: every attempt sends the same key and the same body."""
        path = f"/v1/payments/{_segment(gateway_payment_id)}/refund"
        headers = {REFUND_IDEMPOTENCY_HEADER: idempotency_key}
        return self._retried(lambda: self._send("POST", path, json=dict(body), headers=headers))

    def fetch_refunds(self, gateway_payment_id: str) -> JsonObject:
        """``GET /v1/payments/{id}/refunds?count=100``: the payment's refunds (10 by default, 100 at most)."""
        return self._get(f"/v1/payments/{_segment(gateway_payment_id)}/refunds", params={"count": "100"})

    def fetch_settlement_recon(self, year: int, month: int, day: int, *, count: int, skip: int) -> JsonObject:
        """``GET /v1/settlements/recon/combined?year&month&day&count&skip``: the transactions settled that day."""
        return self._get("/v1/settlements/recon/combined", params={
            "year": f"{year:04d}", "month": f"{month:02d}", "day": f"{day:02d}", "count": str(count),
            "skip": str(skip)})

    # Plumbing --------------------------------------------------------------------------

    def _get(self, path: str, *, params: Mapping[str, str] | None = None) -> JsonObject:
        return self._retried(lambda: self._send("GET", path, params=params))

    def _error(self, response: httpx.Response, payload: JsonObject | None, what: str,
               evidence: dict[str, Any]) -> GatewayError:
        code, description = _error_fields(payload)
        if response.status_code == 429:
            return rate_limited(response, f"{what}: rate limited ({code or 'no code'})", evidence)
        if response.status_code >= 500:
            detail = f" {code}: {description}" if code or description else ""
            return GatewayTransient(f"{what}: server error{detail}", **evidence)
        if payload is None:
            return GatewayTransient(f"{what}: error response is not JSON", **evidence)
        if response.status_code == 400 and any(phrase in description.lower() for phrase in NOT_FOUND_PHRASES):
            return GatewayNotFound(f"{what}: {description}", **evidence)
        if response.status_code == 409 and IN_PROGRESS_PHRASE in description.lower():
            return GatewayTransient(f"{what}: {code or 'conflict'}: {description}", **evidence)
        return GatewayPermanent(f"{what}: {code or 'error'}: {description or 'no description'}", **evidence)


def _segment(identifier: str) -> str:
    return path_segment(identifier, gateway="razorpay")


def _error_fields(payload: JsonObject | None) -> tuple[str, str]:
    """``(error.code, error.description)`` of a Razorpay error body, empty strings when absent."""
    error = (payload or {}).get("error")
    if not isinstance(error, dict):
        return "", ""
    code, description = error.get("code"), error.get("description")
    return (code if isinstance(code, str) else ""), (description if isinstance(description, str) else "")
