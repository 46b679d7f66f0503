"""The PayGlocal adapter: :class:`PayGlocalGateway` implements :class:`gateways.port.PaymentGateway`.

It combines :mod:`.client` (HTTP and error mapping), :mod:`.mapping` (JSON -> DTOs, exact amounts)
and :mod:`.tokens` (JWE/JWS signing, callback tokens). Facts come from docs/gateways/payglocal.md.

- One PayGlocal transaction (a ``gid``) is both the order and its single payment.
- The status enquiry is the source of truth. The browser callback (a form POST of ``x-gl-token``)
  is only a prompt to go and check; server webhooks are not reliably documented and are refused.
- ``create_order`` is not retried in-call. After a transient failure (or a 400, e.g. a duplicate
  ``merchantTxnId`` from an earlier lost create) the transaction is looked up by ``merchantTxnId``
  (= our receipt) and returned when found; otherwise the original error is raised.
- Refunds (after-capture.md §5): ``POST /gl/v1/payments/{gid}/refund`` with our idempotency key as both
  ``merchantTxnId`` and ``merchantUniqueId``; not retried in-call. A repeat is refused as a duplicate and
  looked up by status enquiry of the key. PayGlocal lists no refunds and sends no refund or dispute webhook,
  so ``fetch_refunds`` asks the status of the original gid and of each refund we know of.

Where the docs contradict each other or say nothing, the safer reading:

- The refund answer has four incompatible shapes (§5.2); each is read (:func:`mapping.refund_from_response`),
  and an answer naming no amount is taken as the amount we asked for, never refused: the refund was accepted.
- A duplicate is a 409 on the refund page (§5.4) and a 400 "duplicate" on initiate and capture (payglocal.md
  §0.6): both mean an earlier attempt with this key got through. It counts as done only when the status call
  finds a refund carrying our key; otherwise GatewayTransient (try again), never GatewayPermanent, which
  could make a caller give up on, and re-issue with a new key, a refund that happened.
- No pre-check of the payment's status before refunding: after a first partial refund the original gid may
  read ``SENT_FOR_REFUND`` (UNDOCUMENTED, §5.3), and PayGlocal refuses what it cannot refund (400) itself.
- Progress is read on the refund's own gid (§5.2) rather than the original's (§5.3): the original gid tells
  nothing of which refund it is about. The original is read for what was refunded without us (the
  dashboard): all it shows refunded beyond our processed refunds; ``SENT_FOR_REFUND`` naming no amount is
  taken as all of it refunded (what the original shows after a refund is UNDOCUMENTED, §5.3).
- ``merchantTxnId`` is "alphanumeric" (payglocal.md §5) while the port allows ``_`` and ``-`` in a key: the key
  is sent as given, so keys made for PayGlocal should be alphanumeric (e.g. ``uuid4().hex``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

import httpx

from gateways.base import GatewayAdapter, refund_request
from gateways.errors import (
    GatewayError,
    GatewayPermanent,
    GatewayRateLimited,
    GatewayTransient,
    MalformedEvent,
    SignatureInvalid,
)
from gateways.http import DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT, EventHooks
from gateways.payglocal import mapping, tokens
from gateways.payglocal.client import PayGlocalClient, is_duplicate
from gateways.payglocal.settings import DEFAULT_CALLBACK_MAX_AGE_S, SANDBOX_BASE_URL, PayGlocalSettings
from gateways.port import (
    CallbackResult,
    RefundStatus,
    RemoteOrder,
    RemotePayment,
    RemoteRefund,
    RemoteStatus,
    WebhookEvent,
)

__all__ = ["SANDBOX_BASE_URL", "PayGlocalGateway", "PayGlocalSettings"]

CALLBACK_EVENT_TYPE = "payglocal.callback"

#: The id of a refund we never asked for (made on PayGlocal's dashboard), seen only as the original gid's status.
DASHBOARD_REFUND_SUFFIX = ":refunded"

#: What the original gid's status says of a refund nobody asked us for (:meth:`PayGlocalGateway.fetch_refunds`).
_DASHBOARD_REFUND_STATES = {"SENT_FOR_REFUND": RefundStatus.PROCESSED, "REFUND_STARTED": RefundStatus.PENDING}
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def _refunded_without_us(payment: RemotePayment, ours: tuple[RemoteRefund, ...],
                         known: tuple[str, ...]) -> tuple[RemoteRefund, ...]:
    """The original gid's refunded amount beyond our processed refunds, as refunds made without us: the ones
    reported before (their running totals are in their ids; each is told again, in the original's state, so
    a pending one is seen processed) and, when the total grew, one more for the difference."""
    state = _DASHBOARD_REFUND_STATES.get(payment.wire_status.upper())
    if state is None:
        return ()
    ours_processed = sum(r.amount_minor for r in ours if r.status == RefundStatus.PROCESSED)
    total = payment.amount_refunded_minor - ours_processed
    totals = sorted({int(tail) for refund_id in known if DASHBOARD_REFUND_SUFFIX in refund_id
                     and (tail := refund_id.rpartition("@")[2]).isdigit()})
    if total > (totals[-1] if totals else 0):
        totals.append(total)
    return tuple(RemoteRefund(gateway_refund_id=f"{payment.gateway_payment_id}{DASHBOARD_REFUND_SUFFIX}@{running}",
                              gateway_payment_id=payment.gateway_payment_id, amount_minor=running - before,
                              currency=payment.currency, status=state, wire_status=payment.wire_status)
                 for before, running in zip([0, *totals], totals, strict=False))


def _system_now_ms() -> int:
    return time.time_ns() // 1_000_000


def _as_gid(identifier: str) -> str | None:
    """``identifier`` when it is a gid (``gl_...``): the id we asked by stays the id we report.
    Anything else (a merchantTxnId) lets the response's ``gid`` name the transaction."""
    return identifier if identifier.startswith("gl_") else None


