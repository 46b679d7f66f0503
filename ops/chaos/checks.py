"""What a chaos run must end with, measured from the gateway's truth (the simulator's memory), the database,
Redis and the logs.

The money checks are pure functions of two pictures, so that each one can be fed crafted input
(``tests/e2e/test_chaos_checks.py``):

- the gateway's truth, :class:`GatewayPayment` rows read from the simulator (:func:`gateway_truth`):
  every payment attempt, its status, amount and currency, whether it was ever captured and when it was
  refunded (the harness records the refunds it makes; the simulator's own refund entities otherwise);
- ours, :class:`Ours` read from Postgres (:func:`our_side`): orders, ledger rows, support review
  decisions, when we processed a refund event, balances.

:func:`judge` compares them (:class:`Verdict`); :func:`measure` takes one snapshot (:class:`Tally`);
:func:`settled` says whether the run may stop draining; :func:`failures` lists what breaks a promise;
:func:`render` prints the table; :func:`timelines` tells what we hold about a few failing orders.

An order *deserves* its credits when the gateway holds money for it: one of its payments is captured,
not refunded, for the order's exact amount and currency. The promises, each of which can fail:

- over-credited: an order credited (its ledger rows summed: a reversal with negative credits counts)
  beyond what it deserves, and no person has it: not in ``needs_review``, no support decision. A refund
  after the credit must send the order to ``needs_review``; a credit written after we had processed the
  payment's refund event is a failure even there (we knew the money was gone);
- under-credited: an order that deserves credits, holds fewer, and no person has it (not in
  ``needs_review``/``closed``, no support decision);
- per organisation: the credits in its ledger rows equal what its orders deserve (orders a person has
  count as they stand; what was credited after a support decision does not), and its balance equals its
  ledger;
- per gateway payment: a captured, kept, matching payment is credited exactly once (ledger rows counted
  by payment id, not by order) unless its order waits for a person; no ledger row names a payment the
  gateway never captured; none names a refunded one outside ``needs_review`` or a support decision;
- lost capture: an authorised, matching payment left uncaptured at the gateway on an order that is not
  paid (nor in review or closed) once the run has drained: our capture was missed.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, text

from ops.chaos.customers import webhook_backlog

#: ``worker.broker.QUEUES``, spelled out: importing ``worker.broker`` would build a broker from the environment.
QUEUES = ("recon_priority", "recon_webhooks", "recon_sweep")
#: Order states in which a person has the order: the machine neither credits nor captures for it.
WITH_A_PERSON = frozenset({"needs_review", "closed"})

# -- the two pictures ------------------------------------------------------------------------------------


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
    refunded_at: float | None = None  #: epoch seconds, when refunded

    @property
    def kept(self) -> bool:
        """Money the gateway holds for the merchant: captured and nothing refunded."""
        return self.status == "captured"


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
    kind: str
    credits: int
    created_at: float  #: epoch seconds

    @property
    def reversal(self) -> bool:
        return self.credits < 0 or "revers" in self.kind


@dataclass
class Ours:
    """What our database holds, as far as the money checks need it."""

    orders: dict[str, OurOrder] = field(default_factory=dict)
    ledger: list[LedgerRow] = field(default_factory=list)
    #: order id -> (epoch seconds, decision) of each support review decision, oldest first
    reviews: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    #: (gateway, payment id) -> when we first processed a refund event naming that payment (epoch seconds)
    refund_known_at: dict[tuple[str, str], float] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)


@dataclass
class Verdict:
    """What :func:`judge` found; every list holds ids (orders, payments or organisations), sorted."""

    deserving: int = 0  #: orders the gateway holds money for
    credited: int = 0  #: orders with net credits
    over_credited: list[str] = field(default_factory=list)
    credited_after_refund_known: list[str] = field(default_factory=list)  #: payment ids
    credited_while_refund_in_flight: list[str] = field(default_factory=list)  #: payment ids; flagged, not failures
    refunded_after_credit_flagged: list[str] = field(default_factory=list)  #: order ids in review or decided
    under_credited: list[str] = field(default_factory=list)
    money_with_a_person: list[str] = field(default_factory=list)  #: deserving, not credited, a person decides
    double_order: list[str] = field(default_factory=list)
    double_payment: list[str] = field(default_factory=list)
    uncredited_payments: list[str] = field(default_factory=list)  #: captured+kept+matching, never credited
    credit_without_capture: list[str] = field(default_factory=list)  #: payment ids
    credit_for_refunded: list[str] = field(default_factory=list)  #: payment ids, unflagged
    credited_after_decision: list[str] = field(default_factory=list)  #: order ids
    lost_captures: list[str] = field(default_factory=list)  #: payment ids
    org_mismatch: list[str] = field(default_factory=list)
    balance_mismatch: list[str] = field(default_factory=list)
    org_detail: dict[str, str] = field(default_factory=dict)

    def failing_orders(self, truth: Iterable[GatewayPayment]) -> list[str]:
        """Order ids behind every failure (payment ids mapped to their orders), for the timelines."""
        by_payment = {p.payment_id: p.order_id for p in truth}
        ids = set(self.over_credited) | set(self.under_credited) | set(self.double_order) | \
            set(self.credited_after_decision)
        for payments in (self.credited_after_refund_known, self.double_payment, self.uncredited_payments,
                         self.credit_without_capture, self.credit_for_refunded, self.lost_captures):
            ids |= {by_payment.get(pid) for pid in payments}
        return sorted(i for i in ids if i)


def matches(order: OurOrder, payment: GatewayPayment) -> bool:
    return payment.amount_minor == order.amount_minor and payment.currency == order.currency


def judge(truth: Iterable[GatewayPayment], ours: Ours) -> Verdict:
    """Compare the gateway's truth with our database; see the module's docstring for each promise."""
    verdict = Verdict()
    truth = list(truth)
    payment_of = {(p.gateway, p.payment_id): p for p in truth}
    payments_by_order: dict[str, list[GatewayPayment]] = defaultdict(list)
    for p in truth:
        if p.order_id:
            payments_by_order[p.order_id].append(p)
    rows_by_order: dict[str, list[LedgerRow]] = defaultdict(list)
    grants_by_payment: Counter[tuple[str, str]] = Counter()
    for row in ours.ledger:
        rows_by_order[row.order_id].append(row)
        grants_by_payment[(row.gateway, row.payment_id)] += -1 if row.reversal else 1

    def deserves(order: OurOrder) -> bool:
        return any(p.kept and matches(order, p) for p in payments_by_order.get(order.id, ()))

    expected_by_org: Counter[str] = Counter()
    for order in ours.orders.values():
        rows = rows_by_order.get(order.id, [])
        actual = sum(row.credits for row in rows)
        net_grants = sum(-1 if row.reversal else 1 for row in rows)
        deserved = order.credits if deserves(order) else 0
        verdict.deserving += bool(deserved)
        verdict.credited += actual > 0
        decisions = ours.reviews.get(order.id, [])
        if net_grants > 1 or actual > order.credits:
            verdict.double_order.append(order.id)
        if decisions:  # a person decided: what stood then (and what the decision granted) is what counts
            decided_at = decisions[-1][0]
            standing = sum(row.credits for row in rows if row.created_at <= decided_at)
            if actual > standing:
                verdict.credited_after_decision.append(order.id)
            expected = standing
        elif order.state in WITH_A_PERSON:  # a person will decide: anything between nothing and the order's credits
            expected = min(max(actual, 0), order.credits)
            if deserved and actual <= 0:
                verdict.money_with_a_person.append(order.id)
        else:
            expected = deserved
            if actual > deserved:
                verdict.over_credited.append(order.id)
            elif actual < deserved:
                verdict.under_credited.append(order.id)
        if decisions and deserved and actual <= 0:
            verdict.money_with_a_person.append(order.id)
        expected_by_org[order.organisation_id] += expected

    flagged = {o.id for o in ours.orders.values() if o.state == "needs_review" or ours.reviews.get(o.id)}
    for row in ours.ledger:
        if row.reversal:
            continue
        paid = payment_of.get((row.gateway, row.payment_id))
        order = ours.orders.get(row.order_id)
        if paid is None or not paid.captured:
            verdict.credit_without_capture.append(row.payment_id)
            continue
        if paid.status not in ("refunded", "partly_refunded") or grants_by_payment[(row.gateway, row.payment_id)] <= 0:
            continue
        known = ours.refund_known_at.get((row.gateway, row.payment_id))
        if known is not None and known < row.created_at:
            verdict.credited_after_refund_known.append(row.payment_id)
        elif paid.refunded_at is not None and paid.refunded_at < row.created_at:
            verdict.credited_while_refund_in_flight.append(row.payment_id)
        if order is None or order.id not in flagged:
            verdict.credit_for_refunded.append(row.payment_id)
        elif paid.refunded_at is None or paid.refunded_at >= row.created_at:
            verdict.refunded_after_credit_flagged.append(order.id)

    for p in truth:
        order = ours.orders.get(p.order_id or "")
        if order is None or not matches(order, p):
            continue
        person = order.state in WITH_A_PERSON or bool(ours.reviews.get(order.id))
        if grants_by_payment[(p.gateway, p.payment_id)] > 1:
            verdict.double_payment.append(p.payment_id)
        if p.kept and grants_by_payment[(p.gateway, p.payment_id)] <= 0 and not person:
            verdict.uncredited_payments.append(p.payment_id)
        if p.status == "authorized" and order.state != "paid" and not person:
            verdict.lost_captures.append(p.payment_id)
    for (_gateway, payment_id), grants in grants_by_payment.items():  # a payment of no order we hold, or mismatched
        if grants > 1 and payment_id not in verdict.double_payment:
            verdict.double_payment.append(payment_id)

    granted_by_org: Counter[str] = Counter()
    for row in ours.ledger:
        granted_by_org[row.organisation_id] += row.credits
    for org in sorted(set(granted_by_org) | set(expected_by_org) | set(ours.balances)):
        granted, expected = granted_by_org.get(org, 0), expected_by_org.get(org, 0)
        if granted != expected:
            verdict.org_mismatch.append(org)
            verdict.org_detail[org] = f"ledger {granted:,} != deserved {expected:,}"
        if org in ours.balances and ours.balances[org] != granted:
            verdict.balance_mismatch.append(org)
    for name in Verdict.__dataclass_fields__:
        value = getattr(verdict, name)
        if isinstance(value, list):
            setattr(verdict, name, sorted(set(value)))
    return verdict


# -- reading the two pictures -------------------------------------------------------------------------------

#: PayGlocal's transaction states in Razorpay's words (payglocal.md; after-capture.md §6.1).
PAYGLOCAL_STATUS = {"SENT_FOR_CAPTURE": "captured", "AUTHORIZED": "authorized", "SENT_FOR_REFUND": "refunded",
                    "CREATED": "created", "INPROGRESS": "created", "REVERSED": "failed"}


def gateway_truth(sim, refunded_at: Mapping[str, float] | None = None) -> list[GatewayPayment]:
    """Every payment attempt the simulator holds, both gateways, read from its state (``sim.state()``: the
    ``/_sim/state`` JSON, through :class:`ops.simulator_client.SimulatorClient` or an in-process simulator alike).
    ``refunded_at``: payment id -> epoch seconds of the refunds the harness made (the simulator keeps none for
    PayGlocal, whole seconds for Razorpay)."""
    refunded_at = dict(refunded_at or {})
    state = sim.state(webhooks=False)  # the entities only: the delivery counts are measured separately
    razorpay, payglocal = state["razorpay"], state["payglocal"]
    found: list[GatewayPayment] = []
    receipts = {o["id"]: o.get("receipt") for o in razorpay["orders"]}
    refund_times: dict[str, float] = {}
    for refund in razorpay["refunds"]:
        refund_times[refund["payment_id"]] = max(refund_times.get(refund["payment_id"], 0), refund["created_at"] + 1)
    for p in razorpay["payments"]:
        status = p["status"]
        if status == "captured" and p.get("amount_refunded"):
            status = "partly_refunded"
        found.append(GatewayPayment(
            "razorpay", p["id"], receipts.get(p.get("order_id")), status, p["amount"], p["currency"],
            bool(p.get("captured")), refunded_at.get(p["id"], refund_times.get(p["id"]))
            if status in ("refunded", "partly_refunded") else None))
    for t in payglocal["transactions"]:
        status = PAYGLOCAL_STATUS.get(t["status"], "failed")
        found.append(GatewayPayment(
            "payglocal", t["gid"], t.get("merchantTxnId"), status, t["paid_amount_minor"], t["paid_currency"],
            status in ("captured", "refunded"), refunded_at.get(t["gid"]) if status == "refunded" else None))
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
                                       "created_at FROM ledger_entries ORDER BY id")):
        ours.ledger.append(LedgerRow(row.order_id, row.organisation_id, row.gateway, row.gateway_payment_id, row.kind,
                                     row.credits, _epoch(row.created_at)))
    for row in connection.execute(text("SELECT order_id, action, created_at FROM support_actions "
                                       "WHERE action LIKE 'review_%' AND order_id IS NOT NULL ORDER BY created_at")):
        ours.reviews.setdefault(row.order_id, []).append((_epoch(row.created_at), row.action.removeprefix("review_")))
    for row in connection.execute(text("SELECT gateway, gateway_payment_id, min(processed_at) AS at FROM inbox_events "
                                       "WHERE status = 'processed' AND event_type LIKE 'refund.%' "
                                       "AND gateway_payment_id IS NOT NULL GROUP BY 1, 2")):
        ours.refund_known_at[(row.gateway, row.gateway_payment_id)] = _epoch(row.at)
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
    def unsettled_money(self) -> int:
        """Money the service has still to act on: credits owed, payments to credit, captures to make."""
        v = self.verdict
        return len(v.under_credited) + len(v.uncredited_payments) + len(v.lost_captures)


def _scalars(connection, sql: str, **params) -> list:
    return list(connection.execute(text(sql), params).scalars())


def measure(engine: Engine, sim, redis_client, namespace: str, *, horizon_s: float, log_dir: Path | None = None,
            refunded_at: Mapping[str, float] | None = None) -> Tally:
    """Snapshot the run: gateway truth from the simulator, ours from Postgres, dead letters from Redis/logs.

    The gateway is read first: anything it does later can only be newer than what we compare it with."""
    tally = Tally()
    truth = gateway_truth(sim, refunded_at)
    tally.gateway_payments = dict(Counter(f"{p.gateway}:{p.status}" for p in truth))
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
    tally.reviews = dict(Counter(decision for decisions in ours.reviews.values() for _, decision in decisions))
    tally.verdict = judge(truth, ours)
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


def idle(tally: Tally) -> bool:
    """Nothing is on its way: no webhook queued at the gateway, no stored event waiting, no open order within its
    horizon, no open order with a check planned (a lagging check is not a stuck order)."""
    quiet = tally.webhooks.get("pending", 0) == 0 and tally.webhooks.get("in_flight", 0) == 0
    return quiet and tally.inbox_pending == 0 and tally.open_in_horizon == 0 and tally.open_scheduled == 0


def settled(tally: Tally) -> bool:
    """Nothing more can happen, and every kept payment is credited and every authorised one captured."""
    return idle(tally) and tally.unsettled_money == 0


#: (label in the table and in failures, Verdict attribute, what it compares)
MONEY_CHECKS = (
    ("over-credited", "over_credited", "orders: ledger credits > credits for money the gateway keeps; nobody has it"),
    ("credited after the refund was known", "credited_after_refund_known",
     "payments: ledger row written after we processed its refund event"),
    ("credited a refunded payment (unflagged)", "credit_for_refunded",
     "payments refunded at the gateway, credited, order not in review / decided"),
    ("credited without a capture", "credit_without_capture", "payments never captured (or unknown) at the gateway"),
    ("credited after a support decision", "credited_after_decision", "orders: ledger rows newer than the decision"),
    ("under-credited", "under_credited", "orders: money kept at the gateway, not credited, nobody has it"),
    ("captured+kept, not credited", "uncredited_payments", "payments: matching, kept, no ledger row, nobody has it"),
    ("double-credited orders", "double_order", "orders: >1 net ledger grant, or more than the order's credits"),
    ("double-credited payments", "double_payment", "payments: >1 net ledger grant for one gateway payment id"),
    ("lost capture (authorised, uncaptured)", "lost_captures", "payments: matching, authorised, order not paid"),
    ("organisation credits != deserved", "org_mismatch", "organisations: sum of ledger credits vs their orders"),
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


def timelines(engine: Engine, order_ids: list[str], truth: Iterable[GatewayPayment] = ()) -> str:
    """What we hold about each order (transitions, payments, events, ledger, support) next to the gateway's truth."""
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
                       f"credits={order['credits']} "
                       f"manual_capture={order['manual_capture']} created {order['created_at']:%H:%M:%S.%f}")
            for p in truth_by_order.get(order_id, []):
                when = f" refunded {datetime.fromtimestamp(p.refunded_at, UTC):%H:%M:%S.%f}" if p.refunded_at else ""
                out.append(f"   gateway: {p.payment_id} {p.status} {p.amount_minor} {p.currency} "
                           f"captured={p.captured}{when}")
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
            for r in c.execute(text("SELECT created_at, kind, credits, gateway_payment_id FROM ledger_entries "
                                    "WHERE order_id = :id"), {"id": order_id}):
                rows.append((r.created_at, f"ledger {r.kind} {r.credits:+,} {r.gateway_payment_id}"))
            for r in c.execute(text("SELECT created_at, action, requested_by, outcome FROM support_actions "
                                    "WHERE order_id = :id"), {"id": order_id}):
                rows.append((r.created_at, f"support {r.action} by {r.requested_by}: {r.outcome}"))
            for r in c.execute(text("SELECT gateway_payment_id, status, amount_minor, currency, flag_reason, "
                                    "updated_at FROM gateway_payments WHERE order_id = :id"), {"id": order_id}):
                rows.append((r.updated_at, f"payment row {r.gateway_payment_id} {r.status} {r.amount_minor} "
                                           f"{r.currency} flag={r.flag_reason} (last update)"))
            for at, line in sorted(rows, key=lambda pair: pair[0]):
                out.append(f"   {at:%H:%M:%S.%f} {line}")
    return "\n".join(out)


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
    table.add_row("orders the gateway holds money for", f"{v.deserving:,}",
                  f"credited here: {v.credited:,}; paid: {tally.by_state.get('paid', 0):,}")
    for label, attr, what in MONEY_CHECKS:
        ids = getattr(v, attr)
        extra = ", ".join(f"{i} ({v.org_detail[i]})" for i in ids[:2]) if attr == "org_mismatch" else ", ".join(ids[:2])
        table.add_row(label, bad(ids), f"{what}{': ' + extra if extra else ''}"[:100])
    table.add_row("paid without a ledger entry", bad(tally.paid_without_ledger), "")
    table.add_row("refunded after credit, flagged", f"{len(v.refunded_after_credit_flagged):,}",
                  f"in needs_review or decided; credited while its refund was in flight: "
                  f"{len(v.credited_while_refund_in_flight):,}")
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
                       ("unexpected_exits", "unexpected process exits"), ("fault_errors", "fault injection errors")):
        table.add_row(label, f"{run.get(key, 0)}", str(run.get(key + "_detail", ""))[:90])
    table.add_row("driver", f"{run.get('orders_driven', 0):,}", _fmt(run.get("driver", {})))
    table.add_row("drive phase", f"{run.get('drive_s', 0):.0f} s", f"{run.get('orders_per_s', 0):.1f} orders/s")
    table.add_row("drain phase", f"{run.get('drain_s', 0):.0f} s", run.get("drain_end", ""))
    table.add_row("elapsed", f"{run.get('elapsed_s', 0):.0f} s", f"logs: {run.get('log_dir', '')}")
    console.print(table)


def _fmt(counts: dict) -> str:
    return " ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in sorted(counts.items()))
