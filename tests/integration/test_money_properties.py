"""Money properties of the whole service: a hypothesis state machine on the real database and the simulator.

For 2-4 Razorpay orders (pay-as-you-go, sometimes Pro) and, in some examples, one PayGlocal order of another
organisation, the machine interleaves, in any order,

- the gateway's timeline: checkout attempts (success, decline, timeout, authorise only, window closed, a
  wrong amount), late authorisations of failed payments (inside the 12-minute auto-capture window, after
  it, after the manual window), refunds made at the gateway (the shortcut, processed at once, or a
  Dashboard refund with its lifecycle: pending for ``refund_processed_after_s`` when the example says so,
  or failing), disputes opened on a captured payment and moved (under review, action required, won, lost,
  closed, a won case reopened by pre-arbitration), the gateway's time passing so pending refunds settle,
  and one anomaly: a second payment captured on an order the gateway already holds as paid. Webhooks
  are generated but never sent by the simulator; the machine holds them;
- our inputs: a held webhook delivered (in order, or any old one after newer ones, twice, or its signed
  body replayed under a fresh ``X-Razorpay-Event-Id``, which the signature does not cover) over HTTP to
  the web app or straight into the inbox, then the pending inbox processed; a checkout callback; a
  sweep poll; a support recheck; a review decision; support refunding an order (all, half, a third, one
  rupee; the same request again; one the gateway fails); support recording a PayGlocal chargeback; the
  refund poller; the clock moved on; and any of these with the gateway failing every call for that one
  step (a crash midway: a capture, fetch or refund that never happened, which a later input must finish).

The duplicate-payment policy is ``refund`` (the default) in most examples, ``review`` in the others.

After every step: nothing but gateway errors during a fault step escapes our code; no order or gateway
payment is granted twice, a paid order is granted exactly once, no two ledger rows are for the same
(gateway, entry, money event) and a restore gives back exactly what its hold took; a grant made in a step
is for a payment the gateway holds as captured, of the order's exact amount and currency; a refund
reversal is for a refund the gateway processed; no order ever grants less than 0 or more than it bought;
entering needs_review never grants in the same step; every balance is the sum of its ledger credits; an
inbox row is never left pending by a processing step that returned; no order is planned for a check past
its late-payment horizon. At the end (teardown) in-flight refunds finish (the gateway's time moves on, the
refund poller runs), everything held is delivered and every order polled until nothing changes: money
the gateway keeps is granted exactly once unless a person has the order (needs_review, closed); each
order's credits granted − reversed + restored equal the credits for the money the gateway still holds
for the credited payment (its refunds processed, its disputes holding, its recorded chargebacks; rounded
down per money event), and so per organisation; no refund of ours is left in flight or disagrees with the
gateway; under the refund policy a second captured payment on a credited order is refunded at the
gateway; no matching authorised payment is left uncaptured on an order the gateway does not hold as paid;
and past the late-payment horizon no order is still scheduled for a check.

Size: ``RECON_PROPERTY_EXAMPLES`` (default 25) examples of ``RECON_PROPERTY_STEPS`` (default 25) steps.
``RECON_PROPERTY_STRICT=1`` also fails a grant for a payment the gateway had refunded in full although nothing
we held said so (a webhook snapshot older than a refund no webhook or poll had told us about yet: the refund's
reversal takes the credits back later).
``RECON_PROPERTY_SKIP=name,...`` switches named checks off (see ``CHECKS``) to look at one defect at a time;
``RECON_PROPERTY_LOG=file`` appends every example's story to a file;
``RECON_PROPERTY_SHRINK=0`` reports failures unshrunk (to see quickly whether a size finds something).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from gateways.errors import GatewayError
from simulator import SimulatorError
from tests.integration.money_model import (
    NO_CREDIT_OWED,
    GatewayView,
    OurView,
    credits_for_money_held,
    describe_event,
    empty_database,
    event_order_id,
    gateway_view,
    inbox_status,
    late_authorize,
    let_refunds_finish,
    order_states,
    our_view,
    pay_on_a_paid_order,
    pending_inbox,
)
from tests.support import new_order
from worker.clock import FrozenClock
from worker.services import disputes, refunds
from worker.services.callback import verify_payment
from worker.services.inbox import process_inbox_event
from worker.services.intake import store_webhook
from worker.services.organisations import add_member, create_organisation
from worker.services.poll import reconcile_order
from worker.services.recheck import recheck_order
from worker.services.refunds import RefundRefused, RefundRequest
from worker.services.review import NotInReview, resolve_review

EXAMPLES = int(os.environ.get("RECON_PROPERTY_EXAMPLES", "25"))
STEPS = int(os.environ.get("RECON_PROPERTY_STEPS", "25"))
STRICT = os.environ.get("RECON_PROPERTY_STRICT", "").lower() in ("1", "true", "yes")
LOG = os.environ.get("RECON_PROPERTY_LOG")  # a file every example's story is appended to (what did it explore?)
SHRINK = os.environ.get("RECON_PROPERTY_SHRINK", "1").lower() not in ("0", "false", "no")

#: The named checks; ``RECON_PROPERTY_SKIP`` may switch any of them off.
CHECKS = frozenset({
    "gateway-errors",  # a GatewayError outside a fault step is a bug (a refused capture, say)
    "once",  # one grant per order and per gateway payment; paid <=> granted once, on granted_payment_id; one
    # ledger row per (gateway, entry, money event); a restore undoes exactly its hold; a repeated request is one
    "over-credit",  # a grant is for captured money of the order's exact amount and currency; a refund
    # reversal for a refund the gateway processed; an order grants between 0 and what it bought
    "review-grant",  # entering needs_review never grants in the same step
    "balance",  # credit_balance == sum of the organisation's ledger credits
    "inbox",  # a processing step that returned leaves no row pending
    "credited",  # at the end: money the gateway keeps is credited once, unless a person has the order
    "money",  # at the end: granted - reversed + restored == the credits for the money the gateway still holds
    "emptied",  # at the end: a credited payment the gateway holds none of any more grants nothing (rounding)
    "refunds",  # at the end: no refund of ours in flight or at odds with the gateway; duplicates refunded
    "captured",  # at the end: no matching authorised payment left uncaptured on an order the gateway has not paid
    "schedule",  # after every step and at the end: no check scheduled past the late-payment horizon
})
SKIPPED = {name.strip() for name in os.environ.get("RECON_PROPERTY_SKIP", "").split(",") if name.strip()}
assert SKIPPED <= CHECKS, f"RECON_PROPERTY_SKIP names unknown checks: {sorted(SKIPPED - CHECKS)}"


def on(check: str) -> bool:
    return check not in SKIPPED


SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                    phases=[phase for phase in Phase if SHRINK or phase not in (Phase.shrink, Phase.explain)],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])

ORG = "org-in"
PAYGLOCAL_ORG = "org-us"  #: a US organisation: its orders go to PayGlocal
#: Simulator knobs for the whole run: nothing random, no webhook sent by the simulator itself.
QUIET_KNOBS = {"webhook_url": None, "latency_ms": 0, "error_rate": 0.0, "rate_limit_rate": 0.0, "timeout_rate": 0.0,
               "webhook_duplicates": 1, "shuffle_webhooks": False, "drop_webhooks": False, "auto_capture": True,
               "refund_processed_after_s": 0}

#: Orders are chosen by recency: 0 is the order the latest step touched, 1 the one before... (modulo their
#: number), so that a run tends to tell one order's story while the others go on around it.
ORDER = st.integers(min_value=0, max_value=3)
PICK = st.integers(min_value=0, max_value=7)  # an index into what the rule chooses among, most recent order first
FAULT = st.sampled_from([False, False, False, False, True])  # the gateway fails every call during the step
VIA = st.sampled_from(["http", "store"])
OUTCOMES = st.sampled_from(["success", "success", "decline", "timeout", "authorize_only", "close_window"])
#: ``credited``: paid, and a poll credited it before the story starts (money after the credit gets the steps).
FIRST_ATTEMPT = st.sampled_from(["success", "timeout", "authorize_only", "decline", None, "credited", "credited"])
#: Minutes after creation: inside the auto-capture window (12), after it, after the manual window (7200).
LATE_BY = st.sampled_from([5, 30, 7300])
#: Past the payment window (30 min), a little, past a closed order's check interval (6 h), past the horizon.
CLOCK_STEPS = st.sampled_from([timedelta(minutes=31), timedelta(minutes=1), timedelta(hours=7),
                               timedelta(days=5, hours=1)])
#: How much of a payment a refund, a dispute or a chargeback is about (a third and one rupee round down).
REFUND_AMOUNTS = st.sampled_from(["all", "half", "third", "one rupee"])
DISPUTE_AMOUNTS = st.sampled_from(["all", "half", "third"])
#: A dispute's next move at the gateway; ``pre_arbitration`` reopens a won case.
DISPUTE_MOVES = st.sampled_from(["under_review", "action_required", "won", "won", "lost", "lost", "closed",
                                 "pre_arbitration", "pre_arbitration"])
#: Simulated seconds a Razorpay refund stays pending (0: processed as it is created, like the documented sample).
REFUND_DELAYS = st.sampled_from([0, 0, 600])
#: What support writes: the same amount and reason twice is the same request (the same idempotency key).
REASONS = st.sampled_from(["customer asked", "customer asked", "unused credits"])
#: Refund codes a support request may meet without a bug: spent credits (a hold took them), nothing left to refund.
REFUSALS = frozenset({"credits_spent", "above_captured", "not_captured"})


def part(amount: str, total: int) -> int | None:
    """The minor units ``amount`` names of ``total`` (None: everything still refundable)."""
    return {"all": None, "half": total // 2, "third": total // 3, "one rupee": 100}[amount]


@dataclass(frozen=True)
class Env:
    deps: object
    simulator: object
    http: httpx.Client
    base_settings: object
    base_policy: object


@dataclass(frozen=True)
class OrderRef:
    name: str
    id: str
    gateway_order_id: str
    amount_minor: int
    currency: str
    manual_capture: bool
    gateway: str = "razorpay"
    plan: str = "payg"
    credits: int = 0


class MoneyMachine(RuleBasedStateMachine):
    env: ClassVar[Env | None] = None

    def __init__(self):
        super().__init__()
        env = type(self).env
        self.deps, self.sim, self.http, self.base_settings = env.deps, env.simulator.sim, env.http, env.base_settings
        self.deps.settings, self.deps.policy = self.base_settings, env.base_policy
        self.sim.set_knobs(**QUIET_KNOBS)
        self.sim.reset()
        empty_database(self.deps.engine)
        self.deps.clock = FrozenClock()
        create_organisation(ORG, "Acme India", "IN", deps=self.deps)
        add_member("admin-1", ORG, "admin@acme.example", "admin", deps=self.deps)
        create_organisation(PAYGLOCAL_ORG, "Acme US", "US", deps=self.deps)
        add_member("admin-us", PAYGLOCAL_ORG, "admin@acme-us.example", "admin", deps=self.deps)
        self.orders: list[OrderRef] = []
        self.recent: list[OrderRef] = []  # the orders, the one the latest step touched first
        self.names: dict[str, str] = {}  # gateway payment id -> o1/p2
        self.checkouts: list[tuple[OrderRef, str, str]] = []  # what the checkout handler got: payment id, signature
        self.delivered: set[int] = set()  # indices of simulator events delivered at least once
        self.closed_by_review: set[str] = set()
        self.decided_by_review: set[str] = set()  # orders a person resolved (a duplicate kept by "close" stays)
        self.dispute_refunds: set[str] = set()  # refunds the gateway made because a dispute was lost
        self.chargebacks: dict[str, dict[tuple[int, str], int]] = {}  # order id -> (amount, reason) -> amount
        self.policy = "refund"
        self.story: list[str] = []
        self.fresh_ids = 0
        self.ours: OurView | None = None  # what we held after the previous step
        self.gw: GatewayView | None = None
        self.dirty = True  # a step ran and its invariants have not passed yet

    # --- telling what happened ---------------------------------------------------------------------------

    def _begin(self, text: str) -> None:
        self.dirty = True
        self.story.append(f"{len(self.story) + 1}. {text}")

    def _said(self, text: str) -> None:
        self.story[-1] += f" {text}"

    def _told(self) -> str:
        return "What happened:\n  " + "\n  ".join(self.story)

    def _fail(self, message: str) -> str:
        return f"{message}\n{self._told()}"

    def _name(self, payment_id: str | None, order: OrderRef | None = None) -> str:
        if payment_id is None:
            return "-"
        if payment_id not in self.names and order is not None:
            count = sum(1 for name in self.names.values() if name.startswith(order.name + "/"))
            self.names[payment_id] = f"{order.name}/p{count + 1}"
        return f"{self.names.get(payment_id, '?')}({payment_id})"

    def _short(self, entity_id: str | None, letter: str) -> str:
        """``r2(rfnd_…)`` for a refund, ``d1(disp_…)`` for a dispute: named in the order they are first told."""
        if entity_id is None:
            return "-"
        if entity_id not in self.names:
            self.names[entity_id] = f"{letter}{sum(1 for n in self.names.values() if n.startswith(letter)) + 1}"
        return f"{self.names[entity_id]}({entity_id})"

    def _order(self, index: int) -> OrderRef:
        return self._touch(self.recent[index % len(self.recent)])

    def _touch(self, ref: OrderRef) -> OrderRef:
        self.recent.remove(ref)
        self.recent.insert(0, ref)
        return ref

    def _choose(self, candidates: list, pick: int, order_of):
        """One of ``candidates``, those of the most recently touched orders first; its order is touched."""
        rank = {ref.gateway_order_id: position for position, ref in enumerate(self.recent)}
        chosen = sorted(candidates, key=lambda c: rank[order_of(c).gateway_order_id])[pick % len(candidates)]
        self._touch(order_of(chosen))
        return chosen

    def _order_of(self, gateway_order_id: str) -> OrderRef:
        return next(o for o in self.orders if o.gateway_order_id == gateway_order_id)

    # --- what the rules choose among ---------------------------------------------------------------------

    def _events(self) -> list:
        return [e for e in self.sim.webhook_events() if e.gateway == "razorpay"]

    def _held(self) -> list[int]:
        return [i for i in range(len(self._events())) if i not in self.delivered]

    # Preconditions read the views the invariant took after the previous step (they are current when
    # a rule is chosen); the rules themselves read afresh.

    def _gateway_payments(self, status: str, *, fresh: bool = False, gateway: str | None = "razorpay") -> list:
        ours = {o.gateway_order_id for o in self.orders}
        view = gateway_view(self.sim) if fresh or self.gw is None else self.gw
        return [p for p in view.payments.values() if p.status == status and p.order_id in ours
                and gateway in (None, view.gateway_of.get(p.id))]

    def _paid_at_gateway(self, *, fresh: bool = False) -> list[OrderRef]:
        status = (gateway_view(self.sim) if fresh or self.gw is None else self.gw).order_status
        return [o for o in self.orders if status.get(o.gateway_order_id) == "paid" and o.gateway == "razorpay"]

    def _disputable(self, *, fresh: bool = False) -> list:
        """Razorpay payments of our orders that were captured (refunded ones too: a dispute may follow a refund)."""
        ours = {o.gateway_order_id for o in self.orders if o.gateway == "razorpay"}
        view = gateway_view(self.sim) if fresh or self.gw is None else self.gw
        return [p for p in view.payments.values() if p.captured and p.order_id in ours]

    def _disputes(self, *, fresh: bool = False) -> list:
        view = gateway_view(self.sim) if fresh or self.gw is None else self.gw
        return list(view.disputes.values())

    def _credited(self, *, fresh: bool = False, gateway: str | None = None) -> list[OrderRef]:
        """Orders we hold as credited (what support sees in ``recon order show``)."""
        orders = (our_view(self.deps) if fresh or self.ours is None else self.ours).orders
        return [o for o in self.orders if orders[o.id].granted_payment_id and gateway in (None, o.gateway)]

    def _in_review(self, *, fresh: bool = False) -> list[OrderRef]:
        states = (order_states(self.deps) if fresh or self.ours is None
                  else {o.id: o.state for o in self.ours.orders.values()})
        return [o for o in self.orders if states.get(o.id) == "needs_review"]

    # --- our inputs: what may escape, and the inbox ------------------------------------------------------

    def _ours(self, fault: bool, action) -> None:
        """Run one of our inputs; during a fault step the gateway answers every call with a 5xx."""
        if fault:
            self._said("[gateway down for this step]")
            self.sim.set_knobs(error_rate=1.0)
        try:
            action()
        except GatewayError as exc:
            if fault or not on("gateway-errors"):
                self._said(f"-> {type(exc).__name__}: {exc}")
                return
            exc.add_note(self._fail("(a) a gateway error escaped our code outside a fault step"))
            raise
        except Exception as exc:
            exc.add_note(self._fail(f"(a) {type(exc).__name__} escaped our code"))
            raise
        finally:
            if fault:
                self.sim.set_knobs(error_rate=0.0)

    def _process_inbox(self) -> None:
        for inbox_id in pending_inbox(self.deps):
            process_inbox_event(inbox_id, deps=self.deps)
        left = pending_inbox(self.deps)
        assert not (left and on("inbox")), self._fail(f"(f) inbox rows {left} still pending after processing returned")

    def _post(self, index: int, *, via: str, copies: int = 1, fresh_id: bool = False) -> None:
        event = self._events()[index]
        headers = dict(event.headers)
        if fresh_id:
            self.fresh_ids += 1
            headers["X-Razorpay-Event-Id"] = f"evt_Replay{self.fresh_ids:010d}"
        for _ in range(copies):
            if via == "http":
                response = self.http.post("/webhooks/razorpay", content=event.body, headers=headers)
                assert response.status_code == 200, self._fail(
                    f"(a) the web app answered a valid webhook with {response.status_code}: {response.text[:300]}")
            else:
                store_webhook("razorpay", event.body, headers, deps=self.deps)
        self.delivered.add(index)

    def _describe(self, index: int) -> str:
        kind, payment_id, status, about = describe_event(self._events()[index])
        stale = " (stale: newer events were delivered)" if any(i > index for i in self.delivered) else ""
        if about:
            entity_id, rest = about.split(" ", 1)
            about = f" {self._short(entity_id, 'd' if entity_id.startswith('disp_') else 'r')} {rest}"
        return f"e{index} {kind}{about or ''} {self._name(payment_id)} [{status}]{stale}"

    # --- setup -------------------------------------------------------------------------------------------

    @initialize(orders=st.lists(st.tuples(st.sampled_from([False, False, True]),
                                          FIRST_ATTEMPT,
                                          st.sampled_from(["payg", "payg", "payg", "pro"])),
                                min_size=2, max_size=4),
                payglocal=st.sampled_from([None, None, "credited", "success", "decline", "later"]),
                policy=st.sampled_from(["refund", "refund", "review"]), refund_delay=REFUND_DELAYS)
    def open_orders(self, orders, payglocal, policy, refund_delay):
        """The orders (manual capture or not, pay-as-you-go or Pro), each with the customer's first checkout
        attempt, if any (``credited``: paid, and a poll has credited it; its webhooks are still held); maybe a
        PayGlocal order; the duplicate-payment policy; how long refunds stay pending."""
        self.policy = policy
        self.deps.policy = dataclasses.replace(self.deps.policy, duplicate_payment=policy)
        self.sim.refund_behaviour(processed_after_s=refund_delay)
        for index, (manual_capture, _first, plan) in enumerate(orders):
            self.deps.settings = self.base_settings.model_copy(update={"razorpay_manual_capture": manual_capture})
            try:
                order = new_order(self.deps, ORG, plan=plan)
            finally:
                self.deps.settings = self.base_settings
            self.orders.append(OrderRef(f"o{index}", order.id, order.gateway_order_id, order.amount_minor,
                                        order.currency, manual_capture, "razorpay", plan, order.credits or 0))
        if payglocal is not None:
            order = new_order(self.deps, PAYGLOCAL_ORG)
            self.orders.append(OrderRef(f"o{len(self.orders)}", order.id, order.gateway_order_id, order.amount_minor,
                                        order.currency, False, "payglocal", "payg", order.credits or 0))
        self.recent = list(self.orders)
        self._begin("orders " + ", ".join(
            f"{o.name}={o.id} ({o.gateway}, {o.amount_minor} {o.currency}, "
            f"{f'{o.credits} credits' if o.plan == 'payg' else o.plan}{', manual capture' if o.manual_capture else ''})"
            for o in self.orders) + f"; duplicate payments: {policy}; refunds pending {refund_delay} s")
        firsts = [first for _manual, first, _plan in orders] + ([payglocal] if payglocal else [])
        for ref, first in zip(self.orders, firsts, strict=True):
            if first in ("credited", "success", "timeout", "authorize_only", "decline"):
                self._checkout(ref, "success" if first == "credited" else first, wrong_amount=False)
            if first == "credited":
                self._said("; polled:")
                self._ours(False, lambda ref=ref: reconcile_order(ref.id, deps=self.deps))

    # --- the gateway's timeline --------------------------------------------------------------------------

    @rule(order=ORDER, outcome=OUTCOMES, wrong_amount=st.sampled_from([False, False, True]))
    def pay(self, order, outcome, wrong_amount):
        self._checkout(self._order(order), outcome, wrong_amount=wrong_amount)

    def _checkout(self, ref: OrderRef, outcome: str, *, wrong_amount: bool) -> None:
        amount = ref.amount_minor - 100 if wrong_amount else None
        self._begin(f"gateway: {ref.name} checkout {outcome}{' for 100 paise less' if wrong_amount else ''}")
        try:
            if ref.gateway == "payglocal":  # one transaction per gid; nothing posted to us (we poll)
                paid = self.sim.pay_payglocal(ref.gateway_order_id, outcome, deliver_callback=False,
                                              amount_minor=amount)
                self._said(f"-> {self._name(ref.gateway_order_id, ref)} {(paid.get('data') or {}).get('status')}")
                return
            paid = self.sim.pay(ref.gateway_order_id, outcome, deliver_webhooks=False, amount_minor=amount)
        except SimulatorError as exc:
            self._said(f"-> refused ({exc})")
            return
        if paid.get("closed"):
            self._said("-> no payment")
            return
        self._said(f"-> {self._name(paid['id'], ref)} {paid['status']}")
        if "razorpay_signature" in paid:
            self.checkouts.append((ref, paid["id"], paid["razorpay_signature"]))

    @precondition(lambda self: self._gateway_payments("failed"))
    @rule(pick=PICK, minutes=LATE_BY)
    def late_authorisation(self, pick, minutes):
        payment = self._choose(self._gateway_payments("failed", fresh=True), pick, lambda p: self._order_of(p.order_id))
        self._begin(f"gateway: the bank authorises {self._name(payment.id)} late, {minutes} min after creation")
        result, honoured = late_authorize(self.sim, payment.id, minutes)
        self._said(f"-> {result['status']}{'' if honoured else ' (this simulator ignores the minutes)'}")

    @precondition(lambda self: self._gateway_payments("captured", gateway=None))
    @rule(pick=PICK, amount=REFUND_AMOUNTS, how=st.sampled_from(["shortcut", "dashboard", "dashboard", "failing"]))
    def gateway_refund(self, pick, amount, how):
        """A refund we did not ask for: Razorpay's Dashboard (the refund lifecycle: pending for the example's
        delay, then processed; or failing), the simulator's older shortcut (processed at once, only
        ``refund.processed``); PayGlocal's dashboard refunds all that is left, and tells nobody."""
        payment = self._choose(self._gateway_payments("captured", fresh=True, gateway=None), pick,
                               lambda p: self._order_of(p.order_id))
        if self._order_of(payment.order_id).gateway == "payglocal":
            self._begin(f"gateway: PayGlocal's dashboard refunds all that is left of {self._name(payment.id)}")
            try:
                self.sim.refund_payglocal(payment.id)
            except SimulatorError as exc:
                self._said(f"-> refused ({exc})")
            return
        minor = part(amount, payment.amount)
        self._begin(f"gateway: {self._name(payment.id)} refunded: {amount}{f' ({minor})' if minor else ''} "
                    + {"shortcut": "by the shortcut", "dashboard": "in the Dashboard",
                       "failing": "in the Dashboard, and the refund fails"}[how])
        try:
            if how == "shortcut":
                made = self.sim.refund(payment.id, minor, deliver_webhooks=False)
            else:
                self.sim.refund_behaviour(fail_next=1 if how == "failing" else 0)
                made = self.sim.dashboard_refund(payment.id, minor, deliver_webhooks=False)
        except SimulatorError as exc:
            self._said(f"-> refused ({exc})")
            return
        finally:
            self.sim.refund_behaviour(fail_next=0)
        self._said(f"-> {self._short(made['id'], 'r')} {made['status']}")

    @precondition(lambda self: [r for r in (self.gw.refunds.values() if self.gw else ()) if r.status == "pending"])
    @rule()
    def gateway_time_passes(self):
        """The gateway's clock moves past ``refund_processed_after_s``: its pending refunds are processed or fail
        (their ``refund.processed`` / ``refund.failed`` webhooks are held like every other)."""
        self._begin(f"gateway: {self.sim.config.refund_processed_after_s:.0f} s pass")
        settled = let_refunds_finish(self.sim)
        refunds_now = gateway_view(self.sim).refunds
        self._said("-> " + ", ".join(f"{self._short(r, 'r')} {refunds_now[r].status}" for r in settled))

    @precondition(lambda self: self._disputable())
    @rule(pick=PICK, amount=DISPUTE_AMOUNTS, then=st.sampled_from([None, None, "won", "lost", "under_review"]))
    def open_dispute(self, pick, amount, then):
        """The customer's bank disputes a captured payment (the credited one, a duplicate, a refunded one), and
        maybe the dispute moves on at once (both webhooks held)."""
        payment = self._choose(self._disputable(fresh=True), pick, lambda p: self._order_of(p.order_id))
        minor = part(amount, payment.amount)
        self._begin(f"gateway: a chargeback opened on {amount} of {self._name(payment.id)}")
        try:
            dispute = self.sim.open_dispute(payment.id, minor, deliver_webhooks=False)
        except SimulatorError as exc:
            self._said(f"-> refused ({exc})")
            return
        self._said(f"-> {self._short(dispute['id'], 'd')} {dispute['amount']} {dispute['status']}")
        if then is not None:
            self._said(f", then -> {then}")
            self._move_dispute(dispute["id"], payment.id, then)

    @precondition(lambda self: self._disputes())
    @rule(pick=PICK, move=DISPUTE_MOVES)
    def move_dispute(self, pick, move):
        """A dispute moves at the gateway; pre-arbitration reopens a won case."""
        view = gateway_view(self.sim)
        dispute = self._choose(list(view.disputes.values()), pick,
                               lambda d: self._order_of(view.payments[d.payment_id].order_id))
        self._begin(f"gateway: {self._short(dispute.id, 'd')} of {self._name(dispute.payment_id)} "
                    f"({dispute.status}, {dispute.phase}) -> {move}")
        self._move_dispute(dispute.id, dispute.payment_id, move)

    def _move_dispute(self, dispute_id: str, payment_id: str, move: str) -> None:
        """A loss refunds the customer: a refund entity of its own, the same money as the dispute (recorded in
        ``dispute_refunds`` so that the expectation counts that money once)."""
        before = {r["id"] for r in self.sim.refunds_of(payment_id)}
        try:
            if move == "pre_arbitration":
                moved = self.sim.move_dispute(dispute_id, phase=move, deliver_webhooks=False)
            else:
                moved = self.sim.move_dispute(dispute_id, status=move, deliver_webhooks=False)
        except SimulatorError as exc:
            self._said(f"-> refused ({exc})")
            return
        made = [r for r in self.sim.refunds_of(payment_id) if r["id"] not in before]
        self.dispute_refunds.update(r["id"] for r in made)
        self._said(f"-> {moved['status']} ({moved['phase']})"
                   + "".join(f"; the customer refunded: {self._short(r['id'], 'r')} {r['amount']} {r['status']}"
                             for r in made))

    @precondition(lambda self: self._paid_at_gateway())
    @rule(pick=PICK, wrong_amount=st.booleans())
    def second_payment_captured(self, pick, wrong_amount):
        ref = self._choose(self._paid_at_gateway(fresh=True), pick, lambda o: o)
        self._begin(f"gateway anomaly: a second payment captured on {ref.name}, already paid at the gateway"
                    f"{', 100 paise less' if wrong_amount else ''}")
        try:
            paid = pay_on_a_paid_order(self.sim, ref.gateway_order_id, ref.amount_minor - 100 if wrong_amount else None)
        except SimulatorError as exc:
            self._said(f"-> refused ({exc})")
            return
        self._said(f"-> {self._name(paid['id'], ref)} {paid['status']}")
        self.checkouts.append((ref, paid["id"], paid["razorpay_signature"]))

    # --- our inputs --------------------------------------------------------------------------------------

    @precondition(lambda self: self._held())
    @rule(via=VIA, fault=FAULT)
    def deliver_held(self, via, fault):
        held = self._held()
        self._begin(f"webhooks in order via {via}: " + ", ".join(self._describe(i) for i in held))

        def action():
            for index in held:
                self._post(index, via=via)
            self._process_inbox()

        self._ours(fault, action)

    @precondition(lambda self: self._events())
    @rule(order=ORDER, pick=PICK, copies=st.sampled_from([1, 1, 2]), fresh_id=st.sampled_from([False, False, True]),
          via=VIA, fault=FAULT)
    def deliver(self, order, pick, copies, fresh_id, via, fault):
        """Any event of an order (oldest first), whatever was delivered before it."""
        events = self._events()
        ref = self.recent[order % len(self.recent)]
        about = [i for i, event in enumerate(events) if event_order_id(event) == ref.gateway_order_id]
        if about:
            self._touch(ref)
        index = (about or list(range(len(events))))[pick % len(about or events)]
        again = " again" if index in self.delivered else ""
        self._begin(f"webhook {self._describe(index)} delivered{again} via {via}"
                    f"{' twice' if copies == 2 else ''}{' under a fresh event id' if fresh_id else ''}")

        def action():
            self._post(index, via=via, copies=copies, fresh_id=fresh_id)
            self._process_inbox()

        self._ours(fault, action)

    @precondition(lambda self: self.checkouts)
    @rule(pick=PICK, fault=FAULT)
    def callback(self, pick, fault):
        ref, payment_id, signature = self._choose(self.checkouts, pick, lambda c: c[0])
        self._begin(f"checkout callback on {ref.name} for {self._name(payment_id)}")

        def action():
            verify_payment(ref.id, payment_id, signature, deps=self.deps)
            status = inbox_status(self.deps, f"callback:{payment_id}")
            assert not (status == "pending" and on("inbox")), self._fail("(f) the callback's inbox row is left pending")

        self._ours(fault, action)

    @rule(order=ORDER, how=st.sampled_from(["poll", "recheck", "sweep"]), fault=FAULT)
    def check(self, order, how, fault):
        """A sweep's poll of one order, support's recheck of one, or a sweep round that polls every order."""
        if how == "sweep":
            self._begin("sweep round: every order polled")
            self._ours(fault, lambda: [reconcile_order(ref.id, deps=self.deps) for ref in self.orders])
            return
        ref = self._order(order)
        self._begin(f"{'sweep poll' if how == 'poll' else 'support recheck'} of {ref.name}")
        if how == "poll":
            self._ours(fault, lambda: reconcile_order(ref.id, deps=self.deps))
        else:
            self._ours(fault, lambda: recheck(ref.id, self.deps))

    @precondition(lambda self: self._in_review())
    @rule(pick=PICK, decision=st.sampled_from(["close", "refund", "credit"]))
    def review(self, pick, decision):
        ref = self._choose(self._in_review(fresh=True), pick, lambda o: o)
        self._begin(f"support decides {decision} on {ref.name}")
        if decision == "credit" and not any(p.good_for(ref.amount_minor, ref.currency)
                                            for p in gateway_view(self.sim).of_order(ref.gateway_order_id)):
            self._said("-> not done: a person checking the gateway sees no good payment to credit")
            return
        try:
            resolution = resolve_review(ref.id, decision, reason="property test", requested_by="support:property",
                                        deps=self.deps)
        except NotInReview as exc:
            stored = our_view(self.deps)
            holds_captured = any(p.status == "captured" and p.order_id == ref.id for p in stored.payments.values())
            if decision == "credit" and not holds_captured:  # refused: we hold no captured payment to credit
                self._said(f"-> refused ({exc})")
                return
            exc.add_note(self._fail("(a) a review decision on an order in review was refused"))
            raise
        except Exception as exc:
            exc.add_note(self._fail(f"(a) {type(exc).__name__} escaped a review decision"))
            raise
        self.decided_by_review.add(ref.id)
        if decision != "credit":
            self.closed_by_review.add(ref.id)
        if resolution.refunds:
            self._said("-> refunds started: " + ", ".join(
                f"{self._short(r.gateway_refund_id, 'r')} {r.amount_minor} {r.state}" for r in resolution.refunds))

    @precondition(lambda self: self._credited())
    @rule(pick=PICK, amount=REFUND_AMOUNTS, reason=REASONS, override=st.sampled_from([False, False, False, True]),
          fails=st.sampled_from([False, False, False, True]), fault=FAULT)
    def support_refund(self, pick, amount, reason, override, fails, fault):
        """Support refunds a credited order (all, half, a third, one rupee), with a reason, sometimes overriding
        the unspent-credits rule; the same amount and reason again is the same request. ``fails``: the gateway
        fails the refund it starts (Razorpay ``failed``, PayGlocal ``REQUEST_ERROR``)."""
        ref = self._choose(self._credited(fresh=True), pick, lambda o: o)
        ours = our_view(self.deps)
        payment_id = ours.orders[ref.id].granted_payment_id
        minor = part(amount, ref.amount_minor)
        self._begin(f"support refunds {amount}{f' ({minor})' if minor else ''} of {ref.name} ({reason!r}"
                    f"{', overriding spent credits' if override else ''}){'; the gateway fails it' if fails else ''}")
        at_gateway = len(self.sim.refunds_of(payment_id))
        answered = {r.idempotency_key for r in ours.refunds if r.gateway_refund_id}
        outcome = None

        def action():
            nonlocal outcome
            try:
                outcome = refunds.request_refund(ref.id, RefundRequest(minor, reason, "support:property",
                                                                       override_spent=override), deps=self.deps)
            except RefundRefused as exc:
                if exc.code not in REFUSALS:
                    exc.add_note(self._fail(f"(a) a support refund was refused with {exc.code!r}"))
                    raise
                self._said(f"-> refused: {exc.code} ({exc.message})")

        self.sim.refund_behaviour(fail_next=1 if fails else 0)
        try:
            self._ours(fault, action)
        finally:
            self.sim.refund_behaviour(fail_next=0)
        if outcome is None:
            return
        self._said(f"-> {'the same request again: ' if outcome.repeated else ''}"
                   f"{self._short(outcome.gateway_refund_id, 'r')} {outcome.amount_minor} {outcome.state}")
        made = len(self.sim.refunds_of(payment_id)) - at_gateway
        if on("once"):
            assert made <= 1, self._fail(f"(b) one refund request made {made} refunds at the gateway")
            key = next(r.idempotency_key for r in our_view(self.deps).refunds if r.id == outcome.refund_id)
            assert not (made and key in answered), self._fail(
                "(b) a request the gateway had answered before made another refund at the gateway")

    @precondition(lambda self: self.ours is not None and self.ours.in_flight())
    @rule(fault=FAULT)
    def refund_poller(self, fault):
        """The refund poller looks at each of our refunds in flight (sends a ``requested`` one again with its key)."""
        in_flight = our_view(self.deps).in_flight()
        self._begin("refund poller: " + ", ".join(f"{self._short(r.gateway_refund_id, 'r')} {r.state}"
                                                   for r in in_flight))
        self._ours(fault, lambda: [refunds.check_refund(r.id, deps=self.deps) for r in in_flight])

    @precondition(lambda self: any(o.gateway == "payglocal" for o in self.orders))
    @rule(amount=DISPUTE_AMOUNTS, reason=st.sampled_from(["card reported stolen", "card reported stolen",
                                                          "goods not received"]))
    def record_chargeback(self, amount, reason):
        """PayGlocal reports no disputes: support records a chargeback by hand (the same amount and reason again
        is the same chargeback); it reverses like a lost dispute."""
        ref = self._touch(next(o for o in self.orders if o.gateway == "payglocal"))
        minor = part(amount, ref.amount_minor)
        self._begin(f"support records a chargeback of {amount} of {ref.name} ({reason!r})")
        try:
            outcome = disputes.record_chargeback(ref.id, amount_minor=minor, reason=reason,
                                                 requested_by="support:property", deps=self.deps)
        except RefundRefused as exc:
            if exc.code != "order_not_paid":
                exc.add_note(self._fail(f"(a) a chargeback was refused with {exc.code!r}"))
                raise
            self._said(f"-> refused: {exc.code}")
            return
        except Exception as exc:
            exc.add_note(self._fail(f"(a) {type(exc).__name__} escaped recording a chargeback"))
            raise
        key = (ref.amount_minor if minor is None else minor, reason)
        recorded = self.chargebacks.setdefault(ref.id, {})
        self._said(f"-> {'the same chargeback again: ' if outcome.repeated else ''}{outcome.dispute_id} "
                   f"{outcome.state}")
        assert not on("once") or outcome.repeated == (key in recorded), self._fail(
            f"(b) a chargeback recorded {'again' if key in recorded else 'once'} answered repeated={outcome.repeated}")
        recorded[key] = key[0]

    @rule(by=CLOCK_STEPS)
    def advance_clock(self, by):
        self._begin(f"clock +{by}")
        self.deps.clock.advance(by)

    # --- after every step --------------------------------------------------------------------------------

    @invariant()
    def money_is_right(self):
        ours, gw = our_view(self.deps), gateway_view(self.sim)
        before = self.ours
        last_entry = max((e.id for e in before.ledger), default=0) if before else 0
        last_move = max((t.id for t in before.transitions), default=0) if before else 0
        new_entries = [e for e in ours.ledger if e.id > last_entry]
        new_grants = [e for e in new_entries if e.entry == "grant"]
        new_moves = [t for t in ours.transitions if t.id > last_move]
        ref_of = {o.id: o for o in self.orders}
        grants = [e for e in ours.ledger if e.entry == "grant"]
        effects = [f"{ref_of[t.order_id].name}: {t.from_state}->{t.to_state} ({t.reason})" for t in new_moves]
        for e in new_entries:
            what = (f"on {self._name(e.gateway_payment_id)}" if e.entry == "grant"
                    else f"{e.credits:+d}{f' (shortfall {e.shortfall})' if e.shortfall else ''} for {e.money_event_id}")
            effects.append(f"{ {'grant': 'CREDIT', 'reversal': 'REVERSE', 'restore': 'RESTORE'}[e.entry]} "
                           f"{ref_of[e.order_id].name} {what}")
        known_refunds = {r.id: r.state for r in before.refunds} if before else {}
        effects += [f"{ref_of[r.order_id].name} refund {self._short(r.gateway_refund_id, 'r')} ({r.origin}) "
                    f"{known_refunds.get(r.id, 'new')}->{r.state}"
                    for r in ours.refunds if known_refunds.get(r.id) != r.state]
        if effects and self.story:
            self._said("=> " + "; ".join(effects))

        if on("once"):
            per_order = Counter(e.order_id for e in grants)
            per_payment = Counter((e.gateway, e.gateway_payment_id) for e in grants)
            twice = [ref_of[o].name for o, n in per_order.items() if n > 1]
            assert not twice, self._fail(f"(b) orders credited more than once: {twice}")
            twice = [self._name(p) for (_g, p), n in per_payment.items() if n > 1]
            assert not twice, self._fail(f"(b) gateway payments credited more than once: {twice}")
            per_event = Counter((e.gateway, e.entry, e.money_event_id) for e in ours.ledger)
            twice = [f"{entry} {event}" for (_g, entry, event), n in per_event.items() if n > 1]
            assert not twice, self._fail(f"(b) money events in the ledger more than once: {twice}")
            for order in ours.orders.values():
                entries = ours.grants_of(order.id)
                if order.state == "paid":
                    assert len(entries) == 1, self._fail(
                        f"(b) {ref_of[order.id].name} is paid with {len(entries)} grants")
                if entries:
                    assert order.granted_payment_id == entries[0].gateway_payment_id, self._fail(
                        f"(b) {ref_of[order.id].name} granted_payment_id {order.granted_payment_id} but credited "
                        f"on {entries[0].gateway_payment_id}")
                elif ours.ledger_of(order.id):
                    raise AssertionError(self._fail(f"(b) {ref_of[order.id].name} has ledger rows but no grant"))
            # A restore gives back what reversals of the same order took, never more: the order's entries, up to each
            # restore, never grant more than its grant (what the money supports is judged at quiescence).
            for order_id in {e.order_id for e in ours.ledger if e.entry == "restore"}:
                granted, running = 0, 0
                for entry in ours.ledger_of(order_id):
                    granted = entry.credits if entry.entry == "grant" else granted
                    running += entry.credits - entry.shortfall
                    assert running <= granted, self._fail(
                        f"(b) {entry.money_event_id} ({entry.credits:+d}, shortfall {entry.shortfall}) makes "
                        f"{ref_of[order_id].name} grant {running}, more than its grant of {granted}")

        if on("over-credit"):
            for entry in new_grants:
                order, payment = ours.orders[entry.order_id], gw.payments.get(entry.gateway_payment_id)
                what = f"{ref_of[order.id].name} credited on {self._name(entry.gateway_payment_id)}"
                assert payment is not None, self._fail(f"(c) {what}, a payment the gateway does not know")
                assert (payment.amount, payment.currency) == (order.amount_minor, order.currency), self._fail(
                    f"(c) over-credit: {what} of {payment.amount} {payment.currency}, the order is for "
                    f"{order.amount_minor} {order.currency}")
                assert payment.status in ("captured", "refunded") and (
                    payment.captured or payment.status == "captured"), \
                    self._fail(f"(c) over-credit: {what}, which the gateway holds as {payment.status}, never captured")
                if payment.amount_refunded == 0:
                    continue
                known = before.payments.get(entry.gateway_payment_id) if before else None
                knew = known is not None and known.status == "refunded"
                assert not knew, self._fail(
                    f"(c) over-credit: {what}, which the gateway holds as {payment.status} with "
                    f"{payment.amount_refunded} refunded, and we had already stored it as {known.status} with "
                    f"{known.amount_refunded} refunded (a stale snapshot won over the refund we knew)")
                assert not (STRICT and payment.status == "refunded"), self._fail(
                    f"(c, strict) over-credit: {what}, which the gateway had refunded in full before the credit; "
                    f"nothing we held said so yet")
                self._said(f"(granted a payment the gateway had refunded {payment.amount_refunded} of: its reversal "
                           f"must follow)")
            for entry in new_entries:
                if entry.entry == "reversal" and entry.kind == "refund" and entry.gateway == "razorpay":
                    refund = gw.refunds.get(entry.money_event_id.removeprefix("refund:"))
                    assert refund is not None and refund.status == "processed", self._fail(
                        f"(c) {ref_of[entry.order_id].name} reversed for {entry.money_event_id}, which the gateway "
                        f"holds as {refund.status if refund else 'unknown'}")
            for order in ours.orders.values():
                left, bought = ours.still_granted(order.id), order.credits if order.plan == "payg" else 0
                assert 0 <= left <= bought, self._fail(
                    f"(c) {ref_of[order.id].name} grants {left} credits (granted - reversed + restored, spent or "
                    f"not); it bought {bought}")

        if on("review-grant"):
            granted_into_review = [t for t in new_moves if t.to_state == "needs_review" and t.gateway_payment_id]
            assert not granted_into_review, self._fail(
                "(d) entering needs_review granted in the same step: "
                + ", ".join(f"{ref_of[t.order_id].name} on {self._name(t.gateway_payment_id)} ({t.reason})"
                            for t in granted_into_review))
            for entry in new_grants:
                state_before = before.orders[entry.order_id].state if before else None
                moved_to_paid = any(t.order_id == entry.order_id and t.to_state == "paid" for t in new_moves)
                entered_review = state_before != "needs_review" and ours.orders[entry.order_id].state == "needs_review"
                assert not (entered_review and not moved_to_paid), self._fail(
                    f"(d) {ref_of[entry.order_id].name} entered needs_review and was credited in the same step")

        if on("schedule"):  # no order is ever planned for a check past its late-payment horizon
            horizon = self.deps.policy.late_payment_horizon
            late = [f"{ref_of[o.id].name} ({o.state}) at {o.next_check_at}, horizon {o.created_at + horizon}"
                    for o in ours.orders.values() if o.next_check_at and o.next_check_at > o.created_at + horizon]
            assert not late, self._fail(f"(g) checks planned past the horizon: {late}")

        if on("balance"):
            for org, balance in ours.balances.items():
                credited = sum(e.credits for e in ours.ledger if e.organisation_id == org)
                assert balance == credited, self._fail(
                    f"(e) {org} has a balance of {balance} but its ledger credits sum to {credited}")

        self.ours, self.gw = ours, gw
        self.dirty = False

    # --- at quiescence -----------------------------------------------------------------------------------

    def teardown(self):
        try:
            if self.orders and not self.dirty:  # a step that failed is reported as it is
                self._settle()
        finally:
            self.sim.set_knobs(error_rate=0.0, refund_processed_after_s=0)
            self.sim.refund_behaviour(fail_next=0)
            self.deps.settings, self.deps.policy = self.base_settings, type(self).env.base_policy
            if LOG:
                with open(LOG, "a") as log:
                    log.write(self._told() + "\n\n")

    def _settle(self):
        deps = self.deps

        def deliver_everything():
            for index in self._held():
                self._post(index, via="store")
            self._process_inbox()

        def finish_refunds():
            settled = let_refunds_finish(self.sim)  # the gateway's pending refunds are processed or fail
            if settled:
                self._said("; the gateway settles " + ", ".join(self._short(r, "r") for r in settled))
            for refund in our_view(deps).in_flight():  # the refund poller: ours still in flight
                self._ours(False, lambda refund=refund: refunds.check_refund(refund.id, deps=deps))

        # The first round polls every order: past each gateway's minimum gap between two polls of one order
        # (PayGlocal's 5 s), or a poll a step just made would leave a PayGlocal Dashboard refund unseen.
        deps.clock.advance(max(deps.checks.min_gap(ref.gateway) for ref in self.orders))
        for round_ in range(8):
            self._begin(f"settle round {round_ + 1}: refunds in flight finish, every order polled, then everything "
                        f"held delivered")
            before = (self.ours.fingerprint(), self.gw)  # the invariant's views, taken after the latest step
            finish_refunds()
            states = order_states(deps)
            for ref in self.orders:  # after the first round only orders that may still move are polled
                if round_ == 0 or states[ref.id] not in ("paid", "needs_review", "closed"):
                    self._ours(False, lambda ref=ref: reconcile_order(ref.id, deps=deps))
            self._ours(False, deliver_everything)
            self.money_is_right()
            if round_ > 0 and (self.ours.fingerprint(), self.gw) == before:
                break
            deps.clock.advance(deps.policy.abandon_after + timedelta(minutes=1))
        ours, gw = self.ours, self.gw
        for ref in self.orders:
            order = ours.orders[ref.id]
            person_has_it = order.state in NO_CREDIT_OWED or (ref.id in self.closed_by_review and order.state != "paid")
            at_gateway = gw.of_order(ref.gateway_order_id)
            kept = [p for p in at_gateway if p.good_for(ref.amount_minor, ref.currency)]
            if kept and not person_has_it and on("credited"):
                assert len(ours.grants_of(ref.id)) == 1, self._fail(
                    f"(quiescence) {ref.name} is {order.state} ({order.state_reason}) with no credit, but the gateway "
                    f"keeps {', '.join(self._name(p.id) for p in kept)}")
            waiting = [p for p in at_gateway if p.status == "authorized" and p.amount == ref.amount_minor
                       and p.currency == ref.currency]
            gateway_paid = gw.order_status.get(ref.gateway_order_id) == "paid"
            if waiting and not gateway_paid and not person_has_it and on("captured"):
                raise AssertionError(self._fail(
                    f"(quiescence) {ref.name} is {order.state} ({order.state_reason}) and the gateway still holds "
                    f"{', '.join(self._name(p.id) for p in waiting)} authorised, never captured by us"))
            grant = next(iter(ours.grants_of(ref.id)), None)
            duplicates = [p for p in at_gateway if grant and p.id != grant.gateway_payment_id and p.captured
                          and p.status == "captured" and not gw.refunds_of(p.id)]
            if (duplicates and self.policy == "refund" and order.state == "paid"
                    and ref.id not in self.decided_by_review and on("refunds")):
                raise AssertionError(self._fail(
                    f"(quiescence) {ref.name} is paid on {self._name(grant.gateway_payment_id)} and the gateway keeps "
                    f"{', '.join(self._name(p.id) for p in duplicates)} too, never refunded (duplicate-payment policy: "
                    f"refund)"))
        if on("money") or on("emptied"):
            self._money_follows_the_gateway(ours, gw)
        if on("refunds"):
            left = [f"{self._short(r.gateway_refund_id, 'r')} {r.state}" for r in ours.in_flight()]
            assert not left, self._fail(f"(quiescence) refunds of ours still in flight: {left}")
            odd = [f"{self._ref_of(r.order_id).name} {self._short(r.gateway_refund_id, 'r')}: ours {r.amount_minor} "
                   f"{r.state}, the gateway's {gw.refunds[r.gateway_refund_id].amount} "
                   f"{gw.refunds[r.gateway_refund_id].status}" for r in ours.refunds
                   if r.gateway_refund_id in gw.refunds and (gw.refunds[r.gateway_refund_id].status, gw.refunds[
                       r.gateway_refund_id].amount) != (r.state, r.amount_minor)]
            assert not odd, self._fail(f"(quiescence) refunds at odds with the gateway: {odd}")

        horizon = deps.policy.late_payment_horizon
        deps.clock.advance(horizon + timedelta(hours=1))
        self._begin(f"clock past every order's late-payment horizon ({horizon}); the sweep polls what is due")
        for _ in range(4):
            now = deps.clock.now()
            due = [o for o in our_view(deps).orders.values() if o.next_check_at is not None and o.next_check_at <= now]
            if not due:
                break
            for order in due:
                self._ours(False, lambda order=order: reconcile_order(order.id, deps=deps))
            self._ours(False, deliver_everything)
        self.money_is_right()
        if on("schedule"):
            scheduled = [f"{self._order_of(o.gateway_order_id).name} ({o.state}) at {o.next_check_at}, horizon "
                         f"{o.created_at + horizon}" for o in our_view(deps).orders.values() if o.next_check_at]
            assert not scheduled, self._fail(f"(quiescence) still scheduled for a check past the late-payment "
                                             f"horizon: {'; '.join(scheduled)}")


    def _ref_of(self, order_id: str) -> OrderRef:
        return next(o for o in self.orders if o.id == order_id)

    def _money_follows_the_gateway(self, ours: OurView, gw: GatewayView) -> None:
        """Per order and per organisation: granted − reversed + restored (Σ credits − shortfall: spent credits
        are owed all the same) == the credits for the money the gateway still holds for the credited payment."""
        expected_of_org: Counter = Counter()
        for ref in self.orders:
            grant = next(iter(ours.grants_of(ref.id)), None)
            if grant is None:
                continue  # nothing granted, nothing to take back ("once" holds rows without a grant)
            organisation = ours.orders[ref.id].organisation_id
            payment = grant.gateway_payment_id
            expected, emptied = credits_for_money_held(
                gw, payment, order_amount_minor=ref.amount_minor, order_credits=ref.credits,
                dispute_refunds=self.dispute_refunds, chargebacks=list(self.chargebacks.get(ref.id, {}).values()))
            expected = expected if ref.plan == "payg" else 0
            expected_of_org[organisation] += expected
            actual = ours.still_granted(ref.id)
            if actual == expected or not on("emptied" if emptied and ref.plan == "payg" else "money"):
                expected_of_org[organisation] += actual - expected
                continue
            at_gateway = [f"refund {self._short(r.id, 'r')} {r.amount} {r.status}"
                          f"{' (a lost dispute)' if r.id in self.dispute_refunds else ''}"
                          for r in gw.refunds_of(payment)]
            at_gateway += [f"dispute {self._short(d.id, 'd')} {d.amount} {d.status} ({d.phase})"
                           for d in gw.disputes_of(payment)]
            at_gateway += [f"chargeback {amount} ({reason!r})" for (amount, reason) in self.chargebacks.get(ref.id, {})]
            ledger = [f"{e.entry} {e.kind} {e.credits:+d} shortfall {e.shortfall} ({e.money_event_id})"
                      for e in ours.ledger_of(ref.id)]
            raise AssertionError(self._fail(
                f"(quiescence) {ref.name} ({ref.plan}, {ref.credits} credits for {ref.amount_minor} {ref.currency}, "
                f"credited on {self._name(payment)}) still grants {actual} credits; the money the gateway holds pays "
                f"for {expected}{' (it holds none of it: check emptied)' if emptied else ''}.\n"
                f"  At the gateway: {'; '.join(at_gateway) or 'nothing after the capture'}\n"
                f"  Our ledger: {'; '.join(ledger)}"))
        for organisation, expected in expected_of_org.items():
            actual = sum(e.credits - e.shortfall for e in ours.ledger if e.organisation_id == organisation)
            assert actual == expected or not on("money"), self._fail(
                f"(quiescence) {organisation}'s ledger grants {actual} credits; the money the gateway holds pays for "
                f"{expected}")


