"""``recon_actor``: declares a thin actor that checks its message against the contract, calls one
service function, and turns gateway rate limits into quiet Dramatiq retries."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from pydantic import BaseModel, ValidationError, validate_call

from gateways.errors import GatewayNotFound, GatewayPermanent, GatewayRateLimited
from worker.contract import BadMessage, parse, problems
from worker.deps import Deps
from worker.domain.errors import UnknownOrder
from worker.domain.order_state import IllegalTransition

#: Failures that no retry can fix: dead-letter at once, with the reason in the log.
PERMANENT = (BadMessage, UnknownOrder, GatewayPermanent, GatewayNotFound, IllegalTransition)
#: Default retry policy: 1 s doubling to 10 min, jittered by Dramatiq.
DEFAULT_OPTIONS = {"max_retries": 12, "min_backoff": 1_000, "max_backoff": 600_000, "time_limit": 60_000}


def binder(model: type[BaseModel]) -> Callable[..., BaseModel]:
    """``bind(*args, **kwargs)``: the message's arguments as the contract ``model``, or :class:`BadMessage`.

    pydantic's ``validate_call`` maps the arguments onto a signature made of the model's fields, in
    order (too many, repeated, missing or unknown arguments are its errors); the model, the one
    statement of the contract, then validates the values strictly.
    """
    signature = inspect.Signature([
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Any,
                          default=inspect.Parameter.empty if field.is_required() else field.default)
        for name, field in model.model_fields.items()])

    def build(*args: Any, **kwargs: Any) -> BaseModel:
        return parse(model, **signature.bind(*args, **kwargs).arguments)  # already bound by validate_call

    build.__signature__ = signature  # type: ignore[attr-defined]  # read by inspect, hence by validate_call
    build.__annotations__ = {name: Any for name in signature.parameters}
    build.__name__ = build.__qualname__ = model.__name__
    validated = validate_call(build)

    def bind(*args: Any, **kwargs: Any) -> BaseModel:
        try:
            return validated(*args, **kwargs)
        except ValidationError as exc:
            raise BadMessage(f"{model.__name__}: {problems(exc)}") from None

    return bind


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """An actor as its module declares it; :func:`declare` puts it on a broker, with the process's Deps."""

    name: str
    queue: str
    fn: Callable[[Any, Deps], None]
    bind: Callable[..., BaseModel]
    options: dict[str, Any]

    def declare(self, broker: dramatiq.Broker, deps: Callable[[], Deps]) -> dramatiq.Actor:
        """The Dramatiq actor on ``broker``: checks the message against the contract, calls the service with
        ``deps()``, and turns gateway rate limits into quiet retries."""
        spec = self

        def run(*args: Any, **kwargs: Any) -> None:
            message = spec.bind(*args, **kwargs)
            try:
                spec.fn(message, deps())
            except GatewayRateLimited as exc:
                delay_ms = int((exc.retry_after or 5) * 1000)
                raise dramatiq.Retry(message=str(exc), delay=delay_ms) from exc

        run.__name__ = run.__qualname__ = self.name
        run.__doc__ = self.fn.__doc__
        return dramatiq.actor(run, broker=broker, actor_name=self.name, queue_name=self.queue, throws=PERMANENT,
                              **{**DEFAULT_OPTIONS, **self.options})


def recon_actor(*, name: str, queue: str, contract: type[BaseModel], **options: Any
                ) -> Callable[[Callable[[Any, Deps], None]], ActorSpec]:
    """Declare ``fn(message, deps)`` as the Dramatiq actor ``name`` on ``queue`` (bound to a broker later,
    by the entry point: nothing is registered at import)."""

    def decorate(fn: Callable[[Any, Deps], None]) -> ActorSpec:
        return ActorSpec(name, queue, fn, binder(contract), options)

    return decorate
