"""Inbox processing: apply one stored webhook or callback to its order, once.

Runs in a worker. A row is applied in one transaction; if applying it asks for a follow-up (a
capture, or the gateway check a callback prompts), that runs outside the lock and the row is marked
processed only when it is done, so a failure leaves the row pending for the message's retry or the
inbox sweep (applying a row twice changes nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.exceptions import RedisError

from db.models import InboxEvent, Order
from gateways.errors import GatewayNotFound, MalformedEvent, SignatureInvalid
from gateways.port import PaymentGateway, RemotePayment, RemoteSettlement
from worker.deps import Deps
from worker.domain.order_state import Decision, Evidence, OrderState, Source
from worker.logging import get_logger
from worker.services import settlement_match
from worker.services.capture import capture_authorized
from worker.services.intake import LOOKUP_ID
from worker.services.poll import check_payment, reconcile_order
from worker.services.refunds import refund_duplicates
from worker.services.settlement_pull import pull_day, reopen_day
from worker.services.unit import UnitOfWork, printable

#: How a row's reason says its follow-up runs (it stays pending until that is done).
FOLLOW_UP_PENDING = "follow-up pending: "
#: Pending webhooks about one payment applied in one transaction at most (a flood of them takes several).
SIBLINGS_AT_MOST = 20
#: Orders still waiting for a payment's next status: a decision leaving one there looks for late siblings.
AWAITING_PAYMENT = frozenset({OrderState.CREATED, OrderState.PENDING})


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying a row did in its transaction, and what must still happen before it is processed."""

    status: str  # processed | rejected | ignored
    reason: str
    decision: Decision | None = None
    follow_up: Callable[[], Decision | None] | None = None


def process_inbox_event(inbox_id: int, *, deps: Deps, coalesce_key: str | None = None) -> Decision | None:
    """Apply one stored webhook or callback to its order, once. Returns the decision, or None.

    With a ``coalesce_key`` (the message's sender claimed its payment's "message queued" marker, so later
    webhooks about the payment send no message while it is held): hold the marker through the row's transaction;
    once that commits, and before its follow-up (a capture call), release it and apply every row of the payment
    still pending (:meth:`_Marker.hand_over`). A webhook that found the marker held committed its row before it
    looked, so before the release: that look finds it (or the row's own siblings query did); one stored after
    the release sends a message of its own. Holding it until the commit, not only until the siblings query, lets
    the payment's next webhooks (a capture, order.paid, stored while the authorisation is decided) ride on this
    message instead of each sending one (1.9 messages per order at half load, 1.03 now).

    Raises whatever its follow-up raises (a gateway error): the row then stays pending. A row whose transaction
    fails releases the marker and leaves the look to the message's retry."""
    if coalesce_key is None:
        return _process(inbox_id, deps=deps)
    marker = _Marker(coalesce_key, inbox_id, deps)
    try:
        return _process(inbox_id, deps=deps, committed=marker.hand_over)
    finally:
        marker.release()  # if the row's transaction failed: rows from now on send messages of their own


class _Marker:
    """The payment's "message queued" marker a message holds, released once: when the row's transaction commits
    (before any follow-up, so a gateway call does not hold it), so that the webhooks that arrive while the row is
    applied send no message; the look that follows the release applies them."""

    def __init__(self, key: str, inbox_id: int, deps: Deps) -> None:
        self.key, self.inbox_id, self.deps, self.released = key, inbox_id, deps, False

    def hand_over(self) -> None:
        """Release the marker, then apply the payment's rows still pending: a capture stored while the
        authorisation was decided is credited before that authorisation's own follow-up runs (which then finds
        the order paid), and a follow-up that fails cannot leave them behind."""
        self.release()
        _apply_each(_pending_about(self.key, deps=self.deps), deps=self.deps)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        try:
            self.deps.coordination.release_queued(self.key)
        except RedisError as exc:  # the marker expires by itself; meanwhile the inbox sweep sends what it holds back
            get_logger(gateway=self.key.partition(":")[0], inbox_id=self.inbox_id).warning(
                "coalesce_marker_not_released", error=type(exc).__name__)


def _apply_each(inbox_ids: list[int], *, deps: Deps) -> None:
    """Apply each row (each with its own siblings); one that fails does not stop the rest, and the first failure
    is raised at the end (the message is retried, or dead-lettered if nothing can fix it)."""
    failed: Exception | None = None
    for inbox_id in inbox_ids:
        try:
            _process(inbox_id, deps=deps)
        except Exception as exc:  # noqa: BLE001  (re-raised below, once the others are applied)
            failed = failed or exc
    if failed is not None:
        raise failed


