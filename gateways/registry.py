"""Every gateway adapter we can build. Adding a gateway is its own folder plus one line in :data:`ADAPTERS`.

Each adapter class carries its facts (:class:`gateways.port.GatewayFacts`) and builds itself from
settings (:class:`gateways.port.GatewayFactory`); the service asks this module, by gateway name,
instead of keeping its own table per gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx

from gateways.http import EventHooks
from gateways.payglocal import PayGlocalGateway
from gateways.port import GatewayFactory, PaymentGateway
from gateways.razorpay import RazorpayGateway

#: The adapters, in the order they are built.
ADAPTERS: tuple[GatewayFactory, ...] = (
    RazorpayGateway,
    PayGlocalGateway,
)

#: The adapters by :attr:`~gateways.port.GatewayFacts.name`.
BY_NAME: Mapping[str, GatewayFactory] = {adapter.name: adapter for adapter in ADAPTERS}


def adapter(name: str) -> GatewayFactory:
    """The adapter class named ``name``.

    Raises:
        LookupError: no adapter has that name.
    """
    try:
        return BY_NAME[name]
    except KeyError:
        raise LookupError(f"no gateway adapter named {name!r}; known: {', '.join(BY_NAME)}") from None


def build_configured(
    settings: object,
    *,
    transport: httpx.BaseTransport | None = None,
    event_hooks: Callable[[str], EventHooks] | None = None,
) -> dict[str, PaymentGateway]:
    """Every gateway ``settings`` enable, built, by name.

    Args:
        settings: the service's flat settings (``<name>_*`` fields).
        transport: one httpx transport for all of them (tests: the simulator's ASGI app).
        event_hooks: ``hooks(name)`` gives each gateway's httpx event hooks (e.g. latency metrics).

    Raises:
        ValueError: an enabled gateway lacks a setting it needs (the message names them).
    """
    return {
        factory.name: factory.from_settings(
            settings, transport=transport, event_hooks=event_hooks(factory.name) if event_hooks else None
        )
        for factory in ADAPTERS
        if factory.enabled(settings)
    }