def recheck(order_id: str, deps) -> None:
    """Support's recheck; it waits at most a second for a running check (none runs here)."""
    kwargs = {"join_wait_s": 1.0} if "join_wait_s" in inspect.signature(recheck_order).parameters else {}
    recheck_order(order_id, "support:property", reason="customer says charged", deps=deps, **kwargs)


def no_retry_sleep(deps) -> None:
    """In-call GET retries (gateways.http.retry_idempotent) still happen, without their back-off sleeps:
    the adapter takes the sleep as a dependency for tests; a fault step would otherwise cost seconds."""
    for gateway in deps.gateways.values():
        client = getattr(getattr(gateway, "inner", gateway), "_client", None)
        if client is not None and hasattr(client, "_sleep"):
            client._sleep = lambda _seconds: None


@pytest.mark.slow
def test_money_stays_right_whatever_the_gateway_and_our_inputs_do(deps, simulator, web_server):
    no_retry_sleep(deps)
    policy = deps.policy
    with httpx.Client(base_url=web_server.base_url, timeout=30) as http:
        MoneyMachine.env = Env(deps, simulator, http, deps.settings, deps.policy)
        try:
            run_state_machine_as_test(MoneyMachine, settings=SETTINGS)
        finally:
            MoneyMachine.env = None
            deps.policy = policy
            simulator.sim.set_knobs(error_rate=0.0, refund_processed_after_s=0)