def _process(inbox_id: int, *, deps: Deps, committed: Callable[[], None] | None = None) -> Decision | None:
    """Apply one row in its transaction, then run its follow-up if it has one; ``committed`` is called once that
    transaction is over, committed or with nothing to do (the row was done already), before the follow-up."""
    applied = None
    with deps.unit() as uow:
        row = uow.inbox_row(inbox_id, lock=True)
        if row is not None and row.status == "pending":
            row.attempts += 1
            applied = (_apply_callback(row, deps=deps) if row.kind == "callback"
                       else _apply_webhook(uow, row, deps=deps))
            if applied.follow_up is None:
                _finish(uow, row, applied.status, applied.reason)
            else:
                row.reason = f"{FOLLOW_UP_PENDING}{applied.reason}"
            uow.commit()
    if committed is not None:
        committed()
    if applied is None or applied.follow_up is None:
        return applied and applied.decision
    try:
        decision = applied.follow_up()
    except GatewayNotFound as exc:  # the gateway does not know the payment a signed callback named
        _finish_pending(inbox_id, "rejected", f"payment unknown at the gateway: {exc}", deps)
        return None
    _finish_pending(inbox_id, "processed", decision.reason if decision else applied.reason, deps)
    return decision


def _pending_about(coalesce_key: str, *, deps: Deps) -> list[int]:
    """The pending webhooks about the payment ``coalesce_key`` names, oldest first (each is applied with
    its own siblings; the rest are then found processed), but those whose follow-up (a capture) another worker
    is running: that worker's message finishes them."""
    gateway, _, payment_id = coalesce_key.partition(":")
    with deps.unit() as uow:
        return uow.pending_about_payment(gateway, payment_id, skip_reason_prefix=FOLLOW_UP_PENDING)


def _apply_callback(row: InboxEvent, *, deps: Deps) -> Applied:
    """A callback verified when stored: ask the gateway about its payment (or its order) now."""
    order_id, payment_id = row.order_id, row.gateway_payment_id
    if payment_id:
        return Applied("processed", "callback checked at the gateway",
                       follow_up=lambda: check_payment(order_id, payment_id, Source.CALLBACK, deps=deps))
    return Applied("processed", "callback checked at the gateway",
                   follow_up=lambda: reconcile_order(order_id, deps=deps, source=Source.CALLBACK))


def _apply_webhook(uow: UnitOfWork, row: InboxEvent, *, deps: Deps) -> Applied:
    """Parse the stored body, find the order, decide (in the row's transaction)."""
    gateway = deps.gateway(row.gateway)
    try:
        # A row with an event id passed the signature check at intake; one without it is a refused
        # delivery that support replayed, and must verify now.
        event = (gateway.parse_verified_webhook(row.body, row.headers) if row.event_id
                 else gateway.verify_webhook(row.body, row.headers))
    except (SignatureInvalid, MalformedEvent) as exc:
        return Applied("rejected", f"does not parse: {exc}" if row.event_id else f"does not verify: {exc}")
    if event.settlement is not None:  # money paid out: read that day's settled transactions again
        return _settlement_announced(uow, row, event.settlement, deps=deps)
    if not event.gateway_order_id:
        return Applied("ignored", f"event {event.event_type} names no order")
    if not LOOKUP_ID.match(event.gateway_order_id):
        return Applied("rejected", f"malformed order id {printable(event.gateway_order_id)[:80]!r}")
    order = uow.find_order(row.gateway, event.gateway_order_id, lock=True)
    if order is None:
        return Applied("rejected", f"unknown order {event.gateway_order_id}")
    row.order_id = order.id
    order_id, gateway_name = order.id, order.gateway
    if event.payment is None:  # a prompt to check (PayGlocal's browser callback), never proof of payment
        return Applied("processed", "prompted a gateway check",
                       follow_up=lambda: reconcile_order(order_id, deps=deps, source=Source.CALLBACK))
    if event.refund is not None:  # the refund's own status first (after-capture.md §8.5), then its payment
        uow.observe_refund(order, event.refund)
    if event.dispute is not None:
        uow.observe_dispute(order, event.dispute)
    batch, gathered = _siblings_about(uow, row, gateway, order.gateway_order_id) if row.gateway_payment_id \
        else ([], False)
    decision = uow.apply(order, Evidence(Source.WEBHOOK, (event.payment, *(p for _, p in batch))))
    _finish_with(uow, row, order, batch, decision)
    if gathered and decision.to_state in AWAITING_PAYMENT and not (decision.capture or decision.refund):
        decision = _apply_late_siblings(uow, row, gateway, order, decision, [s.id for s, _ in batch])
    if decision.capture:
        return Applied("processed", decision.reason, decision,
                       follow_up=lambda: capture_authorized(order_id, gateway_name, decision, Source.WEBHOOK,
                                                            deps=deps))
    if decision.refund:
        return Applied("processed", decision.reason, decision,
                       follow_up=lambda: refund_duplicates(order_id, decision, deps=deps))
    return Applied("processed", decision.reason, decision)


