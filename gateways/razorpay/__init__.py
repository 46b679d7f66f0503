"""The Razorpay adapter: :class:`RazorpayGateway` implements :class:`gateways.port.PaymentGateway`.

It combines three modules: :mod:`.client` (HTTP and error mapping), :mod:`.mapping` (JSON -> DTOs)
and :mod:`.signature` (HMAC checks). Facts come from docs/gateways/razorpay.md.

Idempotency of writes:

- ``create_order`` is not retried in-call. If it fails with ``GatewayTransient`` (timeout, 5xx, lost
  response) the order may or may not exist, so the adapter looks it up by ``receipt``
  (``GET /v1/orders?receipt=``) and returns it when found; otherwise the original error is raised
  and the caller retries later *with the same receipt*, which finds the order next time.
- ``capture`` of an already captured payment (Razorpay answers 400 "already been captured")
  re-fetches the payment and returns it.
- ``create_refund`` sends ``X-Refund-Idempotency`` (and the key in ``notes.idempotency_key``), so it is
  retried in-call like a GET: a repeat with the same key and body is the same refund (after-capture.md §2.1).

Where the docs contradict each other, the safer reading (after-capture.md):

- "Different request with the same idempotency key" is a 409 in one table and a 400 ``BAD_REQUEST_ERROR``
  in the sample (§2.1): either way GatewayPermanent, never retried. Only the 409 "…still in progress" and
  the 500 "Failed to fetch idempotency record" are retried.
- A refund's state is ``refund.status``, not the event name: the ``refund.created`` sample already says
  ``processed`` (§2.4). ``processed`` is not "customer credited" (§0.2), only the strongest state there is.
- Refunds are created at ``speed: normal``: ``optimum`` may charge an instant-refund fee (§2.5).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx

from gateways.base import GatewayAdapter, refund_request
from gateways.errors import GatewayError, GatewayPermanent, GatewayTransient, MalformedEvent, SignatureInvalid
from gateways.http import DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT, EventHooks
from gateways.port import CallbackResult, RemoteOrder, RemotePayment, RemoteRefund, SettlementLine, WebhookEvent
from gateways.razorpay import mapping, signature
from gateways.razorpay.client import RazorpayClient, is_already_captured
from gateways.razorpay.settings import DEFAULT_BASE_URL, RazorpaySettings

__all__ = ["RazorpayGateway", "RazorpaySettings"]

#: Razorpay's limit on ``receipt`` (docs §2).
MAX_RECEIPT_LENGTH = 40

#: Per-order capture settings (docs §3.4): minutes before an auto-capture window closes (minimum 12),
#: and before an uncaptured authorisation is auto-refunded (maximum 7200 = 5 days).
DEFAULT_AUTOMATIC_EXPIRY_MINUTES = 12
DEFAULT_MANUAL_EXPIRY_MINUTES = 7200

#: How much of the reason goes into ``notes.reason`` (a note value may be 256 characters).
MAX_REFUND_REASON_LENGTH = 250
#: The recon endpoint's largest page (after-capture.md §4.2: count 1..1000)
RECON_PAGE_MAX = 1000
#: India's time (no daylight saving): the likely zone of the recon endpoint's ``day``, which is UNDOCUMENTED
#: (after-capture.md §4.2). Razorpay is an Indian gateway and its dashboard's days are IST.
IST = timezone(timedelta(hours=5, minutes=30), "IST")

SIGNATURE_HEADER = "x-razorpay-signature"
EVENT_ID_HEADER = "x-razorpay-event-id"


class RazorpayGateway(GatewayAdapter):
    """Razorpay orders, payments, captures, webhooks and checkout callbacks, in the port's terms."""

    _client: RazorpayClient

    # Facts the port declares (gateways.port.GatewayFacts) ------------------------------------

    settings_prefix = RazorpaySettings.PREFIX
    name = "razorpay"
    label = "Razorpay"
    #: Webhooks are a JSON envelope posted as is (razorpay.md §5.2).
    webhook_content_type = "application/json"
    #: Razorpay's ids: ``order_…``, ``pay_…``, ``rfnd_…``, payment links ``plink_…``, customers ``cust_…``.
    id_prefixes = ("order_", "pay_", "rfnd_", "plink_", "cust_")
    #: Requests per second we allow ourselves (across all processes) unless configured otherwise.
    default_rate_per_s = 50
    #: Razorpay asks for no pause between two fetches of one order.
    min_poll_interval_s = 0
    #: disputes come by webhook (``payment.dispute.*``, after-capture.md §3.2)
    reports_disputes = True

    @classmethod
    def enabled(cls, settings: object) -> bool:
        """Razorpay is always built: its settings have working (simulator) defaults."""
        return True

    @classmethod
    def from_settings(
        cls,
        settings: object,
        *,
        transport: httpx.BaseTransport | None = None,
        event_hooks: EventHooks | None = None,
    ) -> RazorpayGateway:
        """The adapter configured by ``settings``: a :class:`RazorpaySettings`, or a flat settings object
        with ``razorpay_*`` fields (``worker.settings.Settings``).

        Raises:
            SettingsMissing: the key pair or the webhook secret is missing (a ``ValueError``).
        """
        own = settings if isinstance(settings, RazorpaySettings) else RazorpaySettings.from_flat(settings)
        return cls(key_id=own.key_id, key_secret=own.key_secret, webhook_secrets=own.webhook_secrets,
                   base_url=own.base_url, manual_capture_default=own.manual_capture, transport=transport,
                   event_hooks=event_hooks)

    def __init__(
        self,
        *,
        key_id: str,
        key_secret: str,
        webhook_secrets: Sequence[str],
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.BaseTransport | None = None,
        manual_capture_default: bool = False,
        key_secrets: Sequence[str] | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        event_hooks: EventHooks | None = None,
        retry_attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        automatic_expiry_minutes: int = DEFAULT_AUTOMATIC_EXPIRY_MINUTES,
        manual_expiry_minutes: int = DEFAULT_MANUAL_EXPIRY_MINUTES,
    ):
        """Configure the adapter; nothing is sent until a method is called.

        Args:
            key_id, key_secret: the API key pair (HTTP Basic auth; the secret also signs callbacks).
            webhook_secrets: the Dashboard webhook secret(s), several during a rotation; at least one.
            manual_capture_default: used when ``create_order`` gets ``manual_capture=None``.
            key_secrets: secrets accepted for callback signatures (rotation); defaults to ``[key_secret]``.
            transport: ``None`` in production, ``httpx.MockTransport`` in tests.
            timeout, event_hooks: passed to httpx (see :func:`gateways.http.build_client`).
            retry_attempts, sleep: the bounded in-call retry of GETs; ``sleep`` is injected in tests.
            automatic_expiry_minutes, manual_expiry_minutes: the per-order ``capture_options``.

        Raises:
            ValueError: no webhook secret or no key secret was given.
        """
        self._webhook_secrets = tuple(secret for secret in webhook_secrets if secret)
        if not self._webhook_secrets:
            raise ValueError("at least one Razorpay webhook secret is required; unsigned webhooks are refused")
        self._key_secrets = tuple(secret for secret in (key_secrets or [key_secret]) if secret)
        if not self._key_secrets:
            raise ValueError("at least one Razorpay key secret is required to verify callbacks")
        self._key_id = key_id
        self._manual_capture_default = manual_capture_default
        self._automatic_expiry_minutes = automatic_expiry_minutes
        self._manual_expiry_minutes = manual_expiry_minutes
        self._client = RazorpayClient(
            key_id=key_id,
            key_secret=key_secret,
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            event_hooks=event_hooks,
            retry_attempts=retry_attempts,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"RazorpayGateway(key_id={self._key_id!r})"

    # Orders and payments ---------------------------------------------------------------

    def create_order(
        self,
        *,
        receipt: str,
        amount_minor: int,
        currency: str,
        notes: Mapping[str, str],
        manual_capture: bool | None = None,
    ) -> RemoteOrder:
        """Create the Razorpay order for one of ours, or find it again by ``receipt`` after a lost response.

        Raises:
            GatewayTransient: the create failed and no order with this receipt exists (yet).
            GatewayPermanent: Razorpay refused the order, or the receipt belongs to a different amount.
        """
        if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
            raise TypeError(f"amount_minor must be an int in minor units, got {type(amount_minor).__name__}")
        if not receipt or len(receipt) > MAX_RECEIPT_LENGTH:
            raise ValueError(f"receipt must be 1 to {MAX_RECEIPT_LENGTH} characters, got {len(receipt or '')}")
        manual = self._manual_capture_default if manual_capture is None else manual_capture
        body = {
            "amount": amount_minor,
            "currency": currency.upper(),
            "receipt": receipt,
            "notes": dict(notes),
            "payment": self._capture_settings(manual),
        }
        try:
            entity = self._client.create_order(body)
        except GatewayTransient as create_error:
            entity = self._find_lost_order(receipt, create_error)
        with _api_shape("create_order"):
            order = mapping.order_from_json(entity)
        if order.amount_minor != amount_minor or order.currency != currency.upper():
            raise GatewayPermanent(
                f"razorpay order {order.gateway_order_id} for receipt {receipt!r} is for "
                f"{order.amount_minor} {order.currency}, not {amount_minor} {currency}"
            )
        return dataclasses.replace(order, checkout=self._checkout(order))

    def min_amount_minor(self, currency: str, exponent: int) -> int:
        """One major unit: "The amount must be at least INR 1.00" (razorpay.md §2)."""
        return 10**exponent

    def fetch_order(self, gateway_order_id: str) -> RemoteOrder:
        """The order and every payment attempt on it (``GET /v1/orders/{id}`` + ``/payments``).

        Raises:
            GatewayNotFound: Razorpay does not know the id.
            GatewayPermanent: e.g. the order is older than 180 days ("please use reports").
        """
        entity = self._client.fetch_order(gateway_order_id)
        collection = self._client.fetch_order_payments(gateway_order_id)
        with _api_shape("fetch_order"):
            order = mapping.order_from_json(entity, mapping.payments_from_collection(collection))
        return dataclasses.replace(order, checkout=self._checkout(order))

    def fetch_attempts(self, gateway_order_id: str) -> tuple[RemotePayment, ...]:
        """Every attempt on the order, failed ones included: ``GET /v1/orders/{id}/payments`` alone, the call
        razorpay.md §2 names for reconciliation. An unknown order id answers 400 "The id provided does not
        exist" there as on the order itself (§0.7), which the client maps to GatewayNotFound."""
        collection = self._client.fetch_order_payments(gateway_order_id)
        with _api_shape("fetch_attempts"):
            return mapping.payments_from_collection(collection)

    def fetch_payment(self, gateway_payment_id: str) -> RemotePayment:
        """One payment attempt (``GET /v1/payments/{id}``). Raises GatewayNotFound when unknown."""
        entity = self._client.fetch_payment(gateway_payment_id)
        with _api_shape("fetch_payment"):
            return mapping.payment_from_json(entity)

    def capture(self, gateway_payment_id: str, *, amount_minor: int, currency: str) -> RemotePayment:
        """Capture an authorised payment; an already captured one is re-fetched and returned."""
        try:
            entity = self._client.capture(gateway_payment_id, amount_minor, currency)
        except GatewayPermanent as exc:
            if is_already_captured(exc):
                return self.fetch_payment(gateway_payment_id)
            raise
        with _api_shape("capture"):
            return mapping.payment_from_json(entity)

    # Refunds ---------------------------------------------------------------------------

    def create_refund(self, gateway_payment_id: str, *, amount_minor: int, currency: str, full: bool,
                      idempotency_key: str, reason: str) -> RemoteRefund:
        """``POST /v1/payments/{id}/refund`` at normal speed; ``full`` omits the amount (Razorpay refunds
        what is left). Razorpay takes no currency here: the payment's is used.

        Raises:
            GatewayPermanent: Razorpay refused (more than captured, fully refunded already, not captured,
                a different request with the same key), with its description.
            GatewayNotFound: Razorpay does not know the payment.
            GatewayTransient: retries used up (timeouts, 5xx, "still in progress"): try again with the same key.
        """
        refund_request(amount_minor, idempotency_key)
        body: dict[str, Any] = {} if full else {"amount": amount_minor}
        body["speed"] = "normal"
        body["notes"] = {"reason": (reason or "")[:MAX_REFUND_REASON_LENGTH], "idempotency_key": idempotency_key}
        entity = self._client.create_refund(gateway_payment_id, body, idempotency_key)
        with _api_shape("create_refund"):
            refund = mapping.refund_from_json(entity)
        return dataclasses.replace(refund, idempotency_key=refund.idempotency_key or idempotency_key)

    def fetch_refunds(self, gateway_payment_id: str, *, known: tuple[str, ...] = ()) -> tuple[RemoteRefund, ...]:
        """Every refund of the payment, ours and Razorpay's own (auto-refunds, lost disputes), in one
        ``GET /v1/payments/{id}/refunds?count=100``; ``known`` is not needed. ``payment_captured`` is None
        here (no payment entity comes with them). Raises GatewayNotFound when the payment is unknown."""
        collection = self._client.fetch_refunds(gateway_payment_id)
        with _api_shape("fetch_refunds"):
            return mapping.refunds_from_collection(collection)

    def fetch_settlement_lines(self, year: int, month: int, day: int, *, skip: int,
                               count: int) -> tuple[SettlementLine, ...]:
        """One page (``count`` ≤ 1000 from ``skip``) of the payments, refunds, transfers and adjustments settled
        that day (after-capture.md §4.2). The default page size is undocumented, so ours is always sent."""
        if not 1 <= count <= RECON_PAGE_MAX:
            raise ValueError(f"count must be 1..{RECON_PAGE_MAX}")
        collection = self._client.fetch_settlement_recon(year, month, day, count=count, skip=skip)
        with _api_shape("fetch_settlement_recon"):
            return mapping.recon_lines_from_collection(collection)

    def settlement_days(self, moment: datetime) -> tuple[date, ...]:
        """The recon day's zone is undocumented: the moment's day in IST and in UTC (one day from 18:30 UTC
        to midnight UTC, when IST is already on the next), both pulled: the safer reading."""
        return tuple(sorted({moment.astimezone(IST).date(), moment.astimezone(UTC).date()}))

    # Signed inputs ---------------------------------------------------------------------

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Check ``X-Razorpay-Signature`` over the raw body bytes, then parse the event.

        Raises:
            SignatureInvalid: the signature header is missing or matches no webhook secret.
            MalformedEvent: ``X-Razorpay-Event-Id`` is missing, or the body cannot be parsed.
        """
        if not isinstance(raw_body, (bytes, bytearray, memoryview)):
            raise TypeError("verify_webhook needs the raw body bytes, not a decoded or parsed body")
        body = bytes(raw_body)
        lowered = {str(key).lower(): value for key, value in headers.items()}
        sent = lowered.get(SIGNATURE_HEADER)
        if not sent or not sent.strip():
            raise SignatureInvalid("webhook has no X-Razorpay-Signature header")
        if not signature.matches_any(self._webhook_secrets, body, sent):
            raise SignatureInvalid("X-Razorpay-Signature does not match the body under any configured webhook secret")
        return self.parse_verified_webhook(body, headers)

    def parse_verified_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Parse a delivery whose signature was checked when it was stored (a webhook secret rotated out
        since must not refuse it). Raises MalformedEvent: no ``X-Razorpay-Event-Id``, or an unparseable body.

        The event id is not covered by the signature: a signed body re-sent with a fresh id parses as a new
        event, which the state machine makes harmless (it decides on each payment's freshest status)."""
        lowered = {str(key).lower(): value for key, value in headers.items()}
        event_id = lowered.get(EVENT_ID_HEADER)
        if not event_id or not event_id.strip():
            raise MalformedEvent("webhook has no X-Razorpay-Event-Id header")
        return mapping.parse_webhook(bytes(raw_body), event_id)

    def claimed_order_id(self, raw_body: bytes) -> str | None:
        """The order id an unverified webhook body names (to prompt a check, never to trust)."""
        return mapping.claimed_order_id(raw_body)

    def verify_callback(self, gateway_order_id: str, gateway_payment_id: str, signature: str) -> CallbackResult:
        """The port's callback check: the checkout handler's payment id and signature, for our order id."""
        return self.verify_checkout_form(
            gateway_order_id, {"razorpay_payment_id": gateway_payment_id, "razorpay_signature": signature}
        )

    def verify_checkout_form(self, gateway_order_id: str, params: Mapping[str, str]) -> CallbackResult:
        """Check a checkout callback's ``razorpay_signature`` against the order id *we* stored.

        Raises:
            SignatureInvalid: a field is missing, the echoed order id is not ours, or the
                signature matches no key secret.
        """
        if not gateway_order_id:
            raise SignatureInvalid("no stored Razorpay order id to verify the callback against")
        payment_id = params.get("razorpay_payment_id")
        sent = params.get("razorpay_signature")
        if not payment_id:
            raise SignatureInvalid("callback lacks razorpay_payment_id (a failed checkout sends error[...] instead)")
        if not sent:
            raise SignatureInvalid("callback lacks razorpay_signature")
        echoed_order_id = params.get("razorpay_order_id")
        if echoed_order_id and echoed_order_id != gateway_order_id:
            raise SignatureInvalid("callback razorpay_order_id differs from the order id we stored")
        message = signature.checkout_message(gateway_order_id, payment_id)
        if not signature.matches_any(self._key_secrets, message, sent):
            raise SignatureInvalid("razorpay_signature does not match the stored order id and payment id")
        return CallbackResult(gateway_order_id=gateway_order_id, gateway_payment_id=payment_id)

    # Helpers ---------------------------------------------------------------------------

    def _capture_settings(self, manual: bool) -> dict[str, Any]:
        """The per-order ``payment`` object (docs §3.4); it overrides the Dashboard setting."""
        options: dict[str, Any] = {"manual_expiry_period": self._manual_expiry_minutes, "refund_speed": "optimum"}
        if not manual:
            options["automatic_expiry_period"] = self._automatic_expiry_minutes
        return {"capture": "manual" if manual else "automatic", "capture_options": options}

    def _find_lost_order(self, receipt: str, create_error: GatewayTransient) -> dict[str, Any]:
        """The order a failed create may have made, found by receipt; else ``create_error`` is raised."""
        try:
            found = self._client.find_order_by_receipt(receipt)
        except GatewayError:
            raise create_error  # noqa: B904  (not its cause: the lookup error stays attached as __context__)
        if found is None:
            raise create_error
        return found

    def _checkout(self, order: RemoteOrder) -> dict[str, str]:
        """What Razorpay's checkout.js needs to open this order. Never includes a secret."""
        return {
            "key_id": self._key_id,
            "order_id": order.gateway_order_id,
            "amount": str(order.amount_minor),
            "currency": order.currency,
        }


@contextmanager
def _api_shape(operation: str) -> Iterator[None]:
    """An API response we cannot map is a contract problem, not a bad webhook: GatewayPermanent."""
    try:
        yield
    except MalformedEvent as exc:
        raise GatewayPermanent(f"razorpay {operation}: unexpected response shape: {exc.args[0]}") from exc
