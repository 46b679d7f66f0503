"""Errors of our own domain, with one root."""

from __future__ import annotations


class ReconError(Exception):
    """Root of the service's own errors."""


class OrderRejected(ReconError):
    """A purchase the product does not allow. ``code`` is stable for API clients."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class UnknownOrder(ReconError):
    """No order with that id: a message or request that names nothing we hold."""


class GatewayUnavailable(ReconError):
    """The gateway could not create the order; the order is kept, marked abandoned."""

    def __init__(self, order_id: str, message: str):
        super().__init__(message)
        self.order_id = order_id
