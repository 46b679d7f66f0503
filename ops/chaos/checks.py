"""What a chaos run must end with, measured from the gateway's truth (the simulator's memory), the database,
Redis and the logs.

The money checks are pure functions of two pictures, so that each one can be fed crafted input
(``tests/e2e/test_chaos_checks.py``):

- the gateway's truth, :class:`GatewayPayment` rows read from the simulator (:func:`gateway_truth`):
  every payment attempt, its status, amount and currency, whether it was ever captured, its refunds
  (:class:`GatewayRefund`: amount, status, the idempotency key we sent, whether the harness made it at the
  gateway itself) and its disputes (:class:`GatewayDispute`: amount, status, phase);
- ours, :class:`Ours` read from Postgres (:func:`our_side`): orders, ledger entries (grant, reversal,
  restore), support review decisions, refunds and disputes as we hold them, balances.

:func:`judge` compares them (:class:`Verdict`); :func:`measure` takes one snapshot (:class:`Tally`);
:func:`settled` says whether the run may stop draining; :func:`failures` lists what breaks a promise;
:func:`render` prints the table; :func:`timelines` tells what we hold about a few failing orders.

The rule (issue 14; ``worker/services/money.py``): credits follow the money the gateway still holds. A
credited order is *entitled* to credits × (amount − refunded − disputes held) ÷ amount of its credited
payment, rounded down once per order (:func:`entitled`): refunded counts processed refunds only (pending
and failed ones take nothing), a dispute holds its amount while open, under review, lost or closed and not
once won (a won case reopened by pre-arbitration is held again), and a lost dispute's own refund entity is
the dispute's money, counted once. At quiescence, per order and per organisation, granted − reversed +
restored (the ledger's sum) equals that, and the balance equals the ledger. The promises, each of which
can fail:

- over- / under-credited: an order's ledger sum above / below what it is entitled to. An order never
  credited is entitled to nothing while a person has it (``needs_review``, ``closed``, a support decision),
  else to its credits when the gateway keeps a matching captured payment (the machine owes the grant);
- per organisation: its ledger rows sum to what its orders are entitled to, and its balance equals them;
- per gateway payment: a captured, kept, matching payment is credited (one grant row per payment id and per
  order, never more) unless a person has its order; no grant names a payment the gateway never captured,
  nor a payment of another amount unless support decided to credit it; no grant after support closed the
  order;
- double refunds: at the gateway, never two refunds for one idempotency key, nor more keyed refunds of a
  payment than the refunds the harness asked us for (a request sent twice, or twice at once, is one
  refund); we never reverse more money than the gateway refunded, nor one money event twice (the ledger's
  unique index forbids it; the check does not rely on that);
- refunds out of step: the gateway refunded a credited payment by more than our processed refunds say, or
  one of our refunds is in another state than the gateway's; disputes out of step: a gateway dispute we do
  not hold, or hold in another state or phase, or whose credits we hold (or do not) unlike the gateway;
- stuck: a refund of ours still requested or pending once everything else is quiet;
- shortfall: a reversal that could not take its credits (chaos customers spend nothing: never expected);
- lost capture: an authorised, matching payment left uncaptured at the gateway on an order that is not
  paid (nor in review or closed) once the run has drained: our capture was missed.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, text

from ops.chaos.customers import sim_call, webhook_backlog

#: ``worker.broker.QUEUES``, spelled out: importing ``worker.broker`` would build a broker from the environment.
QUEUES = ("recon_priority", "recon_webhooks", "recon_events", "recon_sweep")
#: Order states in which a person has the order: the machine neither credits nor captures for it.
WITH_A_PERSON = frozenset({"needs_review", "closed"})
#: Dispute statuses in which the gateway keeps the disputed money from the merchant: all but ``won``.
DISPUTE_HELD = frozenset({"open", "under_review", "lost", "closed"})
#: Our refund states still waiting for the gateway.
REFUND_IN_FLIGHT = frozenset({"requested", "pending"})

# -- the two pictures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayRefund:
    """One refund of a payment as the gateway knows it."""

    refund_id: str
    amount_minor: int
    status: str  #: pending | processed | failed
    key: str | None = None  #: the idempotency key we sent (Razorpay notes.idempotency_key, PayGlocal merchantTxnId)
    by_harness: bool = False  #: made at the gateway by the harness itself (its dashboard), not through our API

    @property
    def processed(self) -> bool:
        return self.status == "processed"


@dataclass(frozen=True)
class GatewayDispute:
    """One dispute of a payment as the gateway knows it (Razorpay's statuses)."""

    dispute_id: str
    amount_minor: int
    status: str  #: open | under_review | won | lost | closed
    phase: str = ""

    @property
    def held(self) -> bool:
        return self.status in DISPUTE_HELD


@dataclass(frozen=True)
class GatewayPayment:
    """One payment attempt as the gateway knows it (statuses in Razorpay's words)."""

    gateway: str
    payment_id: str
    order_id: str | None  #: ours: the receipt (Razorpay) or merchantTxnId (PayGlocal) the order was made with
    status: str  #: created | authorized | captured | partly_refunded | refunded | failed
    amount_minor: int
    currency: str
    captured: bool  #: ever captured (a refund of one never captured is an automatic refund)
    refunds: tuple[GatewayRefund, ...] = ()
    disputes: tuple[GatewayDispute, ...] = ()

    @property
    def kept(self) -> bool:
        """Money the gateway holds for the merchant: captured and nothing refunded."""
        return self.status == "captured"

    @property
    def refunded_minor(self) -> int:
        """What the gateway's processed refunds gave back, whoever made them."""
        return sum(r.amount_minor for r in self.refunds if r.processed)

    @property
    def taken_minor(self) -> int:
        """Money of this payment the gateway no longer holds for the merchant: processed refunds plus disputed
        amounts held. A lost dispute's customer is refunded with a refund entity of the gateway's own (no key of
        ours, not the harness's): that refund is the dispute's money, counted once."""
        ours = sum(r.amount_minor for r in self.refunds if r.processed and (r.key or r.by_harness))
        gateways_own = sum(r.amount_minor for r in self.refunds if r.processed and not (r.key or r.by_harness))
        lost = sum(d.amount_minor for d in self.disputes if d.status == "lost")
        held = sum(d.amount_minor for d in self.disputes if d.held)
        return ours + max(0, gateways_own - lost) + held


@dataclass(frozen=True)
class OurOrder:
    id: str
    organisation_id: str
    state: str
    credits: int
    amount_minor: int
    currency: str
    gateway: str


@dataclass(frozen=True)
class LedgerRow:
    order_id: str
    organisation_id: str
    gateway: str
    payment_id: str
    kind: str  #: credits (a grant) | refund | dispute | chargeback
    credits: int
    created_at: float  #: epoch seconds
    entry: str = "grant"  #: grant | reversal | restore
    money_event_id: str = ""
    shortfall: int = 0

    @property
    def grant(self) -> bool:
        return self.entry == "grant"


@dataclass(frozen=True)
class OurRefund:
    order_id: str
    gateway: str
    payment_id: str
    refund_id: str | None  #: the gateway's, once it answered
    key: str | None  #: our idempotency key; None for a refund we did not ask for
    amount_minor: int
    state: str  #: requested | pending | processed | failed
    origin: str  #: support | review | duplicate | gateway | auto
    next_check_planned: bool = True  #: in flight with a look at the gateway planned (next_check_at set)


@dataclass(frozen=True)
class OurDispute:
    order_id: str
    gateway: str
    dispute_id: str
    payment_id: str
    amount_minor: int
    state: str
    phase: str
    held: bool
    source: str = "gateway"  #: gateway | support (a chargeback recorded by hand)


@dataclass
class Ours:
    """What our database holds, as far as the money checks need it."""

    orders: dict[str, OurOrder] = field(default_factory=dict)
    ledger: list[LedgerRow] = field(default_factory=list)
    #: order id -> (epoch seconds, decision) of each support review decision, oldest first
    reviews: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    refunds: list[OurRefund] = field(default_factory=list)
    disputes: list[OurDispute] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)


