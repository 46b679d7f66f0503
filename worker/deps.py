"""What services need, built once per process by its entry point (:func:`build_deps`) and passed in
as ``deps``: there is no process-wide default, so every entry point and test says which it uses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.session import make_engine, make_session_factory
from gateways import registry
from gateways.port import PaymentGateway
from worker.clock import Clock, SystemClock
from worker.coordination import Coordination
from worker.domain.order_state import Policy
from worker.domain.pricing import PriceList
from worker.domain.schedule import Schedule
from worker.gateway_guard import GuardedGateway, RateLimitedTransport, RateSlots
from worker.gateway_metrics import metrics_hooks
from worker.services.outbox import Endpoint
from worker.services.unit import Rules, UnitOfWork
from worker.settings import Region, Settings


@dataclass(frozen=True, slots=True)
class CheckRules:
    """How the checks of one order are guarded: the lease a check holds, and the least time a gateway
    wants between two polls of one transaction (PayGlocal asks for 5 s)."""

    lease_s: int
    min_poll_interval_s: Mapping[str, int]

    def min_gap(self, gateway: str) -> timedelta:
        return timedelta(seconds=self.min_poll_interval_s.get(gateway, 0))


@dataclass(frozen=True, slots=True)
class SweepRules:
    """How much one sweep round may claim: each gateway's rate, the share sweeps may use, the interval."""

    rate_per_s: Mapping[str, int]
    share: float
    interval_s: float
    batch_max: int

    def round_budget(self, gateway: str) -> int:
        """Orders one round may claim for a gateway: what its sweep rate allows until the next round (×2)."""
        per_round = self.rate_per_s.get(gateway, 10) * self.share * self.interval_s
        return max(1, min(self.batch_max, int(per_round * 2)))


@dataclass
class Deps:
    coordination: Coordination
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    gateways: dict[str, GuardedGateway]  #: each adapter behind the shared rate limit and circuit breaker
    clock: Clock
    policy: Policy
    prices: PriceList
    schedule: Schedule
    checks: CheckRules
    sweep: SweepRules
    regions: Mapping[str, Region]  #: billing region → currency, tax rate and gateway
    #: Sends committed order events to their endpoints at once (:func:`worker.main.build_runtime` sets it once
    #: the actors exist); None: the scheduler's next round sends them.
    deliver_now: Callable[[list[str]], None] | None = None
    #: Enqueues a support-priority recheck of an order (settled money without a credit); None: only logged,
    #: and the order's settlement row keeps saying so.
    recheck_now: Callable[[str], None] | None = None

    def unit(self) -> UnitOfWork:
        """A new unit of work (one transaction) over this process's database."""
        return UnitOfWork(self.sessions, Rules(self.clock.now, self.policy, self.schedule, self.endpoints,
                                                self.deliver_now))

    @cached_property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Where order events go, read once from the (frozen) settings, not per unit of work."""
        return tuple(Endpoint(e.name, e.since) for e in self.settings.event_endpoints)

    def gateway(self, name: str) -> GuardedGateway:
        try:
            return self.gateways[name]
        except KeyError:
            raise LookupError(f"no gateway named {name!r} is configured") from None


def rate_slots(name: str, settings: Settings, coordination: Coordination) -> RateSlots:
    """The gateway's share of the shared request rate (Redis when configured, else this process's)."""
    return RateSlots(name, client=coordination.client, namespace=settings.broker_namespace,
                     rate_per_s=settings.gateway_rate_per_s.get(name, 10), sweep_share=settings.sweep_share)


def build_gateways(settings: Settings, *, transport: httpx.BaseTransport | None = None,
                   slots: Callable[[str], RateSlots] | None = None) -> dict[str, PaymentGateway]:
    """Every gateway the settings enable (:mod:`gateways.registry`), each timed by the gateway metrics and,
    given ``slots``, taking one rate-limit slot per HTTP request at its transport."""
    built: dict[str, PaymentGateway] = {}
    for factory in registry.ADAPTERS:
        if not factory.enabled(settings):
            continue
        wired = transport
        if slots is not None:
            wired = RateLimitedTransport(transport or httpx.HTTPTransport(), slots(factory.name))
        built[factory.name] = factory.from_settings(settings, transport=wired, event_hooks=metrics_hooks(factory.name))
    return built


def guard(gateways: Mapping[str, PaymentGateway], settings: Settings,
          coordination: Coordination) -> dict[str, GuardedGateway]:
    """Put each gateway's sweep calls behind the shared circuit breaker."""
    return {name: GuardedGateway(gateway, breaker_storage=coordination.breaker_storage(name),
                                 fail_max=settings.breaker_fail_max, reset_timeout_s=settings.breaker_reset_s)
            for name, gateway in gateways.items()}


def build_deps(settings: Settings, *, clock: Clock | None = None,
               gateways: Mapping[str, PaymentGateway] | None = None) -> Deps:
    """The process's Deps. ``gateways`` replaces the configured ones (tests: fakes; no rate slots then)."""
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    coordination = Coordination(settings)
    return Deps(
        coordination=coordination,
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        gateways=guard(gateways if gateways is not None else build_gateways(
            settings, slots=lambda name: rate_slots(name, settings, coordination)), settings, coordination),
        clock=clock or SystemClock(),
        policy=Policy(abandon_after=timedelta(seconds=settings.abandon_after_s),
                      late_payment_horizon=timedelta(seconds=settings.late_payment_horizon_s),
                      duplicate_payment=settings.duplicate_payment_policy,
                      allow_negative_balance=settings.allow_negative_balance),
        prices=PriceList(settings.credit_price_minor, settings.pro_price_minor, settings.min_credits,
                         settings.max_credits, settings.max_custom_amount_minor),
        schedule=Schedule.from_seconds(settings.check_backoff_s, settings.closed_check_every_s),
        checks=CheckRules(settings.check_lease_s, dict(settings.min_poll_interval_s)),
        sweep=SweepRules(dict(settings.gateway_rate_per_s), settings.sweep_share, settings.sweep_interval_s,
                         settings.sweep_batch_max),
        regions=dict(settings.regions),
    )
