"""The gateway port: what every payment gateway adapter offers, in our own terms.

Only the standard library is imported here, so importing the port is free. Adapters
(``gateways.razorpay``, ``gateways.payglocal``) translate wire formats into these DTOs and
raise :mod:`gateways.errors` exceptions; nothing here knows about our database.

Every fact about a gateway is declared on its adapter (:class:`GatewayFacts`: name, label, webhook
media type, id prefixes, rate and poll defaults), and every adapter builds itself from settings
(:class:`GatewayFactory`), so adding a gateway is its own folder plus one line in
:mod:`gateways.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class RemoteStatus(StrEnum):
    """A payment attempt's status at the gateway, normalised across gateways."""

    CREATED = "created"  #: submitted, no result from the bank yet
    AUTHORIZED = "authorized"  #: approved, money blocked, not captured: not paid
    CAPTURED = "captured"  #: money taken: the only status that means paid
    FAILED = "failed"  #: attempt failed; may still be authorised late
    REFUNDED = "refunded"  #: captured, then (partly or fully) refunded
    UNKNOWN = "unknown"  #: a wire status we do not know: never treated as failed


class FailureKind(StrEnum):
    """Why a failed attempt failed, as far as the gateway tells us."""

    DECLINED = "declined"  #: bank or customer side: card declined, insufficient funds, wrong OTP
    WINDOW_CLOSED = "window_closed"  #: the customer cancelled or closed the checkout
    GATEWAY_ERROR = "gateway_error"  #: gateway or bank technical error mid-flow
    TIMED_OUT = "timed_out"  #: no answer from the bank in time (late authorisation possible)
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class RemotePayment:
    """One payment attempt as the gateway reports it."""

    gateway_payment_id: str
    gateway_order_id: str | None
    status: RemoteStatus
    amount_minor: int
    currency: str
    amount_refunded_minor: int = 0
    failure_kind: FailureKind | None = None
    failure_reason: str | None = None
    wire_status: str = ""
    created_at: int | None = None  #: when the attempt was created, Unix seconds (None: the gateway does not say)


@dataclass(frozen=True, slots=True)
class RemoteOrder:
    """An order at the gateway with every payment attempt made on it."""

    gateway_order_id: str
    amount_minor: int
    currency: str
    receipt: str | None
    wire_status: str
    payments: tuple[RemotePayment, ...] = ()
    checkout: Mapping[str, str] = field(default_factory=dict)


class RefundStatus(StrEnum):
    """A refund's status at the gateway (after-capture.md §2.2, §5.4), normalised."""

    PENDING = "pending"  #: asked for, not yet done (Razorpay ``pending``, PayGlocal ``INITIATED``/``REFUND_STARTED``)
    PROCESSED = "processed"  #: money sent back (Razorpay ``processed``, PayGlocal ``SENT_FOR_REFUND``)
    FAILED = "failed"  #: not refunded (Razorpay ``failed``, PayGlocal ``REQUEST_ERROR``/``SYSTEM_ERROR``)
    UNKNOWN = "unknown"  #: a wire status we do not know: treated as still pending, never as done


@dataclass(frozen=True, slots=True)
class RemoteRefund:
    """One refund of a payment as the gateway reports it."""

    gateway_refund_id: str
    gateway_payment_id: str
    amount_minor: int
    currency: str
    status: RefundStatus
    wire_status: str = ""
    #: Razorpay: False when the payment was never captured (an auto-refund of an authorisation); None: not said.
    payment_captured: bool | None = None
    #: the key we sent when we asked for it (Razorpay ``notes.idempotency_key``, PayGlocal ``merchantTxnId``)
    idempotency_key: str | None = None
    created_at: int | None = None