@dataclass
class Verdict:
    """What :func:`judge` found; every list holds ids (orders, payments, disputes or organisations), sorted."""

    deserving: int = 0  #: orders whose money at the gateway pays for credits
    credited: int = 0  #: orders with net credits
    over_credited: list[str] = field(default_factory=list)
    under_credited: list[str] = field(default_factory=list)
    money_with_a_person: list[str] = field(default_factory=list)  #: kept money, not credited, a person decides
    double_order: list[str] = field(default_factory=list)
    double_payment: list[str] = field(default_factory=list)
    uncredited_payments: list[str] = field(default_factory=list)  #: captured+kept+matching, never credited
    credit_without_capture: list[str] = field(default_factory=list)  #: payment ids
    credited_after_decision: list[str] = field(default_factory=list)  #: order ids
    double_refunds: list[str] = field(default_factory=list)  #: payment ids
    refunds_out_of_step: list[str] = field(default_factory=list)  #: payment ids
    disputes_out_of_step: list[str] = field(default_factory=list)  #: dispute ids
    stuck_refunds: list[str] = field(default_factory=list)  #: order ids with a refund requested/pending
    shortfall: list[str] = field(default_factory=list)  #: order ids
    lost_captures: list[str] = field(default_factory=list)  #: payment ids
    org_mismatch: list[str] = field(default_factory=list)
    balance_mismatch: list[str] = field(default_factory=list)
    org_detail: dict[str, str] = field(default_factory=dict)
    #: why an order or a payment failed a check (ledger vs entitled, amounts refunded, dispute states)
    detail: dict[str, str] = field(default_factory=dict)

    def failing_orders(self, truth: Iterable[GatewayPayment]) -> list[str]:
        """Order ids behind every failure (payment and dispute ids mapped to their orders), for the timelines."""
        truth = list(truth)
        by_payment = {p.payment_id: p.order_id for p in truth}
        by_dispute = {d.dispute_id: p.order_id for p in truth for d in p.disputes}
        ids: set[str | None] = {*self.over_credited, *self.under_credited, *self.double_order,
                                *self.credited_after_decision, *self.stuck_refunds, *self.shortfall}
        for payments in (self.double_payment, self.uncredited_payments, self.credit_without_capture,
                         self.double_refunds, self.refunds_out_of_step, self.lost_captures):
            ids |= {by_payment.get(pid) for pid in payments}
        ids |= {by_dispute.get(did) or self.detail.get(f"order-of:{did}") for did in self.disputes_out_of_step}
        return sorted(i for i in ids if i)


def matches(order: OurOrder, payment: GatewayPayment) -> bool:
    return payment.amount_minor == order.amount_minor and payment.currency == order.currency


def entitled(order: OurOrder, payment: GatewayPayment | None) -> int:
    """The credits the money the gateway still holds for the order's credited payment pays for:
    credits × (amount − taken) ÷ amount, rounded down once for the whole order (``money.entitled_credits``)."""
    if payment is None or not payment.captured or order.amount_minor <= 0:
        return 0
    held = max(0, order.amount_minor - payment.taken_minor)
    return order.credits * held // order.amount_minor


