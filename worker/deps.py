"""What services need, built once per process from Settings and passed in as ``deps``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.session import make_engine, make_session_factory
from gateways.port import PaymentGateway
from worker.clock import Clock, SystemClock
from worker.coordination import Coordination
from worker.gateway_guard import GuardedGateway
from worker.domain.order_state import Policy
from worker.domain.pricing import PriceList
from worker.domain.schedule import Schedule
from worker.settings import Settings


@dataclass
class Deps:
    coordination: Coordination
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    gateways: dict[str, PaymentGateway]
    clock: Clock
    policy: Policy
    prices: PriceList
    schedule: Schedule

    def gateway(self, name: str) -> PaymentGateway:
        try:
            return self.gateways[name]
        except KeyError:
            raise LookupError(f"no gateway named {name!r} is configured") from None


def build_gateways(settings: Settings, *, transport=None) -> dict[str, PaymentGateway]:
    from gateways.razorpay import RazorpayGateway
    from worker.gateway_metrics import metrics_hooks

    razorpay = RazorpayGateway(
        key_id=settings.razorpay_key_id,
        key_secret=settings.razorpay_key_secret.get_secret_value(),
        webhook_secrets=settings.webhook_secrets(),
        base_url=settings.razorpay_base_url,
        transport=transport,
        event_hooks=metrics_hooks("razorpay"),
    )
    gateways: dict[str, PaymentGateway] = {razorpay.name: razorpay}
    if settings.payglocal_merchant_id:
        gateways["payglocal"] = build_payglocal(settings, transport=transport)
    return gateways


def build_payglocal(settings: Settings, *, transport=None) -> PaymentGateway:
    from gateways.payglocal import PayGlocalGateway
    from worker.gateway_metrics import metrics_hooks

    missing = [name for name in ("payglocal_private_key_pem", "payglocal_private_kid", "payglocal_public_kid",
                                 "payglocal_callback_url") if not getattr(settings, name)]
    if missing or not settings.payglocal_public_keys:
        raise ValueError(f"PayGlocal is enabled (merchant id set) but these settings are missing: "
                         f"{', '.join(missing + ([] if settings.payglocal_public_keys else ['payglocal_public_keys']))}")
    return PayGlocalGateway(
        merchant_id=settings.payglocal_merchant_id, private_key_pem=settings.payglocal_private_key_pem.get_secret_value(),
        private_kid=settings.payglocal_private_kid, payglocal_public_keys=settings.payglocal_public_keys,
        payglocal_public_kid=settings.payglocal_public_kid, base_url=settings.payglocal_base_url,
        callback_url=settings.payglocal_callback_url, transport=transport,
        callback_max_age_s=settings.payglocal_callback_max_age_s, event_hooks=metrics_hooks("payglocal"))


def guard(gateways: dict[str, PaymentGateway], settings: Settings, coordination: Coordination) -> dict[str, GuardedGateway]:
    """Wrap each gateway in the shared rate limit and circuit breaker."""
    return {name: GuardedGateway(gateway, backend=coordination.rate_backend, namespace=settings.broker_namespace,
                                 rate_per_s=settings.gateway_rate_per_s.get(name, 10), sweep_share=settings.sweep_share,
                                 breaker_storage=coordination.breaker_storage(name), fail_max=settings.breaker_fail_max,
                                 reset_timeout_s=settings.breaker_reset_s)
            for name, gateway in gateways.items()}


def build_deps(settings: Settings, *, clock: Clock | None = None, gateways: dict[str, PaymentGateway] | None = None) -> Deps:
    engine = make_engine(settings.database_url)
    coordination = Coordination(settings)
    return Deps(
        coordination=coordination,
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        gateways=guard(gateways if gateways is not None else build_gateways(settings), settings, coordination),
        clock=clock or SystemClock(),
        policy=Policy(abandon_after=timedelta(seconds=settings.abandon_after_s),
                      late_payment_horizon=timedelta(seconds=settings.late_payment_horizon_s)),
        prices=PriceList(settings.credit_price_minor, settings.pro_price_minor, settings.min_credits,
                         settings.max_credits, settings.max_custom_amount_minor),
        schedule=Schedule.from_seconds(settings.check_backoff_s, settings.closed_check_every_s),
    )


_current: Deps | None = None


def get_deps() -> Deps:
    """The process's Deps, built from the environment on first use."""
    global _current
    if _current is None:
        from worker.settings import get_settings

        _current = build_deps(get_settings())
    return _current


def set_deps(deps: Deps | None) -> None:
    """Install the Deps that actors and endpoints use (tests, the demo)."""
    global _current
    _current = deps