class DisputeStatus(StrEnum):
    """A dispute's (chargeback's) status at the gateway (after-capture.md §3.1)."""

    OPEN = "open"  #: raised; ``action_required`` is still open
    UNDER_REVIEW = "under_review"  #: evidence submitted
    WON = "won"
    LOST = "lost"  #: also an accepted dispute
    CLOSED = "closed"  #: fraud disputes only
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RemoteDispute:
    """One dispute of a payment as the gateway reports it."""

    gateway_dispute_id: str
    gateway_payment_id: str
    amount_minor: int
    currency: str
    status: DisputeStatus
    phase: str = ""  #: fraud | retrieval | chargeback | pre_arbitration | arbitration
    reason_code: str = ""
    respond_by: int | None = None  #: Unix seconds: answer before this or lose
    amount_deducted_minor: int = 0
    wire_status: str = ""
    created_at: int | None = None
    #: the snapshot announces the dispute (Razorpay ``payment.dispute.created``): delivered after a later move
    #: of the same phase (webhooks are not ordered), it is older than what we hold, whatever its status says
    opening: bool = False


@dataclass(frozen=True, slots=True)
class RemoteSettlement:
    """A settlement to our bank account as the gateway announces it (Razorpay ``settlement.processed``):
    ``amount_minor`` is what was paid out, after fees and tax."""

    gateway_settlement_id: str
    amount_minor: int
    fees_minor: int
    tax_minor: int
    utr: str | None
    status: str
    created_at: int | None = None