def judge(truth: Iterable[GatewayPayment], ours: Ours, asked: Mapping[str, int] | None = None) -> Verdict:
    """Compare the gateway's truth with our database; see the module's docstring for each promise.

    ``asked``: payment id -> how many refunds the harness asked us for through our API (each counted once
    however often it was sent); None skips that comparison."""
    verdict = Verdict()
    truth = list(truth)
    payment_of = {(p.gateway, p.payment_id): p for p in truth}
    payments_by_order: dict[str, list[GatewayPayment]] = defaultdict(list)
    for p in truth:
        if p.order_id:
            payments_by_order[p.order_id].append(p)
    rows_by_order: dict[str, list[LedgerRow]] = defaultdict(list)
    grants_by_order: dict[str, list[LedgerRow]] = defaultdict(list)
    grants_by_payment: Counter[tuple[str, str]] = Counter()
    for row in ours.ledger:
        rows_by_order[row.order_id].append(row)
        if row.grant:
            grants_by_order[row.order_id].append(row)
            grants_by_payment[(row.gateway, row.payment_id)] += 1

    expected_by_org: Counter[str] = Counter()
    for order in ours.orders.values():
        expected = _judge_order(order, rows_by_order.get(order.id, []), grants_by_order.get(order.id, []),
                                payments_by_order.get(order.id, []), payment_of, ours, verdict)
        expected_by_org[order.organisation_id] += expected

    for row in ours.ledger:
        paid = payment_of.get((row.gateway, row.payment_id))
        if row.grant and (paid is None or not paid.captured):
            verdict.credit_without_capture.append(row.payment_id)
    for p in truth:
        its_order = ours.orders.get(p.order_id or "")
        if its_order is None or not matches(its_order, p):
            continue
        order = its_order
        person = order.state in WITH_A_PERSON or bool(ours.reviews.get(order.id))
        if p.kept and grants_by_payment[(p.gateway, p.payment_id)] == 0 and not person:
            verdict.uncredited_payments.append(p.payment_id)
        if p.status == "authorized" and order.state != "paid" and not person:
            verdict.lost_captures.append(p.payment_id)
    for (_gateway, payment_id), grants in grants_by_payment.items():  # a payment of no order we hold, or mismatched
        if grants > 1:
            verdict.double_payment.append(payment_id)

    _judge_refunds(truth, ours, grants_by_payment, asked, verdict)
    _judge_disputes(truth, ours, verdict)

    granted_by_org: Counter[str] = Counter()
    for row in ours.ledger:
        granted_by_org[row.organisation_id] += row.credits
    for org in sorted(set(granted_by_org) | set(expected_by_org) | set(ours.balances)):
        granted, expected = granted_by_org.get(org, 0), expected_by_org.get(org, 0)
        if granted != expected:
            verdict.org_mismatch.append(org)
            verdict.org_detail[org] = f"ledger {granted:,} != entitled {expected:,}"
        if org in ours.balances and ours.balances[org] != granted:
            verdict.balance_mismatch.append(org)
            verdict.org_detail.setdefault(org, f"balance {ours.balances[org]:,} != ledger {granted:,}")
    for name in Verdict.__dataclass_fields__:
        value = getattr(verdict, name)
        if isinstance(value, list):
            setattr(verdict, name, sorted(set(value)))
    return verdict


def _judge_order(order: OurOrder, rows: list[LedgerRow], grants: list[LedgerRow], payments: list[GatewayPayment],
                 payment_of: Mapping[tuple[str, str], GatewayPayment], ours: Ours, verdict: Verdict) -> int:
    """One order's ledger against what it is entitled to; returns what it is entitled to (for its organisation)."""
    actual = sum(row.credits for row in rows)
    decisions = ours.reviews.get(order.id, [])
    person = order.state in WITH_A_PERSON or bool(decisions)
    if len(grants) > 1 or actual > order.credits:
        verdict.double_order.append(order.id)
    if any(row.shortfall for row in rows):
        verdict.shortfall.append(order.id)
    if grants:
        grant = grants[0]
        before = [decision for at, decision in decisions if at <= grant.created_at]
        if before and before[-1] != "credit":  # support closed (or refunded) it, and then it was credited
            verdict.credited_after_decision.append(order.id)
        paid = payment_of.get((grant.gateway, grant.payment_id))
        support_credited = bool(before) and before[-1] == "credit"
        # a grant pays for the order's own captured payment of its amount (another amount only by support's
        # decision), and never after support closed the order
        closed_first = bool(before) and not support_credited
        legit = (paid is not None and paid.captured and paid.order_id == order.id and not closed_first
                 and (matches(order, paid) or support_credited))
        expected = entitled(order, paid) if legit else 0
        why = f"ledger {actual:,} != entitled {expected:,}"
        if paid is not None:
            why += (f" (amount {order.amount_minor:,}, taken {paid.taken_minor:,}: refunded {paid.refunded_minor:,}, "
                    f"disputes held {sum(d.amount_minor for d in paid.disputes if d.held):,})")
    else:
        deserved = order.credits if any(p.kept and matches(order, p) for p in payments) else 0
        expected = 0 if person else deserved
        if deserved and person:
            verdict.money_with_a_person.append(order.id)
        why = f"ledger {actual:,} != {expected:,} (never credited; {'a person has it' if person else 'no person'})"
    verdict.deserving += expected > 0
    verdict.credited += actual > 0
    if actual != expected:
        (verdict.over_credited if actual > expected else verdict.under_credited).append(order.id)
        verdict.detail[order.id] = why
    return expected


def _judge_refunds(truth: list[GatewayPayment], ours: Ours, grants_by_payment: Counter[tuple[str, str]],
                   asked: Mapping[str, int] | None, verdict: Verdict) -> None:
    """Each refund made once and reversed once, in the same state on both sides; none left in flight."""
    ours_by_payment: dict[tuple[str, str], list[OurRefund]] = defaultdict(list)
    ours_by_key: dict[tuple[str, str], OurRefund] = {}
    for r in ours.refunds:
        ours_by_payment[(r.gateway, r.payment_id)].append(r)
        if r.key:
            ours_by_key[(r.gateway, r.key)] = r
        if r.state in REFUND_IN_FLIGHT:
            verdict.stuck_refunds.append(r.order_id)
            verdict.detail[f"stuck:{r.order_id}"] = (f"{r.origin} refund {r.refund_id or r.key} {r.state}"
                                                     f"{'' if r.next_check_planned else ', no check planned'}")
    keys_at_gateway: Counter[tuple[str, str]] = Counter()
    for p in truth:
        for g in p.refunds:
            if g.key:
                keys_at_gateway[(p.gateway, g.key)] += 1
    for p in truth:
        mine = ours_by_payment.get((p.gateway, p.payment_id), [])
        twice = [g.key for g in p.refunds if g.key and keys_at_gateway[(p.gateway, g.key)] > 1]
        asked_here = [g for g in p.refunds if g.key and _asked_of_us(ours_by_key.get((p.gateway, g.key)))]
        ours_done = sum(r.amount_minor for r in mine if r.state == "processed")
        if twice:
            verdict.double_refunds.append(p.payment_id)
            verdict.detail[p.payment_id] = f"{len(twice)} gateway refunds share key(s) {sorted(set(twice))[:2]}"
        elif asked is not None and len(asked_here) > asked.get(p.payment_id, 0):
            verdict.double_refunds.append(p.payment_id)
            verdict.detail[p.payment_id] = (f"{len(asked_here)} refunds at the gateway for "
                                            f"{asked.get(p.payment_id, 0)} asked for")
        elif ours_done > p.refunded_minor:
            verdict.double_refunds.append(p.payment_id)
            verdict.detail[p.payment_id] = (f"we hold {ours_done:,} refunded (processed), the gateway refunded "
                                            f"{p.refunded_minor:,}")
        elif ours_done < p.refunded_minor and grants_by_payment[(p.gateway, p.payment_id)]:
            verdict.refunds_out_of_step.append(p.payment_id)
            verdict.detail[p.payment_id] = f"the gateway refunded {p.refunded_minor:,}, we hold {ours_done:,} processed"
        by_id = {g.refund_id: g for g in p.refunds}
        by_key = {g.key: g for g in p.refunds if g.key}
        for r in mine:
            theirs = by_id.get(r.refund_id or "") or by_key.get(r.key or "")
            if theirs is not None and r.state not in REFUND_IN_FLIGHT and theirs.status != r.state:
                verdict.refunds_out_of_step.append(p.payment_id)
                verdict.detail.setdefault(p.payment_id,
                                          f"refund {theirs.refund_id}: ours {r.state}, gateway {theirs.status}")
    # a grant twice is a double credit (above); any other money event twice is a refund or a hold applied twice
    moves = [row for row in ours.ledger if row.money_event_id and not row.grant]
    events: Counter[tuple[str, str, str]] = Counter((row.gateway, row.entry, row.money_event_id) for row in moves)
    for row in moves:
        if events[(row.gateway, row.entry, row.money_event_id)] > 1:
            verdict.double_refunds.append(row.payment_id)
            verdict.detail[row.payment_id] = f"money event {row.money_event_id} ({row.entry}) in the ledger twice"


