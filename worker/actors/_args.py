"""``recon_actor``: declares a thin actor that checks its message against the contract, calls one
service function, and turns gateway rate limits into quiet Dramatiq retries."""

from __future__ import annotations

from collections.abc import Callable

import dramatiq

from gateways.errors import GatewayNotFound, GatewayPermanent, GatewayRateLimited
from worker.contract import BadMessage, parse
from worker.domain.errors import UnknownOrder
from worker.domain.order_state import IllegalTransition

#: Failures that no retry can fix: dead-letter at once, with the reason in the log.
PERMANENT = (BadMessage, UnknownOrder, GatewayPermanent, GatewayNotFound, IllegalTransition)
#: Default retry policy: 1 s doubling to 10 min, jittered by Dramatiq.
DEFAULT_OPTIONS = {"max_retries": 12, "min_backoff": 1_000, "max_backoff": 600_000, "time_limit": 60_000}


def bind(model, args: tuple, kwargs: dict):
    """Map positional and keyword arguments onto the contract model's fields, strictly."""
    names = list(model.model_fields)
    if len(args) > len(names):
        raise BadMessage(f"{model.__name__}: {len(args)} positional arguments, at most {len(names)} expected")
    overlap = set(names[: len(args)]) & set(kwargs)
    if overlap:
        raise BadMessage(f"{model.__name__}: {sorted(overlap)} given twice")
    return parse(model, **dict(zip(names, args)), **kwargs)


def recon_actor(*, name: str, queue: str, contract, **options) -> Callable:
    """Declare ``fn(message)`` as the Dramatiq actor ``name`` on ``queue``."""

    def decorate(fn: Callable) -> dramatiq.Actor:
        def run(*args, **kwargs) -> None:
            message = bind(contract, args, kwargs)
            try:
                fn(message)
            except GatewayRateLimited as exc:
                delay_ms = int((exc.retry_after or 5) * 1000)
                raise dramatiq.Retry(message=str(exc), delay=delay_ms) from exc

        run.__name__ = run.__qualname__ = name
        run.__doc__ = fn.__doc__
        return dramatiq.actor(run, actor_name=name, queue_name=queue, throws=PERMANENT,
                              **{**DEFAULT_OPTIONS, **options})

    return decorate
