"""Configuration, read from the environment once (prefix ``RECON_``) and passed down.

The defaults are the embedded demo set-up: a SQLite file, an in-process broker and the
gateway simulator's test keys. Production sets ``RECON_DATABASE_URL`` (Postgres),
``RECON_BROKER_URL`` (Redis or RabbitMQ) and the real gateway keys.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateways import registry
from gateways.payglocal.settings import DEFAULT_CALLBACK_MAX_AGE_S, SANDBOX_BASE_URL
from gateways.razorpay.settings import DEFAULT_BASE_URL as RAZORPAY_BASE_URL
from worker.domain.order_state import Policy
from worker.domain.schedule import DEFAULT_BACKOFF, Schedule


class Region(BaseModel):
    """What a billing region decides: the currency, the tax rate and the gateway."""

    currency: str
    tax_rate_bp: int  #: tax in basis points: 1800 = 18 %
    gateway: str


DEFAULT_REGIONS = {
    "IN": Region(currency="INR", tax_rate_bp=1800, gateway="razorpay"),
    "US": Region(currency="USD", tax_rate_bp=0, gateway="payglocal"),
    "GB": Region(currency="GBP", tax_rate_bp=2000, gateway="payglocal"),
}


class EventEndpoint(BaseModel):
    """Where order events go (Standard Webhooks): a name for the delivery log, a URL, and the signing
    secrets (``whsec_`` + base64). Every secret listed signs each delivery, so a secret is rotated by adding
    the new one, letting the receiver switch, then removing the old one. ``since``: a new endpoint gets only
    the events written from then on."""

    name: str = Field(pattern=r"^[a-z0-9_-]{1,64}$")
    url: str = Field(pattern=r"^https?://")
    secrets: list[SecretStr] = Field(min_length=1)
    since: datetime | None = None


class ConsoleAccount(BaseModel):
    """A named person who signs in to the support console: their roles and their password's Argon2 hash
    (``recon console hash-password`` makes one; the password itself is never configured)."""

    roles: list[Literal["viewer", "support", "reviewer"]] = Field(min_length=1)
    password_hash: SecretStr = Field(description="$argon2id$…")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECON_", frozen=True, extra="ignore")

    database_url: str = "sqlite:///recon-demo.db"
    broker_url: str = "stub://"
    broker_namespace: str = "recon"
    #: A worker whose process makes no Redis call for this long is presumed dead (ms).
    broker_heartbeat_timeout_ms: int = 15_000
    #: Out of 1,000,000 broker calls, how many also requeue messages of dead workers.
    broker_maintenance_chance: int = 50_000
    #: Redis only: the longest an idle consumer of the webhook and priority queues waits between polls (ms).
    #: It wakes at once when a message is sent to them (a doorbell token, worker.broker); the poll only fetches
    #: what came without one (a sender of an older release, a token lost to a Redis error).
    broker_hot_poll_ms: int = Field(default=100, ge=1, le=1000)

    #: Redis for rate limits, circuit breakers, the scheduler lock and coalescing; defaults to a redis:// broker URL.
    redis_url: str | None = None
    #: A payment's later webhooks send no message while one about it is queued (its worker gathers them). Set
    #: false on the web while workers older than this option still run: they refuse the message's extra argument.
    coalesce_webhooks: bool = True

    #: Requests per second allowed to each gateway, across all processes (defaults: each adapter's).
    gateway_rate_per_s: dict[str, int] = {adapter.name: adapter.default_rate_per_s for adapter in registry.ADAPTERS}
    #: Share of that rate sweeps may use; the rest is kept for support and billing.
    sweep_share: float = 0.8
    #: Transient failures in a row that open a gateway's circuit, and how long it stays open.
    breaker_fail_max: int = 5
    breaker_reset_s: int = 30
    #: Fewest seconds between two polls of one transaction (defaults: what each gateway asks; PayGlocal 5).
    min_poll_interval_s: dict[str, int] = {adapter.name: adapter.min_poll_interval_s for adapter in registry.ADAPTERS}
    #: How often the scheduler sweeps, and most orders one round takes per gateway.
    sweep_interval_s: float = 2.0
    sweep_batch_max: int = 2_000
    #: How long a claimed order or a running check keeps others away (seconds).
    check_lease_s: int = 120

    #: Named bearer tokens for the support and billing endpoints (JSON object name → token).
    api_tokens: dict[str, SecretStr] = {}
    #: What each named token may do (JSON object name → scopes: billing, support, reviewer). A token with
    #: no entry may do everything (and ``recon web`` warns about it at start): list every token in production.
    api_token_scopes: dict[str, list[Literal["billing", "support", "reviewer", "finance"]]] = {}

    #: The support console's people (JSON object name → :class:`ConsoleAccount`); none: nobody can sign in.
    console_accounts: dict[str, ConsoleAccount] = {}
    #: Signs the console's session cookies; the same on every web process. Unset: the console is not served.
    console_secret: SecretStr | None = None
    #: Session cookies only over HTTPS (leave on in production; the demo and tests run on plain HTTP).
    console_cookie_secure: bool = True
    #: A console session ends this long after sign-in (seconds).
    console_session_s: int = 8 * 3600

    log_level: str = "INFO"
    log_json: bool = True

    #: Gateway settings: each adapter reads its ``<name>_*`` fields (``gateways/<name>/settings.py``, which
    #: states the defaults); these flat fields are the environment names (``RECON_RAZORPAY_KEY_ID``).
    razorpay_base_url: str = RAZORPAY_BASE_URL
    razorpay_key_id: str = "rzp_test_sim00000000001"
    razorpay_key_secret: SecretStr = SecretStr("sim_key_secret_0000000001")
    razorpay_webhook_secret: SecretStr = SecretStr("sim_webhook_secret_000001")
    #: The previous webhook secret, accepted too while a rotation is under way.
    razorpay_webhook_secret_previous: SecretStr | None = None
    razorpay_manual_capture: bool = False

    #: PayGlocal: sandbox by default; production's host must be set explicitly (PayGlocal's own
    #: documents name two). The gateway is enabled when a merchant id is set.
    payglocal_base_url: str = SANDBOX_BASE_URL
    payglocal_merchant_id: str | None = None
    payglocal_private_key_pem: SecretStr | None = None
    payglocal_private_kid: str | None = None
    #: PayGlocal's public keys by kid (several during a rotation), PEM.
    payglocal_public_keys: dict[str, str] = {}
    #: The kid of the PayGlocal key request bodies are encrypted to.
    payglocal_public_kid: str | None = None
    #: Our public URL that the shopper's browser posts the callback form to.
    payglocal_callback_url: str | None = None
    payglocal_callback_max_age_s: int = DEFAULT_CALLBACK_MAX_AGE_S

    regions: dict[str, Region] = DEFAULT_REGIONS
    #: Price of one credit, per currency, in minor units.
    credit_price_minor: dict[str, int] = {"INR": 200, "USD": 3, "GBP": 2}
    #: Price of a year of Pro, per currency, in minor units.
    pro_price_minor: dict[str, int] = {"INR": 4_999_900, "USD": 59_900, "GBP": 49_900}
    min_credits: int = 1_000
    max_credits: int = 10_000_000
    max_custom_amount_minor: int = 100_000_000

    #: Orders with nothing captured this long after creation are closed (seconds).
    abandon_after_s: int = int(Policy().abandon_after.total_seconds())
    #: How long after creation a late authorisation can still arrive (seconds).
    late_payment_horizon_s: int = int(Policy().late_payment_horizon.total_seconds())
    #: A second captured payment on a credited order: "refund" it automatically (audited) or send to "review".
    duplicate_payment_policy: Literal["refund", "review"] = "refund"
    #: Reversals (refunds, chargebacks) may take a balance below zero; false records the shortfall instead.
    allow_negative_balance: bool = False
    #: Order events to the billing backend: a JSON list of endpoints (:class:`EventEndpoint`).
    event_endpoints: list[EventEndpoint] = []
    #: Attempts per event and endpoint before its delivery is dead (back-off 5 s doubling, at most 1 h apart).
    event_max_attempts: int = 12
    #: Seconds an endpoint has to answer one delivery.
    event_timeout_s: float = 10.0
    #: Settlement reconciliation: how long after its payment each gateway's money is expected in the bank
    #: (Razorpay T+2 working days, PayGlocal 1-3 business days: after-capture.md §4.3, §7, in calendar seconds
    #: with weekends), plus the slack before a credited payment missing from every settlement is reported.
    settlement_expected_s: dict[str, int] = {"razorpay": 4 * 86_400, "payglocal": 5 * 86_400}
    settlement_slack_s: int = 2 * 86_400
    #: Payments credited before this are not expected in settlements (unset: from the earliest payment a
    #: settlement row matched, per gateway: reconciliation starts where the gateway's reports start).
    settlement_since: datetime | None = None
    #: How often the scheduler pulls settlement rows (seconds), and how many days back a first pull starts.
    settlement_pull_every_s: int = 3_600
    settlement_first_days: int = 7
    #: The PayGlocal report's column mapping (TOML); unset: ``gateways/payglocal/settlement_report.toml``.
    payglocal_report_mapping: str | None = None
    #: Back-off between gateway checks of an open order (seconds); the last step repeats.
    check_backoff_s: list[int] = list(DEFAULT_BACKOFF)
    #: How often failed and abandoned orders are still checked, until the late-payment horizon (seconds).
    closed_check_every_s: int = int(Schedule().closed_every.total_seconds())
    #: Largest webhook or API body accepted (bytes).
    max_body_bytes: int = 256 * 1024
    #: Database connections each process keeps (and as many again in overflow): at least its worker threads,
    #: or connections are opened and closed per message.
    db_pool_size: int = 10

    @property
    def payglocal_manual_capture(self) -> bool:
        """PayGlocal has no capture setting of its own: its orders follow ``razorpay_manual_capture``, as they
        always have (the chaos run's manual-capture ``recon web`` relies on it). Read by
        ``PayGlocalGateway.manual_capture_from``; a field of its own would be a behaviour change."""
        return self.razorpay_manual_capture