def _asked_of_us(refund: OurRefund | None) -> bool:
    """A keyed gateway refund that support asked us for (or one we hold no row of at all)."""
    return refund is None or refund.origin == "support"


def _judge_disputes(truth: list[GatewayPayment], ours: Ours, verdict: Verdict) -> None:
    """Each gateway dispute held by us in its state, phase and hold; none of ours the gateway does not know."""
    mine = {(d.gateway, d.dispute_id): d for d in ours.disputes}
    seen: set[tuple[str, str]] = set()
    for p in truth:
        for g in p.disputes:
            seen.add((p.gateway, g.dispute_id))
            d = mine.get((p.gateway, g.dispute_id))
            if d is None:
                problem = "not held by us"
            elif d.state != g.status or d.held != g.held or (g.phase and d.phase != g.phase):
                problem = f"ours {d.state}/{d.phase or '-'} held={d.held}"
            else:
                continue
            verdict.disputes_out_of_step.append(g.dispute_id)
            verdict.detail[g.dispute_id] = f"gateway {g.status}/{g.phase or '-'}: {problem}"
    for d in ours.disputes:
        if d.source == "gateway" and (d.gateway, d.dispute_id) not in seen:
            verdict.disputes_out_of_step.append(d.dispute_id)
            verdict.detail[d.dispute_id] = f"ours {d.state}: unknown at the gateway"
            verdict.detail[f"order-of:{d.dispute_id}"] = d.order_id


# -- reading the two pictures -------------------------------------------------------------------------------

#: PayGlocal's transaction states in Razorpay's words (payglocal.md; after-capture.md §6.1).
PAYGLOCAL_STATUS = {"SENT_FOR_CAPTURE": "captured", "AUTHORIZED": "authorized", "SENT_FOR_REFUND": "refunded",
                    "CREATED": "created", "INPROGRESS": "created", "REVERSED": "failed"}
#: A PayGlocal refund is accepted at once (SENT_FOR_REFUND) or refused (REQUEST_ERROR): after-capture.md §5.
PAYGLOCAL_REFUND_STATUS = {"SENT_FOR_REFUND": "processed", "REQUEST_ERROR": "failed"}


def razorpay_disputes(sim) -> list[dict[str, Any]]:
    """Every Razorpay dispute (``/_sim/state`` leaves them out): from an in-process simulator or over HTTP."""
    if hasattr(sim, "disputes_of"):  # simulator.Simulator, in-process (the unit tests)
        return sim.disputes_of()
    return sim_call(sim, "GET", "/_sim/razorpay/disputes")["disputes"]