@dataclass(frozen=True, slots=True)
class SettlementLine:
    """One settled transaction of a settlement report (Razorpay's recon rows, an imported PayGlocal report):
    a payment credited to us, or a refund, adjustment or transfer debited. Integer minor units; ``fee_minor``
    includes ``tax_minor`` (Razorpay: "tax on the fee"). ``raw`` is the row as received."""

    entity_id: str
    kind: str  #: payment | refund | adjustment | transfer
    amount_minor: int
    currency: str
    fee_minor: int
    tax_minor: int
    credit_minor: int
    debit_minor: int
    settlement_id: str | None
    utr: str | None
    settled_at: int | None  #: Unix seconds
    payment_id: str | None = None  #: a refund's or transfer's payment
    gateway_order_id: str | None = None
    dispute_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class SettlementSource(Protocol):
    """A gateway that reports settlements by API (Razorpay). PayGlocal has none: its reports are imported."""

    def fetch_settlement_lines(self, year: int, month: int, day: int, *, skip: int,
                               count: int) -> tuple[SettlementLine, ...]:
        """One page of the transactions settled that day, in the gateway's order."""
        ...

    def settlement_days(self, moment: datetime) -> tuple[date, ...]:
        """The days whose settled transactions may include a settlement made at ``moment`` (those to pull)."""
        ...


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook: its dedupe id, type and the payment it describes (if any), and the refund or
    dispute it is about (``refund.*``, ``payment.dispute.*``)."""

    event_id: str
    event_type: str
    gateway_order_id: str | None
    payment: RemotePayment | None
    created_at: int | None = None
    refund: RemoteRefund | None = None
    dispute: RemoteDispute | None = None
    settlement: RemoteSettlement | None = None


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """A verified checkout callback: which payment on which order it points at."""

    gateway_order_id: str
    gateway_payment_id: str


class GatewayFacts(Protocol):
    """**Protocol:** what is true of a gateway whatever its configuration: class attributes of its adapter.

    Read-only here, so a plain class attribute (``label = "Razorpay"``) satisfies each of them.
    """

    @property
    def name(self) -> str:
        """Our name for the gateway: keys ``Deps.gateways``, regions, metrics labels and inbox rows."""
        ...

    @property
    def label(self) -> str:
        """How people know it: the checkout button says "Pay with {label}"."""
        ...

    @property
    def webhook_content_type(self) -> str:
        """The media type its webhook endpoint accepts (no parameters); anything else is kept and refused."""
        ...

    @property
    def id_prefixes(self) -> tuple[str, ...]:
        """How its ids begin (``"pay_"``); a path segment that starts so is an id (metrics label it ``{id}``)."""
        ...

    @property
    def default_rate_per_s(self) -> int:
        """Requests per second we allow ourselves across all processes, unless configured otherwise."""
        ...

    @property
    def min_poll_interval_s(self) -> int:
        """Fewest seconds between two polls of one order that the gateway asks for."""
        ...

    @property
    def reports_disputes(self) -> bool:
        """Whether the gateway tells of disputes (chargebacks) itself; if not, support records them by hand."""
        ...


class GatewayFactory(GatewayFacts, Protocol):
    """**Protocol:** an adapter class as :mod:`gateways.registry` sees it: its facts, and how it is built.

    ``settings`` is the service's flat settings object (``<name>_*`` fields) or the adapter's own
    settings model; gateways never import the service that configures them.
    """

    def enabled(self, settings: object) -> bool:
        """Whether ``settings`` configure this gateway at all."""
        ...

    def manual_capture_from(self, settings: object) -> bool:
        """Whether a new order on this gateway is created for manual capture, as ``settings`` say now."""
        ...

    def from_settings(
        self, settings: object, *, transport: Any = None, event_hooks: Any = None
    ) -> PaymentGateway:
        """The adapter configured by ``settings``; ``transport`` (an ``httpx.BaseTransport``) and
        ``event_hooks`` (``{"request": [...], "response": [...]}``) go to httpx, which the port does not import.

        Raises:
            ValueError: a setting the gateway needs is missing (:class:`gateways.settings.SettingsMissing`).
        """
        ...


@runtime_checkable
class PaymentGateway(GatewayFacts, Protocol):
    """What the state machine's inputs need from a gateway."""

    def create_order(
        self, *, receipt: str, amount_minor: int, currency: str, notes: Mapping[str, str], manual_capture: bool
    ) -> RemoteOrder:
        """Create (or find again, by receipt) the gateway order for one of our orders."""
        ...

    def min_amount_minor(self, currency: str, exponent: int) -> int:
        """The smallest amount the gateway accepts in ``currency``, in minor units (``exponent`` decimals)."""
        ...

    def fetch_order(self, gateway_order_id: str) -> RemoteOrder:
        """The order and all its payment attempts. Raises GatewayNotFound when unknown."""
        ...

    def fetch_attempts(self, gateway_order_id: str) -> tuple[RemotePayment, ...]:
        """Every payment attempt on the order, in **one** request: what a check needs (the order entity
        adds nothing the decision uses). Raises GatewayNotFound when the gateway does not know the order."""
        ...

    def fetch_payment(self, gateway_payment_id: str) -> RemotePayment:
        """One payment attempt. Raises GatewayNotFound when unknown."""
        ...

    def capture(self, gateway_payment_id: str, *, amount_minor: int, currency: str) -> RemotePayment:
        """Capture an authorised payment; capturing an already captured one returns it."""
        ...

    def create_refund(self, gateway_payment_id: str, *, amount_minor: int, currency: str, full: bool,
                      idempotency_key: str, reason: str) -> RemoteRefund:
        """Refund a captured payment, fully or partly. ``idempotency_key`` (10–40 of ``[A-Za-z0-9_-]``) makes
        a retry the same refund: Razorpay ``X-Refund-Idempotency``, PayGlocal ``merchantTxnId``.

        Raises:
            GatewayPermanent: the gateway refused (more than captured, already refunded, not captured).
            GatewayTransient: try again with the same key (timeouts, 5xx, "still in progress").
        """
        ...

    def fetch_refunds(self, gateway_payment_id: str, *, known: tuple[str, ...] = ()) -> tuple[RemoteRefund, ...]:
        """Every refund of the payment the gateway tells of (Razorpay: one request; PayGlocal: the status of
        each refund gid in ``known``, as it lists none)."""
        ...

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Check the signature over the raw bytes, then parse. Raises SignatureInvalid or MalformedEvent."""
        ...

    def parse_verified_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Parse a delivery that :meth:`verify_webhook` accepted when it was stored, without checking it
        again: signatures and freshness are intake rules (a rotated-out secret or a slow queue must not
        refuse what was genuine when it arrived). Raises MalformedEvent or SignatureInvalid if unreadable."""
        ...

    def claimed_order_id(self, raw_body: bytes) -> str | None:
        """The gateway order id an *unverified* webhook body names, or None; never raises.

        Used only to prompt a gateway check of an order we hold when a webhook's signature fails
        (a misconfigured secret must delay credits, never lose them)."""
        ...

    def verify_callback(self, gateway_order_id: str, gateway_payment_id: str, signature: str) -> CallbackResult:
        """Check a checkout callback (payment id + the gateway's signature or token) against the order id
        *we* stored. Raises SignatureInvalid. A valid callback is a prompt to check, never proof of payment."""
        ...