def _settlement_announced(uow: UnitOfWork, row: InboxEvent, settlement: RemoteSettlement, *, deps: Deps) -> Applied:
    """``settlement.processed`` names no order: it prompts a pull of its day (then a match), after the commit: the
    day in each zone the gateway may file it under (Razorpay's is undocumented: IST and UTC)."""
    gateway_name = row.gateway
    gateway = deps.gateway(gateway_name)
    if not gateway.settles_by_api:
        return Applied("ignored", f"settlement {settlement.gateway_settlement_id}: {gateway_name} has no recon API")
    moment = datetime.fromtimestamp(settlement.created_at, UTC) if settlement.created_at else uow.now
    days = gateway.settlement_days(moment)
    for day in days:
        reopen_day(uow.session, gateway_name, day, now=uow.now)

    def pull_and_match() -> None:
        for day in days:
            pull_day(gateway_name, day, deps=deps)
        settlement_match.match(deps=deps, recheck=deps.recheck_now)

    pulled = " and ".join(day.isoformat() for day in days)
    return Applied("processed", f"settlement {settlement.gateway_settlement_id} announced: {pulled} pulled",
                   follow_up=pull_and_match)


def _siblings_about(uow: UnitOfWork, row: InboxEvent, gateway: PaymentGateway, gateway_order_id: str,
                    besides: Iterable[int] = ()) -> tuple[list[tuple[InboxEvent, RemotePayment]], bool]:
    """The other pending webhooks about the same payment of the same order, each with the payment it
    reports (payment.authorized, payment.captured and order.paid come together), and whether that was all
    of them. A row that does not parse to a payment of this order is left to the message's look after the commit
    (or to its own message)."""
    found: list[tuple[InboxEvent, RemotePayment]] = []
    siblings = uow.pending_siblings(row, limit=SIBLINGS_AT_MOST, besides=besides)
    for sibling in siblings:
        try:
            event = gateway.parse_verified_webhook(sibling.body, sibling.headers)
        except (SignatureInvalid, MalformedEvent):
            continue
        if event.refund is not None or event.dispute is not None:
            continue  # a refund or dispute is applied by its own message, with its own lifecycle
        if event.payment is not None and event.gateway_order_id == gateway_order_id:
            found.append((sibling, event.payment))
    return found, len(found) == len(siblings) < SIBLINGS_AT_MOST  # all of them, or some left for a look of their own


def _apply_late_siblings(uow: UnitOfWork, row: InboxEvent, gateway: PaymentGateway, order: Order, decision: Decision,
                         taken: Iterable[int]) -> Decision:
    """One more look at the payment's pending rows, before the commit, when the decision leaves the order waiting
    for the payment's next status (an authorisation awaiting its capture; not a review, nor a paid or closed
    order). A ``payment.captured`` stored after the siblings query would otherwise be credited only after this
    commit, in a transaction of its own (by the message's look after the release, or by its own message when the
    marker was not held: 1 order in 8 at half load, the slowest credits); this look credits it now. A row another
    worker holds is skipped: that worker applies it, or the look after the commit does."""
    late, _ = _siblings_about(uow, row, gateway, order.gateway_order_id, besides=taken)
    if not late:
        return decision
    decision = uow.apply(order, Evidence(Source.WEBHOOK, tuple(payment for _, payment in late)))
    _finish_with(uow, row, order, late, decision)
    return decision


def _finish_with(uow: UnitOfWork, row: InboxEvent, order: Order, batch: list[tuple[InboxEvent, RemotePayment]],
                 decision: Decision) -> None:
    for sibling, _ in batch:  # decided together: one transaction for what arrived together
        sibling.attempts += 1
        sibling.order_id = order.id
        _finish(uow, sibling, "processed", f"{decision.reason} (applied with inbox #{row.id})")


def _finish(uow: UnitOfWork, row: InboxEvent, status: str, reason: str) -> None:
    uow.mark(row, status, reason)
    log = get_logger(gateway=row.gateway, inbox_id=row.id, event_type=row.event_type, order_id=row.order_id)
    (log.info if status == "processed" else log.warning)("inbox_event_" + status, reason=row.reason)


def _finish_pending(inbox_id: int, status: str, reason: str, deps: Deps) -> None:
    """Close a row whose follow-up is done, unless another worker closed it meanwhile."""
    with deps.unit() as uow:
        row = uow.inbox_row(inbox_id, lock=True)
        if row is not None and row.status == "pending":
            _finish(uow, row, status, reason)
            uow.commit()