def gateway_truth(sim, harness_refund_ids: Collection[str] = ()) -> list[GatewayPayment]:
    """Every payment attempt the simulator holds, both gateways, with its refunds and disputes, read from its
    state (``sim.state()``: the ``/_sim/state`` JSON, through :class:`ops.simulator_client.SimulatorClient` or an
    in-process simulator alike). ``harness_refund_ids``: the refunds the harness made at the gateway itself
    (Razorpay's dashboard, the control shortcut), told apart from a lost dispute's own refund that way."""
    harness = set(harness_refund_ids)
    disputes: dict[str, list[GatewayDispute]] = defaultdict(list)
    for d in razorpay_disputes(sim):  # first: a dispute moved between the two reads is newer than its payment
        disputes[d["payment_id"]].append(GatewayDispute(d["id"], d["amount"], d["status"], d.get("phase") or ""))
    state = sim.state(webhooks=False)  # the entities only: the delivery counts are measured separately
    razorpay, payglocal = state["razorpay"], state["payglocal"]
    found: list[GatewayPayment] = []
    receipts = {o["id"]: o.get("receipt") for o in razorpay["orders"]}
    refunds: dict[str, list[GatewayRefund]] = defaultdict(list)
    for r in razorpay["refunds"]:
        notes = r.get("notes")
        key = notes.get("idempotency_key") if isinstance(notes, dict) else None
        refunds[r["payment_id"]].append(GatewayRefund(r["id"], r["amount"], r["status"], key or None,
                                                      r["id"] in harness))
    for p in razorpay["payments"]:
        status = p["status"]
        if status == "captured" and p.get("amount_refunded"):
            status = "partly_refunded"
        found.append(GatewayPayment(
            "razorpay", p["id"], receipts.get(p.get("order_id")), status, p["amount"], p["currency"],
            bool(p.get("captured")), tuple(refunds.get(p["id"], ())), tuple(disputes.get(p["id"], ()))))
    payglocal_refunds: dict[str, list[GatewayRefund]] = defaultdict(list)
    for r in payglocal.get("refunds", []):
        payglocal_refunds[r["originalGid"]].append(GatewayRefund(
            r["gid"], r["amount_minor"], PAYGLOCAL_REFUND_STATUS.get(r["status"], "pending"),
            r.get("merchantTxnId") or None, r["gid"] in harness))
    for t in payglocal["transactions"]:
        status = PAYGLOCAL_STATUS.get(t["status"], "failed")
        its_refunds = tuple(payglocal_refunds.get(t["gid"], ()))
        if status == "captured" and any(r.processed for r in its_refunds):
            status = "partly_refunded"
        found.append(GatewayPayment(
            "payglocal", t["gid"], t.get("merchantTxnId"), status, t["paid_amount_minor"], t["paid_currency"],
            status in ("captured", "partly_refunded", "refunded"), its_refunds))
    return found


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def our_side(connection) -> Ours:
    ours = Ours()
    for row in connection.execute(text("SELECT id, organisation_id, state, credits, amount_minor, currency, gateway "
                                       "FROM orders")):
        ours.orders[row.id] = OurOrder(row.id, row.organisation_id, row.state, row.credits, row.amount_minor,
                                       row.currency, row.gateway)
    for row in connection.execute(text("SELECT order_id, organisation_id, gateway, gateway_payment_id, kind, credits, "
                                       "created_at, entry, money_event_id, shortfall FROM ledger_entries ORDER BY id")):
        ours.ledger.append(LedgerRow(row.order_id, row.organisation_id, row.gateway, row.gateway_payment_id, row.kind,
                                     row.credits, _epoch(row.created_at), row.entry, row.money_event_id,
                                     row.shortfall))
    for row in connection.execute(text("SELECT order_id, action, created_at FROM support_actions "
                                       "WHERE action LIKE 'review_%' AND order_id IS NOT NULL ORDER BY created_at")):
        ours.reviews.setdefault(row.order_id, []).append((_epoch(row.created_at), row.action.removeprefix("review_")))
    for row in connection.execute(text("SELECT order_id, gateway, gateway_payment_id, gateway_refund_id, "
                                       "idempotency_key, amount_minor, state, origin, next_check_at FROM refunds "
                                       "ORDER BY id")):
        ours.refunds.append(OurRefund(row.order_id, row.gateway, row.gateway_payment_id, row.gateway_refund_id,
                                      row.idempotency_key, row.amount_minor, row.state, row.origin,
                                      row.next_check_at is not None))
    for row in connection.execute(text("SELECT order_id, gateway, gateway_dispute_id, gateway_payment_id, "
                                       "amount_minor, state, phase, held, source FROM disputes ORDER BY id")):
        ours.disputes.append(OurDispute(row.order_id, row.gateway, row.gateway_dispute_id, row.gateway_payment_id,
                                        row.amount_minor, row.state, row.phase or "", bool(row.held), row.source))
    ours.balances = dict(connection.execute(text("SELECT id, credit_balance FROM organisations")).all())
    return ours


# -- one snapshot of the run --------------------------------------------------------------------------------


@dataclass
class Tally:
    """One snapshot of everything the run is judged on."""

    orders: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    by_gateway: dict[str, int] = field(default_factory=dict)
    gateway_payments: dict[str, int] = field(default_factory=dict)  #: status -> count, both gateways
    gateway_refunds: dict[str, int] = field(default_factory=dict)  #: gateway:status -> count
    gateway_disputes: dict[str, int] = field(default_factory=dict)  #: status -> count (Razorpay)
    our_refunds: dict[str, int] = field(default_factory=dict)  #: origin:state -> count
    our_disputes: dict[str, int] = field(default_factory=dict)  #: state -> count
    ledger_entries: dict[str, int] = field(default_factory=dict)  #: entry:kind -> count
    verdict: Verdict = field(default_factory=Verdict)
    paid_without_ledger: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)  #: open orders past the late-payment horizon
    open_in_horizon: int = 0  #: open orders still within the horizon (legitimately waiting)
    open_scheduled: int = 0  #: open orders with a gateway check still planned: the service is not done with them
    no_gateway_order: list[str] = field(default_factory=list)  #: open orders never created at the gateway
    needs_review_reasons: dict[str, int] = field(default_factory=dict)
    reviews: dict[str, int] = field(default_factory=dict)  #: support decisions recorded, by decision
    inbox: dict[str, int] = field(default_factory=dict)
    inbox_rejected: dict[str, int] = field(default_factory=dict)  #: reasons, abridged
    dead_letters: dict[str, int] = field(default_factory=dict)  #: queue -> ZCARD of <ns>:<queue>.XQ now
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)  #: from every worker log of the run
    webhooks: dict[str, int] = field(default_factory=dict)
    truth: list[GatewayPayment] = field(default_factory=list, repr=False)  #: what the verdict was computed from
    back_in_review: list[str] = field(default_factory=list)  #: orders decided by support, in needs_review again

    @property
    def inbox_pending(self) -> int:
        return self.inbox.get("pending", 0)

    @property
    def refunds_in_flight(self) -> int:
        """Our refunds still requested or pending."""
        return sum(n for key, n in self.our_refunds.items() if key.rsplit(":", 1)[-1] in REFUND_IN_FLIGHT)

    @property
    def gateway_refunds_pending(self) -> int:
        return sum(n for key, n in self.gateway_refunds.items() if key.endswith(":pending"))

    @property
    def unsettled_money(self) -> int:
        """Money the service has still to act on: credits owed or to take back, payments to credit, captures to
        make, refunds and disputes to catch up with."""
        v = self.verdict
        return (len(v.under_credited) + len(v.over_credited) + len(v.uncredited_payments) + len(v.lost_captures)
                + len(v.refunds_out_of_step) + len(v.disputes_out_of_step))


def _scalars(connection, sql: str, **params) -> list:
    return list(connection.execute(text(sql), params).scalars())


