"""Gateway errors, classified by what the caller should do about them.

Each error keeps its evidence (HTTP status, a short body excerpt, the gateway's request id),
like Stripe's ``StripeError``, and never holds credentials.
"""

from __future__ import annotations

from typing import TypedDict, Unpack


class Evidence(TypedDict, total=False):
    """The keyword arguments every gateway error takes (see ``GatewayError``)."""

    status: int | None
    body: str | None
    request_id: str | None


class GatewayError(Exception):
    """Root of every error a gateway adapter raises."""

    def __init__(self, message: str, *, status: int | None = None, body: str | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = (body or "")[:500]
        self.request_id = request_id

    def __str__(self) -> str:
        prefix = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{prefix}{self.args[0]}"


class GatewayTransient(GatewayError):
    """5xx, timeouts and connection failures: safe to try again later."""


class GatewayRateLimited(GatewayTransient):
    """429: try again later, after ``retry_after`` seconds when the gateway said so."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Unpack[Evidence]) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class GatewayNotFound(GatewayError):
    """The gateway does not know the id (Razorpay says so with a 400)."""


class GatewayPermanent(GatewayError):
    """Any other 4xx: retrying the same request will not help."""


class SignatureInvalid(GatewayError):
    """A webhook or callback whose signature does not verify."""


class MalformedEvent(GatewayError):
    """A body that we cannot parse or that lacks what we need.

    ``signed`` says whether its signature verified first: the gateway sent it, so it is acknowledged
    (a 4xx would make the gateway retry for a day and then disable the endpoint); an unsigned one is not.
    """

    def __init__(self, message: str, *, signed: bool = True, **kwargs: Unpack[Evidence]) -> None:
        super().__init__(message, **kwargs)
        self.signed = signed
