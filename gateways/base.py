"""What every adapter's HTTP client and every adapter share: one pooled ``httpx.Client``, closed once.

:class:`GatewayClient` builds the client with :func:`gateways.http.build_client` (mandatory timeout,
injectable ``transport`` and ``event_hooks``), sends each request inside
:func:`gateways.http.translate_errors` and retries idempotent calls with
:func:`gateways.http.retry_idempotent`, and turns a 2xx into its JSON object. A subclass names its
gateway and its request-id header, adds the endpoints and maps a non-2xx response to a gateway error
(:meth:`GatewayClient._error`): that mapping is the part that really differs between gateways.

:class:`GatewayAdapter` gives an adapter that holds such a client ``close()`` and ``with`` support.
:func:`refund_request` checks a refund's key and amount the same way for every adapter.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import quote

import httpx

from gateways.errors import GatewayError, GatewayRateLimited, GatewayTransient
from gateways.http import (
    DEFAULT_ATTEMPTS,
    DEFAULT_TIMEOUT,
    EventHooks,
    build_client,
    parse_retry_after,
    retry_idempotent,
    translate_errors,
)

T = TypeVar("T")
JsonObject = dict[str, Any]

#: A refund's idempotency key, as the port states it (:meth:`gateways.port.PaymentGateway.create_refund`):
#: Razorpay wants at least 10 of these characters (after-capture.md §2.1).
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{10,40}")


class ClosedOnExit:
    """``with thing:`` closes ``thing`` on the way out, as httpx's clients do."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class GatewayClient(ClosedOnExit):
    """The plumbing of a thin, typed-errors gateway client; subclasses add the endpoints."""

    #: Names the gateway in error messages: ``"razorpay GET /v1/orders/{id}: timed out"``.
    gateway: ClassVar[str]
    #: The response header kept as an error's ``request_id`` (neither gateway documents one).
    request_id_header: ClassVar[str]

    def __init__(
        self,
        *,
        base_url: str,
        auth: httpx.Auth | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        event_hooks: EventHooks | None = None,
        retry_attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ):
        """Args:
        base_url: the API root (no path).
        auth: passed to httpx (Basic auth for Razorpay; PayGlocal signs each request instead).
        transport: ``None`` in production; ``httpx.MockTransport`` in tests.
        timeout, event_hooks: passed to :func:`gateways.http.build_client` (a timeout is mandatory).
        retry_attempts, sleep: the bounded in-call retry of idempotent requests; ``sleep`` is injected in tests.
        """
        self._retry_attempts = retry_attempts
        self._sleep = sleep
        self._http = build_client(
            base_url=base_url,
            auth=auth,
            transport=transport,
            timeout=timeout,
            event_hooks=event_hooks,
            headers={"Accept": "application/json"},
        )

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def _retried(self, attempt: Callable[[], T]) -> T:
        """``attempt()``, retried on transient errors (idempotent requests only, see the module docstring)."""
        return retry_idempotent(attempt, attempts=self._retry_attempts, sleep=self._sleep)

    def _send(self, method: str, path: str, **request: Any) -> JsonObject:
        """One request (``request`` goes to ``httpx.Client.request``); httpx errors become gateway errors."""
        what = f"{self.gateway} {method} {path}"
        with translate_errors(what):
            response = self._http.request(method, path, **request)
        return self._answer(response, what)

    def _answer(self, response: httpx.Response, what: str) -> JsonObject:
        """The JSON object of a 2xx response; otherwise raise the gateway error its status calls for.

        Raises:
            GatewayTransient: a 2xx whose body is not a JSON object (a proxy answered, or it was cut).
            GatewayError: whatever :meth:`_error` maps a non-2xx response to.
        """
        evidence = {
            "status": response.status_code,
            "body": response.text[:500],
            "request_id": response.headers.get(self.request_id_header),
        }
        payload = self._json_object(response)
        if response.is_success:
            if payload is None:
                raise GatewayTransient(f"{what}: success response is not a JSON object", **evidence)
            return payload
        raise self._error(response, payload, what, evidence)

    @staticmethod
    def _json_object(response: httpx.Response) -> JsonObject | None:
        """The body as a JSON object, or ``None`` when it is empty, not JSON, or not an object."""
        try:
            payload = response.json()
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    def _error(self, response: httpx.Response, payload: JsonObject | None, what: str,
               evidence: dict[str, Any]) -> GatewayError:
        """The gateway error for a non-2xx ``response`` (``payload`` is its JSON object or ``None``);
        ``evidence`` holds the keyword arguments every :class:`GatewayError` takes."""
        raise NotImplementedError


def rate_limited(response: httpx.Response, message: str, evidence: dict[str, Any]) -> GatewayRateLimited:
    """A 429 as :class:`GatewayRateLimited`, waiting what its ``Retry-After`` asks (when it asks)."""
    return GatewayRateLimited(message, retry_after=parse_retry_after(response.headers.get("retry-after")), **evidence)


def path_segment(identifier: str, *, gateway: str) -> str:
    """Quote an id for use as one path segment, so ``"../x"`` cannot change the endpoint.

    Raises:
        ValueError: the id is empty.
    """
    if not identifier:
        raise ValueError(f"an empty {gateway} id cannot be used")
    return quote(identifier, safe="")


def refund_request(amount_minor: int, idempotency_key: str) -> None:
    """Refuse, before anything is sent, a refund amount that is not a positive int in minor units or a key
    outside :data:`IDEMPOTENCY_KEY` (a programming error, not a gateway's answer).

    Raises:
        TypeError, ValueError: the amount or the key is wrong.
    """
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"amount_minor must be an int in minor units, got {type(amount_minor).__name__}")
    if amount_minor <= 0:
        raise ValueError(f"a refund amount must be positive, got {amount_minor}")
    if not isinstance(idempotency_key, str) or not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise ValueError("a refund idempotency key must be 10 to 40 of [A-Za-z0-9_-]")


class GatewayAdapter(ClosedOnExit):
    """An adapter over one :class:`GatewayClient`: ``close()`` and ``with`` close its connection pool."""

    _client: GatewayClient
    #: The prefix of the adapter's fields in the service's flat settings (``razorpay_``).
    settings_prefix: ClassVar[str]

    @classmethod
    def manual_capture_from(cls, settings: object) -> bool:
        """Whether a new order is created for manual capture (``<prefix>manual_capture``), as ``settings``
        say now (read at each order: an operator may switch it)."""
        return bool(getattr(settings, cls.settings_prefix + "manual_capture", False))

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