def measure(engine: Engine, sim, redis_client, namespace: str, *, horizon_s: float, log_dir: Path | None = None,
            harness_refund_ids: Collection[str] = (), asked: Mapping[str, int] | None = None) -> Tally:
    """Snapshot the run: gateway truth from the simulator, ours from Postgres, dead letters from Redis/logs.

    The gateway is read first: anything it does later can only be newer than what we compare it with."""
    tally = Tally()
    truth = gateway_truth(sim, harness_refund_ids)
    tally.gateway_payments = dict(Counter(f"{p.gateway}:{p.status}" for p in truth))
    tally.gateway_refunds = dict(Counter(f"{p.gateway}:{r.status}" for p in truth for r in p.refunds))
    tally.gateway_disputes = dict(Counter(f"{d.status}/{d.phase}" for p in truth for d in p.disputes))
    cutoff = datetime.now(UTC) - timedelta(seconds=horizon_s)
    with engine.connect() as c:
        ours = our_side(c)
        tally.by_state = dict(Counter(o.state for o in ours.orders.values()))
        tally.by_gateway = dict(Counter(o.gateway for o in ours.orders.values()))
        tally.orders = len(ours.orders)
        tally.paid_without_ledger = _scalars(c, "SELECT o.id FROM orders o WHERE o.state = 'paid' AND NOT EXISTS "
                                                "(SELECT 1 FROM ledger_entries l WHERE l.order_id = o.id)")
        tally.stuck = _scalars(c, "SELECT id FROM orders WHERE state IN ('created', 'pending') AND created_at < :cut",
                               cut=cutoff)
        tally.open_in_horizon = c.execute(text("SELECT count(*) FROM orders WHERE state IN ('created', 'pending') "
                                               "AND created_at >= :cut"), {"cut": cutoff}).scalar_one()
        tally.open_scheduled = c.execute(text("SELECT count(*) FROM orders WHERE state IN ('created', 'pending') "
                                              "AND next_check_at IS NOT NULL")).scalar_one()
        tally.no_gateway_order = _scalars(c, "SELECT id FROM orders WHERE state IN ('created', 'pending') "
                                             "AND gateway_order_id IS NULL")
        tally.needs_review_reasons = dict(c.execute(text("SELECT coalesce(state_reason, '?'), count(*) FROM orders "
                                                         "WHERE state = 'needs_review' GROUP BY 1")).all())
        tally.inbox = dict(c.execute(text("SELECT status, count(*) FROM inbox_events GROUP BY status")).all())
        rejected = c.execute(text("SELECT kind, left(reason, 48), count(*) FROM inbox_events "
                                  "WHERE status IN ('rejected', 'ignored') GROUP BY 1, 2")).all()
        tally.inbox_rejected = {f"{kind}: {reason}": n for kind, reason, n in rejected}
    tally.our_refunds = dict(Counter(f"{r.origin}:{r.state}" for r in ours.refunds))
    tally.our_disputes = dict(Counter(f"{d.state}/{d.phase}" for d in ours.disputes))
    tally.ledger_entries = dict(Counter(f"{row.entry}:{row.kind}" for row in ours.ledger))
    tally.reviews = dict(Counter(decision for decisions in ours.reviews.values() for _, decision in decisions))
    tally.verdict = judge(truth, ours, asked)
    tally.dead_letters = {q: _zcard(redis_client, f"{namespace}:{q}.XQ") for q in QUEUES}
    if log_dir:
        tally.dead_letter_reasons = {**dead_letters_logged(log_dir), **dead_letters_held(redis_client, namespace)}
    tally.webhooks = sim.webhook_stats() if log_dir else {"pending": webhook_backlog(sim)}  # stats(): see there
    tally.truth = truth
    tally.back_in_review = sorted(o for o in ours.reviews
                                  if ours.orders.get(o) and ours.orders[o].state == "needs_review")
    return tally


def _zcard(client, key: str) -> int:
    try:
        return int(client.zcard(key))
    except Exception:  # noqa: BLE001  (a diagnostic read; -1 marks it unreadable)
        return -1


def dead_letters_held(client, namespace: str) -> dict[str, int]:
    """What the dead-letter queues hold now, by queue, actor and the last line of the stored traceback."""
    found: Counter[str] = Counter()
    for queue in QUEUES:
        for key in client.zrange(f"{namespace}:{queue}.XQ", 0, -1):
            raw = client.hget(f"{namespace}:{queue}.XQ.msgs", key)
            message = json.loads(raw) if raw else {}
            error = (message.get("options", {}).get("traceback") or "no traceback").strip().splitlines()[-1][:80]
            found[f"(held) {queue}/{message.get('actor_name')}: {error}"] += 1
    return dict(found)


def dead_letters_logged(log_dir: Path) -> dict[str, int]:
    """Every ``message_dead_lettered`` line the workers wrote, by queue, actor and reason (survives a Redis restart)."""
    found: Counter[str] = Counter()
    for path in sorted(log_dir.glob("worker-*.log")):
        with path.open(errors="replace") as lines:
            for line in lines:
                if "message_dead_lettered" not in line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                detail = (event.get("detail") or "")[:80]
                found[f"{event.get('queue')}/{event.get('actor')}: {event.get('reason')} {detail}".strip()] += 1
    return dict(found)


def idle(tally: Tally, *, refunds: bool = True) -> bool:
    """Nothing is on its way: no webhook queued at the gateway, no stored event waiting, no open order within its
    horizon, no open order with a check planned (a lagging check is not a stuck order) and, unless ``refunds`` is
    False, no refund in flight, neither ours nor at the gateway."""
    quiet = tally.webhooks.get("pending", 0) == 0 and tally.webhooks.get("in_flight", 0) == 0
    quiet = quiet and tally.inbox_pending == 0 and tally.open_in_horizon == 0 and tally.open_scheduled == 0
    return quiet and (not refunds or (tally.refunds_in_flight == 0 and tally.gateway_refunds_pending == 0))


def settled(tally: Tally) -> bool:
    """Nothing more can happen, and every order holds what its money pays for and every authorised one is captured."""
    return idle(tally) and tally.unsettled_money == 0