class PayGlocalGateway(GatewayAdapter):
    """PayGlocal PayCollect transactions, status, capture and browser callbacks, in the port's terms."""

    _client: PayGlocalClient

    # Facts the port declares (gateways.port.GatewayFacts) ------------------------------------

    settings_prefix = PayGlocalSettings.PREFIX
    name = "payglocal"
    label = "PayGlocal"
    #: Only the shopper's browser callback reaches the webhook endpoint: a form post (payglocal.md §4).
    webhook_content_type = FORM_CONTENT_TYPE
    #: A transaction's gid is ``gl_…`` (payglocal.md §0): it names both the order and its payment.
    id_prefixes = ("gl_",)
    #: Requests per second we allow ourselves (across all processes) unless configured otherwise;
    #: PayGlocal publishes no limit, they are per merchant id by contract (payglocal.md §0.8).
    default_rate_per_s = 20
    #: "No more than one poll per transaction every 5 s" (payglocal.md §0.8).
    min_poll_interval_s = 5
    #: no dispute API or webhook (after-capture.md §7): support records chargebacks by hand
    reports_disputes = False

    @classmethod
    def enabled(cls, settings: object) -> bool:
        """PayGlocal is built when a merchant id is set (``payglocal_merchant_id``)."""
        return PayGlocalSettings.enabled(settings)

    @classmethod
    def from_settings(
        cls,
        settings: object,
        *,
        transport: httpx.BaseTransport | None = None,
        event_hooks: EventHooks | None = None,
    ) -> PayGlocalGateway:
        """The adapter configured by ``settings``: a :class:`PayGlocalSettings`, or a flat settings object
        with ``payglocal_*`` fields (``worker.settings.Settings``).

        Raises:
            SettingsMissing: the merchant id is set but a key, a kid or the callback URL is missing
                (a ``ValueError`` that names every missing setting).
        """
        own = settings if isinstance(settings, PayGlocalSettings) else PayGlocalSettings.from_flat(settings)
        return cls(merchant_id=own.merchant_id, private_key_pem=own.private_key_pem, private_kid=own.private_kid,
                   payglocal_public_keys=own.public_keys, payglocal_public_kid=own.public_kid,
                   base_url=own.base_url, callback_url=own.callback_url, callback_max_age_s=own.callback_max_age_s,
                   transport=transport, event_hooks=event_hooks)

    def __init__(
        self,
        *,
        merchant_id: str,
        private_key_pem: str,
        private_kid: str,
        payglocal_public_keys: Mapping[str, str],
        payglocal_public_kid: str,
        base_url: str = SANDBOX_BASE_URL,
        callback_url: str,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        now_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        event_hooks: EventHooks | None = None,
        callback_max_age_s: int = DEFAULT_CALLBACK_MAX_AGE_S,
        retry_attempts: int = DEFAULT_ATTEMPTS,
    ):
        """Configure the adapter; nothing is sent until a method is called.

        Args:
            merchant_id: our PayGlocal MID.
            private_key_pem, private_kid: the merchant signing key (``<kid>_<mid>.pem``) and its kid.
            payglocal_public_keys: PayGlocal's public keys (PEM keys or certificates) by kid; several
                during a rotation. They verify callback tokens.
            payglocal_public_kid: which of them request bodies are encrypted to.
            base_url: the API root; sandbox by default, production must be configured.
            callback_url: our ``merchantCallbackURL`` (the browser form POST lands there).
            transport, timeout, event_hooks: passed to httpx.
            now_ms: epoch milliseconds; injected in tests (token ``iat`` and callback freshness).
            sleep, retry_attempts: the bounded in-call retry of status GETs.
            callback_max_age_s: how old (by ``iat``) a callback token may be.

        Raises:
            ValueError: a key does not load, or ``payglocal_public_kid`` is not among the public keys.
        """
        if not callback_url:
            raise ValueError("a merchantCallbackURL (callback_url) is required")
        self._public_keys = {kid: tokens.load_key(pem) for kid, pem in payglocal_public_keys.items() if kid and pem}
        if payglocal_public_kid not in self._public_keys:
            raise ValueError(f"payglocal_public_kid {payglocal_public_kid!r} is not among payglocal_public_keys")
        self._merchant_id = merchant_id
        self._callback_url = callback_url
        self._now_ms = now_ms or _system_now_ms
        self._callback_max_age_ms = int(callback_max_age_s) * 1000
        signer = tokens.RequestSigner(
            merchant_id=merchant_id,
            private_key=tokens.load_key(private_key_pem),
            private_kid=private_kid,
            payglocal_public_key=self._public_keys[payglocal_public_kid],
            payglocal_public_kid=payglocal_public_kid,
            now_ms=self._now_ms,
        )
        self._client = PayGlocalClient(
            signer=signer,
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            event_hooks=event_hooks,
            retry_attempts=retry_attempts,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"PayGlocalGateway(merchant_id={self._merchant_id!r})"

    # Orders and payments ---------------------------------------------------------------

    def create_order(
        self,
        *,
        receipt: str,
        amount_minor: int,
        currency: str,
        notes: Mapping[str, str] | None = None,
        manual_capture: bool | None = None,
    ) -> RemoteOrder:
        """Initiate a PayCollect transaction for one of our orders (``merchantTxnId`` = ``receipt``).

        ``notes`` has no PayGlocal field and is not sent. ``checkout`` holds ``redirect_url`` (the
        hosted page) and ``gid``; a transaction found again after a lost create has no redirect_url.

        Raises:
            GatewayTransient: the initiate failed and no transaction with this receipt exists (yet).
            GatewayPermanent: PayGlocal refused it, or the receipt's transaction has another amount.
        """
        if not receipt or len(receipt) > mapping.MAX_TXN_ID_LENGTH:
            raise ValueError(f"receipt must be 1 to {mapping.MAX_TXN_ID_LENGTH} characters, got {len(receipt or '')}")
        currency = currency.upper()
        payload = {
            "merchantTxnId": receipt,
            "merchantUniqueId": receipt,
            "paymentData": {"totalAmount": mapping.minor_to_amount(amount_minor, currency), "txnCurrency": currency},
            "merchantCallbackURL": self._callback_url,
            "captureTxn": not manual_capture,
        }
        try:
            envelope = self._client.initiate_paycollect(payload)
        except (GatewayTransient, GatewayPermanent) as create_error:
            if isinstance(create_error, GatewayRateLimited) or (
                isinstance(create_error, GatewayPermanent) and create_error.status != 400
            ):
                raise  # a 429 was not processed; other refusals are not about a lost create
            found = self._find_lost_order(receipt, create_error)
            if found.amount_minor != amount_minor or found.currency != currency:
                raise GatewayPermanent(
                    f"payglocal transaction {found.gateway_order_id} for receipt {receipt!r} is for "
                    f"{found.amount_minor} {found.currency}, not {amount_minor} {currency}"
                ) from create_error
            return dataclasses.replace(found, checkout={"gid": found.gateway_order_id})
        return mapping.initiated_order(envelope, receipt=receipt, amount_minor=amount_minor, currency=currency)

    def min_amount_minor(self, currency: str, exponent: int) -> int:
        """PayGlocal documents no minimum beyond a positive ``totalAmount`` (payglocal.md §3)."""
        return 1

    def fetch_order(self, gateway_order_id: str) -> RemoteOrder:
        """The transaction (status enquiry) as an order with its single payment.

        Raises:
            GatewayNotFound: PayGlocal does not know the gid (404, or 400 GL-400-999).
        """
        return mapping.order_from_status(self._client.status(gateway_order_id), gid=_as_gid(gateway_order_id))

    def fetch_attempts(self, gateway_order_id: str) -> tuple[RemotePayment, ...]:
        """The transaction's payment: one status enquiry (a PayGlocal transaction is one attempt)."""
        return self.fetch_order(gateway_order_id).payments

    def fetch_payment(self, gateway_payment_id: str) -> RemotePayment:
        """The transaction's payment (the gid is both ids). Raises GatewayNotFound when unknown."""
        return mapping.payment_from_status(self._client.status(gateway_payment_id), gid=_as_gid(gateway_payment_id))

    def capture(self, gateway_payment_id: str, *, amount_minor: int, currency: str) -> RemotePayment:
        """Fully capture an authorised transaction; an already captured one is returned as is.

        Raises:
            GatewayPermanent: the transaction is not authorised, or is for another amount.
        """
        payment = self.fetch_payment(gateway_payment_id)
        if payment.status is RemoteStatus.CAPTURED:
            return payment
        if payment.amount_minor != amount_minor or payment.currency != currency.upper():
            raise GatewayPermanent(
                f"payglocal {gateway_payment_id} is for {payment.amount_minor} {payment.currency}, "
                f"not {amount_minor} {currency}"
            )
        if payment.status is not RemoteStatus.AUTHORIZED:
            raise GatewayPermanent(f"payglocal {gateway_payment_id} is {payment.wire_status}, not AUTHORIZED")
        body = {
            "merchantTxnId": mapping.capture_txn_id(gateway_payment_id),
            "captureType": "F",
            "paymentData": {"totalAmount": mapping.minor_to_amount(amount_minor, payment.currency)},
        }
        try:
            self._client.capture(gateway_payment_id, body)
        except GatewayPermanent:
            again = self.fetch_payment(gateway_payment_id)  # e.g. a retried capture: duplicate merchantTxnId
            if again.status is RemoteStatus.CAPTURED:
                return again
            raise
        return self.fetch_payment(gateway_payment_id)

    # Refunds ---------------------------------------------------------------------------

    def create_refund(self, gateway_payment_id: str, *, amount_minor: int, currency: str, full: bool,
                      idempotency_key: str, reason: str) -> RemoteRefund:
        """Refund a captured gid: ``refundType`` F, or P with ``paymentData.totalAmount``. PayGlocal has no
        field for ``reason`` (not sent). The refund's id is the gid the answer names (see the module docstring).

        Raises:
            GatewayPermanent: PayGlocal refused (400: not captured, over the refundable rest; 401, 403).
            GatewayNotFound: PayGlocal does not know the gid (404).
            GatewayTransient: no answer, 5xx, or a duplicate not yet found again: try again with the same key.
        """
        refund_request(amount_minor, idempotency_key)
        currency = currency.upper()
        body: dict[str, object] = {"merchantTxnId": idempotency_key, "merchantUniqueId": idempotency_key,
                                   "refundType": "F" if full else "P"}
        if not full:
            body["paymentData"] = {"totalAmount": mapping.minor_to_amount(amount_minor, currency)}
        try:
            envelope = self._client.refund(gateway_payment_id, body)
        except GatewayPermanent as refused:
            if not is_duplicate(refused):
                raise
            return self._find_duplicate_refund(gateway_payment_id, idempotency_key, refused)
        return mapping.refund_from_response(envelope, gateway_payment_id=gateway_payment_id,
                                            amount_minor=amount_minor, currency=currency,
                                            idempotency_key=idempotency_key)

    def fetch_refunds(self, gateway_payment_id: str, *, known: tuple[str, ...] = ()) -> tuple[RemoteRefund, ...]:
        """The status of each refund of ours in ``known`` (a refund's gid, or our key when its answer named no
        gid), and what the original gid's status says was refunded beyond them: PayGlocal lists no refunds,
        so a refund made without us (the dashboard) shows only there (``SENT_FOR_REFUND``: processed;
        ``REFUND_STARTED``: pending), as the amount the payment mapping counts as refunded.

        That remainder is reported as one refund named ``f"{gid}:refunded@{D}"``, where ``D`` is the running
        total refunded without us; ``known`` names the earlier ones, so each dashboard refund is reported once
        with its own amount, and the same picture always gives the same id (exactly once downstream). The
        original is read first: a refund of ours processed in between is then seen processed on its own gid
        but not yet in the total, which can only hide a remainder until the next look, never invent one.

        Raises:
            GatewayNotFound: PayGlocal does not know a refund in ``known`` (whether a refund gid can be
                queried is UNDOCUMENTED, after-capture.md §5.3) or the gid.
        """
        payment = self.fetch_payment(gateway_payment_id)
        ours = tuple(
            mapping.refund_from_status(self._client.status(refund_id), refund_id=refund_id,
                                       gateway_payment_id=gateway_payment_id)
            for refund_id in known if DASHBOARD_REFUND_SUFFIX not in refund_id
        )
        return ours + _refunded_without_us(payment, ours, known)

    # Signed inputs ---------------------------------------------------------------------

    def verify_callback(self, gateway_order_id: str, gateway_payment_id: str, signature: str) -> CallbackResult:
        """Check the browser callback's ``x-gl-token`` (``signature``) against the gid *we* stored.

        ``gateway_payment_id`` may be empty or the gid (PayGlocal's payment id is the gid).
        A valid callback is a prompt to query the status, never proof of payment.

        Raises:
            SignatureInvalid: bad or stale token, another merchant's, or for another gid.
        """
        if not gateway_order_id:
            raise SignatureInvalid("no stored PayGlocal gid to verify the callback against")
        claims = self._verify_token(signature)
        named = claims.gids()
        if gateway_order_id not in named:
            raise SignatureInvalid(f"callback token is for gid {claims.gid!r}, not the gid we stored")
        if gateway_payment_id and gateway_payment_id not in named:
            raise SignatureInvalid(f"callback payment id {gateway_payment_id!r} is not the token's gid")
        return CallbackResult(gateway_order_id=gateway_order_id, gateway_payment_id=gateway_order_id)

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Accept only the browser callback form post (``x-gl-token=<token>``), verified.

        The event carries no payment (``payment=None``): the caller must query the status.

        Raises:
            MalformedEvent: not a form post with exactly one ``x-gl-token`` field (``signed`` False).
            SignatureInvalid: the token does not verify, is stale, or is another merchant's.
        """
        return self._event(self._verify_token(self._form_token(raw_body, headers)))

    def parse_verified_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """The event of a callback verified when it was stored: its token is read, not checked again
        (its 15-minute freshness is an intake rule; a slow queue must not refuse a genuine callback)."""
        return self._event(tokens.stored_claims(self._form_token(raw_body, headers)))

    @staticmethod
    def _form_token(raw_body: bytes, headers: Mapping[str, str]) -> str:
        if not isinstance(raw_body, (bytes, bytearray, memoryview)):
            raise TypeError("verify_webhook needs the raw body bytes, not a decoded or parsed body")
        lowered = {str(key).lower(): str(value) for key, value in headers.items()}
        content_type = lowered.get("content-type", FORM_CONTENT_TYPE).split(";")[0].strip().lower()
        if content_type != FORM_CONTENT_TYPE:
            raise MalformedEvent(
                f"only PayGlocal's browser callback form ({FORM_CONTENT_TYPE}) is accepted, not {content_type!r}; "
                "server webhooks are not supported", signed=False,
            )
        try:
            return mapping.callback_form_token(bytes(raw_body))
        except MalformedEvent as exc:  # nothing was verified yet: the body is not known to be PayGlocal's
            raise MalformedEvent(exc.args[0], signed=False) from exc

    @staticmethod
    def _event(claims: tokens.CallbackClaims) -> WebhookEvent:
        return WebhookEvent(
            event_id=f"callback:{claims.gid}:{claims.iat_ms}",
            event_type=CALLBACK_EVENT_TYPE,
            gateway_order_id=claims.gid,
            payment=None,
            created_at=claims.iat_ms // 1000,
        )

    def claimed_order_id(self, raw_body: bytes) -> str | None:
        """The gid an *unverified* callback form names (to prompt a check, never to trust); never raises."""
        try:
            return tokens.unverified_gid(mapping.callback_form_token(bytes(raw_body)))
        except (MalformedEvent, TypeError, ValueError):
            return None

    # Helpers ---------------------------------------------------------------------------

    def _verify_token(self, token: str) -> tokens.CallbackClaims:
        if not token:
            raise SignatureInvalid("callback has no x-gl-token")
        return tokens.verify_callback_claims(
            token,
            public_keys=self._public_keys,
            merchant_id=self._merchant_id,
            now_ms=self._now_ms(),
            max_age_ms=self._callback_max_age_ms,
        )

    def _find_duplicate_refund(self, gid: str, idempotency_key: str, refused: GatewayPermanent) -> RemoteRefund:
        """The refund an earlier attempt with this key made, by status enquiry of the key; GatewayTransient
        while the status call cannot find a refund carrying our key."""
        found: RemoteRefund | None = None
        try:
            envelope = self._client.status(idempotency_key)
            if mapping.names_refund(envelope, idempotency_key):
                found = mapping.refund_from_status(envelope, gateway_payment_id=gid, idempotency_key=idempotency_key)
        except GatewayError:
            found = None  # not found (yet), or unreadable: the duplicate stays unconfirmed
        if found is not None:
            return found
        raise GatewayTransient(
            f"payglocal refund {idempotency_key} of {gid} was refused as a duplicate ({refused}) and is not found "
            "by status yet; try again with the same key",
            status=refused.status, body=refused.body, request_id=refused.request_id,
        ) from refused

    def _find_lost_order(self, receipt: str, create_error: GatewayError) -> RemoteOrder:
        """The transaction a failed initiate may have made, by merchantTxnId; else ``create_error`` is raised."""
        try:
            envelope = self._client.status(receipt)
            found = mapping.order_from_status(envelope)
        except GatewayError:
            raise create_error  # noqa: B904  (not its cause: the lookup error stays attached as __context__)
        if found.receipt not in (None, receipt):
            raise create_error
        return found