#: (label in the table and in failures, Verdict attribute, what it compares)
MONEY_CHECKS = (
    ("over-credited", "over_credited",
     "orders: ledger > credits × (amount − refunded − disputes held) ÷ amount at the gateway"),
    ("under-credited", "under_credited", "orders: ledger < what the money kept at the gateway pays for"),
    ("captured+kept, not credited", "uncredited_payments", "payments: matching, kept, no grant, nobody has it"),
    ("credited without a capture", "credit_without_capture", "payments never captured (or unknown) at the gateway"),
    ("credited after a support decision", "credited_after_decision", "orders: granted after support closed them"),
    ("double-credited orders", "double_order", "orders: >1 grant, or more than the order's credits"),
    ("double-credited payments", "double_payment", "payments: >1 grant for one gateway payment id"),
    ("double refunds", "double_refunds",
     "payments: >1 gateway refund per key or per request, more reversed than refunded, an event twice"),
    ("refunds out of step", "refunds_out_of_step", "payments: refunded at the gateway beyond ours, or states differ"),
    ("disputes out of step", "disputes_out_of_step", "disputes: our state / phase / hold differs from the gateway's"),
    ("refunds stuck (requested/pending)", "stuck_refunds", "orders: a refund of ours still in flight at quiescence"),
    ("shortfall recorded", "shortfall", "orders: a reversal could not take credits (nobody spends in the run)"),
    ("lost capture (authorised, uncaptured)", "lost_captures", "payments: matching, authorised, order not paid"),
    ("organisation credits != entitled", "org_mismatch", "organisations: sum of ledger credits vs their orders"),
    ("balance mismatch", "balance_mismatch", "organisations: balance != sum of ledger credits"),
)


def failures(tally: Tally) -> list[str]:
    """Broken promises, each with a few example ids; empty when the run passed."""
    v = tally.verdict
    checks = [(label, getattr(v, attr)) for label, attr, _ in MONEY_CHECKS]
    checks += [("paid without a ledger entry", tally.paid_without_ledger), ("stuck past the horizon", tally.stuck)]
    found = [f"{name}: {len(ids)} e.g. {', '.join(map(str, ids[:5]))}" for name, ids in checks if ids]
    if tally.inbox_pending:
        found.append(f"inbox unprocessed: {tally.inbox_pending}")
    return found


def timelines(engine: Engine, order_ids: list[str], truth: Iterable[GatewayPayment] = (),
              verdict: Verdict | None = None) -> str:
    """What we hold about each order (transitions, payments, events, ledger, refunds, disputes, support) next to
    the gateway's truth (its payments, refunds and disputes) and, given the verdict, why it failed."""
    truth_by_order: dict[str, list[GatewayPayment]] = defaultdict(list)
    for p in truth:
        truth_by_order[p.order_id or ""].append(p)
    out: list[str] = []
    with engine.connect() as c:
        for order_id in order_ids:
            order = c.execute(text("SELECT * FROM orders WHERE id = :id"), {"id": order_id}).mappings().first()
            if order is None:
                out.append(f"== {order_id}: not in the database")
                continue
            out.append(f"== {order_id} ({order['gateway']} {order['gateway_order_id']}) {order['state']}/"
                       f"{order['state_reason']} {order['amount_minor']} {order['currency']} "
                       f"credits={order['credits']} granted={order['granted_payment_id']} "
                       f"manual_capture={order['manual_capture']} created {order['created_at']:%H:%M:%S.%f}")
            if verdict is not None:
                for key in (order_id, f"stuck:{order_id}"):
                    if key in verdict.detail:
                        out.append(f"   verdict: {verdict.detail[key]}")
            for p in truth_by_order.get(order_id, []):
                out.append(f"   gateway: {p.payment_id} {p.status} {p.amount_minor} {p.currency} "
                           f"captured={p.captured} taken={p.taken_minor}"
                           + (f" verdict: {verdict.detail[p.payment_id]}" if verdict and p.payment_id in verdict.detail
                              else ""))
                for r in p.refunds:
                    out.append(f"     gateway refund {r.refund_id} {r.amount_minor} {r.status} key={r.key} "
                               f"{'(harness)' if r.by_harness else ''}")
                for d in p.disputes:
                    out.append(f"     gateway dispute {d.dispute_id} {d.amount_minor} {d.status}/{d.phase}"
                               + (f" verdict: {verdict.detail[d.dispute_id]}" if verdict and d.dispute_id in
                                  verdict.detail else ""))
            out += _our_timeline(c, order_id)
    return "\n".join(out)


def _our_timeline(c, order_id: str) -> list[str]:
    rows = []
    for r in c.execute(text("SELECT created_at, from_state, to_state, reason, source, gateway_payment_id "
                            "FROM order_transitions WHERE order_id = :id"), {"id": order_id}):
        rows.append((r.created_at, f"transition {r.from_state} -> {r.to_state} ({r.reason}, {r.source}) "
                                   f"{r.gateway_payment_id or ''}"))
    for r in c.execute(text("SELECT id, received_at, processed_at, kind, event_type, event_id, status, reason, "
                            "gateway_payment_id FROM inbox_events WHERE order_id = :id"), {"id": order_id}):
        done = f", processed {r.processed_at:%H:%M:%S.%f}" if r.processed_at else ""
        rows.append((r.received_at, f"inbox #{r.id} {r.kind} {r.event_type} {r.event_id} "
                                    f"{r.gateway_payment_id or ''} -> {r.status} ({r.reason}){done}"))
    for r in c.execute(text("SELECT created_at, entry, kind, credits, shortfall, money_event_id, gateway_payment_id "
                            "FROM ledger_entries WHERE order_id = :id"), {"id": order_id}):
        rows.append((r.created_at, f"ledger {r.entry} {r.kind} {r.credits:+,} (shortfall {r.shortfall}) "
                                   f"{r.money_event_id} {r.gateway_payment_id}"))
    for r in c.execute(text("SELECT created_at, updated_at, gateway_refund_id, idempotency_key, amount_minor, state, "
                            "wire_status, origin, covered_by_dispute, check_count, next_check_at FROM refunds "
                            "WHERE order_id = :id"), {"id": order_id}):
        rows.append((r.created_at, f"refund {r.origin} {r.gateway_refund_id} key={r.idempotency_key} "
                                   f"{r.amount_minor} -> {r.state} ({r.wire_status}) covered_by={r.covered_by_dispute} "
                                   f"checks={r.check_count} next={r.next_check_at} (last update "
                                   f"{r.updated_at:%H:%M:%S.%f})"))
    for r in c.execute(text("SELECT created_at, updated_at, gateway_dispute_id, amount_minor, state, phase, held, "
                            "generation FROM disputes WHERE order_id = :id"), {"id": order_id}):
        rows.append((r.created_at, f"dispute {r.gateway_dispute_id} {r.amount_minor} -> {r.state}/{r.phase} "
                                   f"held={r.held} generation={r.generation} (last update {r.updated_at:%H:%M:%S.%f})"))
    for r in c.execute(text("SELECT created_at, action, requested_by, outcome FROM support_actions "
                            "WHERE order_id = :id"), {"id": order_id}):
        rows.append((r.created_at, f"support {r.action} by {r.requested_by}: {r.outcome}"))
    for r in c.execute(text("SELECT gateway_payment_id, status, amount_minor, amount_refunded_minor, currency, "
                            "flag_reason, updated_at FROM gateway_payments WHERE order_id = :id"), {"id": order_id}):
        rows.append((r.updated_at, f"payment row {r.gateway_payment_id} {r.status} {r.amount_minor} "
                                   f"(refunded {r.amount_refunded_minor}) {r.currency} flag={r.flag_reason} "
                                   "(last update)"))
    return [f"   {at:%H:%M:%S.%f} {line}" for at, line in sorted(rows, key=lambda pair: pair[0])]


def render(tally: Tally, run: dict, console: Console | None = None) -> None:
    """Print the run's table: the promises first, then what happened and how fast."""
    console = console or Console(width=140)
    v = tally.verdict
    table = Table(title=f"chaos run: {run.get('orders_driven', 0):,} orders driven", show_lines=False)
    table.add_column("measure", style="bold")
    table.add_column("value", justify="right")
    table.add_column("", style="dim")

    def bad(ids_or_count) -> str:
        n = len(ids_or_count) if isinstance(ids_or_count, list) else ids_or_count
        return f"[red]{n:,}[/red]" if n else "0"

    table.add_row("orders (database)", f"{tally.orders:,}", _fmt(tally.by_state))
    table.add_row("  by gateway", "", _fmt(tally.by_gateway))
    table.add_row("gateway payments", f"{sum(tally.gateway_payments.values()):,}", _fmt(tally.gateway_payments))
    table.add_row("gateway refunds", f"{sum(tally.gateway_refunds.values()):,}", _fmt(tally.gateway_refunds))
    table.add_row("gateway disputes", f"{sum(tally.gateway_disputes.values()):,}", _fmt(tally.gateway_disputes))
    table.add_row("our refunds", f"{sum(tally.our_refunds.values()):,}", _fmt(tally.our_refunds))
    table.add_row("our disputes", f"{sum(tally.our_disputes.values()):,}", _fmt(tally.our_disputes))
    table.add_row("ledger entries", f"{sum(tally.ledger_entries.values()):,}", _fmt(tally.ledger_entries))
    table.add_row("orders whose money pays for credits", f"{v.deserving:,}",
                  f"credited here: {v.credited:,}; paid: {tally.by_state.get('paid', 0):,}")
    for label, attr, what in MONEY_CHECKS:
        ids = getattr(v, attr)
        if attr in ("org_mismatch", "balance_mismatch"):
            extra = ", ".join(f"{i} ({v.org_detail.get(i, '')})" for i in ids[:2])
        else:
            extra = ", ".join(ids[:2])
        table.add_row(label, bad(ids), f"{what}{': ' + extra if extra else ''}"[:110])
    table.add_row("paid without a ledger entry", bad(tally.paid_without_ledger), "")
    table.add_row("money kept, a person decides", f"{len(v.money_with_a_person):,}",
                  "needs_review / closed, not credited")
    table.add_row("needs_review now", f"{tally.by_state.get('needs_review', 0):,}", _fmt(tally.needs_review_reasons))
    table.add_row("support decisions", f"{sum(tally.reviews.values()):,}",
                  f"{_fmt(tally.reviews)}; back in needs_review after a decision: {len(tally.back_in_review):,}")
    table.add_row("stuck (open past the horizon)", bad(tally.stuck),
                  f"of which never created at the gateway: {len(tally.no_gateway_order)}")
    table.add_row("open within the horizon", f"{tally.open_in_horizon:,}",
                  f"legitimately waiting; open with a check planned: {tally.open_scheduled:,}")
    table.add_row("inbox unprocessed", bad(tally.inbox_pending), _fmt(tally.inbox))
    for reason, n in sorted(tally.inbox_rejected.items(), key=lambda kv: -kv[1])[:6]:
        table.add_row("  inbox rejected/ignored", f"{n:,}", reason)
    table.add_row("dead letters (XQ now)", f"{sum(max(0, n) for n in tally.dead_letters.values()):,}",
                  _fmt(tally.dead_letters))
    for reason, n in sorted(tally.dead_letter_reasons.items(), key=lambda kv: -kv[1])[:8]:
        table.add_row("  dead-lettered (logs)", f"{n:,}", reason)
    table.add_row("webhook deliveries", f"{tally.webhooks.get('deliveries', 0):,}",
                  _fmt({k: v for k, v in tally.webhooks.items() if k != "deliveries"}))
    for key, label in (("kills", "worker kills (kill -9)"), ("worker_restarts", "worker restarts"),
                       ("redis_restarts", "Redis restarts"), ("db_terminations", "DB terminations"),
                       ("unexpected_exits", "unexpected process exits"), ("fault_errors", "fault injection errors"),
                       ("refunds_made_due", "refund checks made due (drain)")):
        table.add_row(label, f"{run.get(key, 0)}", str(run.get(key + "_detail", ""))[:90])
    table.add_row("driver", f"{run.get('orders_driven', 0):,}", _fmt(run.get("driver", {})))
    table.add_row("drive phase", f"{run.get('drive_s', 0):.0f} s", f"{run.get('orders_per_s', 0):.1f} orders/s")
    table.add_row("drain phase", f"{run.get('drain_s', 0):.0f} s", run.get("drain_end", ""))
    table.add_row("elapsed", f"{run.get('elapsed_s', 0):.0f} s", f"logs: {run.get('log_dir', '')}")
    console.print(table)


def _fmt(counts: dict) -> str:
    return " ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in sorted(counts.items()))
