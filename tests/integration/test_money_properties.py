"""Money properties of the whole service: a hypothesis state machine on the real database and the simulator.

For 2-4 Razorpay orders the machine interleaves, in any order,

- the gateway's timeline: checkout attempts (success, decline, timeout, authorise only, window closed, a
  wrong amount), late authorisations of failed payments (inside the 12-minute auto-capture window, after
  it, after the manual window), full and partial refunds, and one anomaly: a second payment captured on
  an order the gateway already holds as paid. Webhooks are generated but never sent by the simulator;
  the machine holds them;
- our inputs: a held webhook delivered (in order, or any old one after newer ones, twice, or its signed
  body replayed under a fresh ``X-Razorpay-Event-Id``, which the signature does not cover) over HTTP to
  the web app or straight into the inbox, then the pending inbox processed; a checkout callback; a
  sweep poll; a support recheck; a review decision; the clock moved on; and any of these with the
  gateway failing every call for that one step (a crash midway: a capture or fetch that never
  happened, which a later input must finish).

After every step: nothing but gateway errors during a fault step escapes our code; no order or gateway
payment is credited twice and a paid order is credited exactly once; a credit made in a step is for a
payment the gateway holds as captured, unrefunded, of the order's exact amount and currency; entering
needs_review never grants in the same step; every balance is the sum of its ledger credits; an inbox
row is never left pending by a processing step that returned; no order is planned for a check past its
late-payment horizon. At the end (teardown) everything held is
delivered and every order polled until nothing changes: money the gateway keeps is credited exactly
once unless a person has the order (needs_review, closed); no matching authorised payment is left
uncaptured on an order the gateway does not hold as paid; and past the late-payment horizon no order is
still scheduled for a check.

Size: ``RECON_PROPERTY_EXAMPLES`` (default 25) examples of ``RECON_PROPERTY_STEPS`` (default 25) steps.
``RECON_PROPERTY_STRICT=1`` also fails a credit for a payment the gateway had refunded although nothing
we held said so (a webhook snapshot older than a refund no webhook or poll had told us about yet).
``RECON_PROPERTY_SKIP=name,...`` switches named checks off (see ``CHECKS``) to look at one defect at a time;
``RECON_PROPERTY_LOG=file`` appends every example's story to a file;
``RECON_PROPERTY_SHRINK=0`` reports failures unshrunk (to see quickly whether a size finds something).
"""

from __future__ import annotations

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
    describe_event,
    empty_database,
    event_order_id,
    gateway_view,
    inbox_status,
    late_authorize,
    order_states,
    our_view,
    pay_on_a_paid_order,
    pending_inbox,
)
from tests.support import new_order
from worker.clock import FrozenClock
from worker.services.callback import verify_payment
from worker.services.inbox import process_inbox_event
from worker.services.intake import store_webhook
from worker.services.organisations import add_member, create_organisation
from worker.services.poll import reconcile_order
from worker.services.recheck import recheck_order
from worker.services.review import NotInReview, resolve_review

EXAMPLES = int(os.environ.get("RECON_PROPERTY_EXAMPLES", "25"))
STEPS = int(os.environ.get("RECON_PROPERTY_STEPS", "25"))
STRICT = os.environ.get("RECON_PROPERTY_STRICT", "").lower() in ("1", "true", "yes")
LOG = os.environ.get("RECON_PROPERTY_LOG")  # a file every example's story is appended to (what did it explore?)
SHRINK = os.environ.get("RECON_PROPERTY_SHRINK", "1").lower() not in ("0", "false", "no")

#: The named checks; ``RECON_PROPERTY_SKIP`` may switch any of them off.
CHECKS = frozenset({
    "gateway-errors",  # a GatewayError outside a fault step is a bug (a refused capture, say)
    "once",  # one ledger entry per order and per gateway payment; paid <=> credited once, on granted_payment_id
    "over-credit",  # a credit is for captured, unrefunded money of the order's exact amount and currency
    "review-grant",  # entering needs_review never grants in the same step
    "balance",  # credit_balance == sum of the organisation's ledger credits
    "inbox",  # a processing step that returned leaves no row pending
    "credited",  # at the end: money the gateway keeps is credited once, unless a person has the order
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
#: Simulator knobs for the whole run: nothing random, no webhook sent by the simulator itself.
QUIET_KNOBS = {"webhook_url": None, "latency_ms": 0, "error_rate": 0.0, "rate_limit_rate": 0.0, "timeout_rate": 0.0,
               "webhook_duplicates": 1, "shuffle_webhooks": False, "drop_webhooks": False, "auto_capture": True}

#: Orders are chosen by recency: 0 is the order the latest step touched, 1 the one before... (modulo their
#: number), so that a run tends to tell one order's story while the others go on around it.
ORDER = st.integers(min_value=0, max_value=3)
PICK = st.integers(min_value=0, max_value=7)  # an index into what the rule chooses among, most recent order first
FAULT = st.sampled_from([False, False, False, False, True])  # the gateway fails every call during the step
VIA = st.sampled_from(["http", "store"])
OUTCOMES = st.sampled_from(["success", "success", "decline", "timeout", "authorize_only", "close_window"])
FIRST_ATTEMPT = st.sampled_from(["success", "timeout", "authorize_only", "decline", None])
#: Minutes after creation: inside the auto-capture window (12), after it, after the manual window (7200).
LATE_BY = st.sampled_from([5, 30, 7300])
#: Past the payment window (30 min), a little, past a closed order's check interval (6 h), past the horizon.
CLOCK_STEPS = st.sampled_from([timedelta(minutes=31), timedelta(minutes=1), timedelta(hours=7),
                               timedelta(days=5, hours=1)])


@dataclass(frozen=True)
class Env:
    deps: object
    simulator: object
    http: httpx.Client
    base_settings: object


@dataclass(frozen=True)
class OrderRef:
    name: str
    id: str
    gateway_order_id: str
    amount_minor: int
    currency: str
    manual_capture: bool


class MoneyMachine(RuleBasedStateMachine):
    env: ClassVar[Env | None] = None

    def __init__(self):
        super().__init__()
        env = type(self).env
        self.deps, self.sim, self.http, self.base_settings = env.deps, env.simulator.sim, env.http, env.base_settings
        self.deps.settings = self.base_settings
        self.sim.set_knobs(**QUIET_KNOBS)
        self.sim.reset()
        empty_database(self.deps.engine)
        self.deps.clock = FrozenClock()
        create_organisation(ORG, "Acme India", "IN", deps=self.deps)
        add_member("admin-1", ORG, "admin@acme.example", "admin", deps=self.deps)
        self.orders: list[OrderRef] = []
        self.recent: list[OrderRef] = []  # the orders, the one the latest step touched first
        self.names: dict[str, str] = {}  # gateway payment id -> o1/p2
        self.checkouts: list[tuple[OrderRef, str, str]] = []  # what the checkout handler got: payment id, signature
        self.delivered: set[int] = set()  # indices of simulator events delivered at least once
        self.closed_by_review: set[str] = set()
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

    def _gateway_payments(self, status: str, *, fresh: bool = False) -> list:
        ours = {o.gateway_order_id for o in self.orders}
        view = gateway_view(self.sim) if fresh or self.gw is None else self.gw
        return [p for p in view.payments.values() if p.status == status and p.order_id in ours]

    def _paid_at_gateway(self, *, fresh: bool = False) -> list[OrderRef]:
        status = (gateway_view(self.sim) if fresh or self.gw is None else self.gw).order_status
        return [o for o in self.orders if status.get(o.gateway_order_id) == "paid"]

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
        kind, payment_id, status = describe_event(self._events()[index])
        stale = " (stale: newer events were delivered)" if any(i > index for i in self.delivered) else ""
        return f"e{index} {kind} {self._name(payment_id)} [{status}]{stale}"

    # --- setup -------------------------------------------------------------------------------------------

    @initialize(orders=st.lists(st.tuples(st.sampled_from([False, False, True]), FIRST_ATTEMPT),
                                min_size=2, max_size=4))
    def open_orders(self, orders):
        """The orders (manual capture or not), each with the customer's first checkout attempt, if any."""
        for index, (manual_capture, _first) in enumerate(orders):
            self.deps.settings = self.base_settings.model_copy(update={"razorpay_manual_capture": manual_capture})
            try:
                order = new_order(self.deps, ORG)
            finally:
                self.deps.settings = self.base_settings
            self.orders.append(OrderRef(f"o{index}", order.id, order.gateway_order_id, order.amount_minor,
                                        order.currency, manual_capture))
        self.recent = list(self.orders)
        self._begin("orders " + ", ".join(f"{o.name}={o.id} ({o.amount_minor} {o.currency}"
                                          f"{', manual capture' if o.manual_capture else ''})" for o in self.orders))
        for ref, (_manual, first) in zip(self.orders, orders, strict=True):
            if first is not None:
                self._checkout(ref, first, wrong_amount=False)

    # --- the gateway's timeline --------------------------------------------------------------------------

    @rule(order=ORDER, outcome=OUTCOMES, wrong_amount=st.sampled_from([False, False, True]))
    def pay(self, order, outcome, wrong_amount):
        self._checkout(self._order(order), outcome, wrong_amount=wrong_amount)

    def _checkout(self, ref: OrderRef, outcome: str, *, wrong_amount: bool) -> None:
        amount = ref.amount_minor - 100 if wrong_amount else None
        self._begin(f"gateway: {ref.name} checkout {outcome}{' for 100 paise less' if wrong_amount else ''}")
        try:
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

    @precondition(lambda self: self._gateway_payments("captured"))
    @rule(pick=PICK, partial=st.booleans())
    def refund(self, pick, partial):
        payment = self._choose(self._gateway_payments("captured", fresh=True), pick,
                               lambda p: self._order_of(p.order_id))
        self._begin(f"gateway: {self._name(payment.id)} refunded {'100 paise' if partial else 'in full'}")
        self.sim.refund(payment.id, 100 if partial else None, deliver_webhooks=False)

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
            resolve_review(ref.id, decision, reason="property test", requested_by="support:property", deps=self.deps)
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
        if decision != "credit":
            self.closed_by_review.add(ref.id)

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
        new_moves = [t for t in ours.transitions if t.id > last_move]
        ref_of = {o.id: o for o in self.orders}
        effects = [f"{ref_of[t.order_id].name}: {t.from_state}->{t.to_state} ({t.reason})" for t in new_moves]
        effects += [f"CREDIT {ref_of[e.order_id].name} on {self._name(e.gateway_payment_id)}" for e in new_entries]
        if effects and self.story:
            self._said("=> " + "; ".join(effects))

        if on("once"):
            per_order = Counter(e.order_id for e in ours.ledger)
            per_payment = Counter(e.gateway_payment_id for e in ours.ledger)
            twice = [ref_of[o].name for o, n in per_order.items() if n > 1]
            assert not twice, self._fail(f"(b) orders credited more than once: {twice}")
            twice = [self._name(p) for p, n in per_payment.items() if n > 1]
            assert not twice, self._fail(f"(b) gateway payments credited more than once: {twice}")
            for order in ours.orders.values():
                entries = ours.ledger_of(order.id)
                if order.state == "paid":
                    assert len(entries) == 1, self._fail(
                        f"(b) {ref_of[order.id].name} is paid with {len(entries)} ledger entries")
                if entries:
                    assert order.granted_payment_id == entries[0].gateway_payment_id, self._fail(
                        f"(b) {ref_of[order.id].name} granted_payment_id {order.granted_payment_id} but credited "
                        f"on {entries[0].gateway_payment_id}")

        if on("over-credit"):
            for entry in new_entries:
                order, payment = ours.orders[entry.order_id], gw.payments.get(entry.gateway_payment_id)
                what = f"{ref_of[order.id].name} credited on {self._name(entry.gateway_payment_id)}"
                assert payment is not None, self._fail(f"(c) {what}, a payment the gateway does not know")
                assert (payment.amount, payment.currency) == (order.amount_minor, order.currency), self._fail(
                    f"(c) over-credit: {what} of {payment.amount} {payment.currency}, the order is for "
                    f"{order.amount_minor} {order.currency}")
                assert payment.status in ("captured", "refunded") and (
                    payment.captured or payment.status == "captured"), \
                    self._fail(f"(c) over-credit: {what}, which the gateway holds as {payment.status}, never captured")
                if payment.status == "captured" and payment.amount_refunded == 0:
                    continue
                known = before.payments.get(entry.gateway_payment_id) if before else None
                knew = known is not None and (known.status == "refunded" or known.amount_refunded > 0)
                assert not knew, self._fail(
                    f"(c) over-credit: {what}, which the gateway holds as {payment.status} with "
                    f"{payment.amount_refunded} refunded, and we had already stored it as {known.status} with "
                    f"{known.amount_refunded} refunded (a stale snapshot won over the refund we knew)")
                assert not STRICT, self._fail(
                    f"(c, strict) over-credit: {what}, which the gateway had refunded ({payment.amount_refunded}) "
                    f"before the credit; nothing we held said so yet")
                self._said(f"(credited a payment the gateway had refunded, {payment.amount_refunded}; "
                           f"nothing we held said so yet)")

        if on("review-grant"):
            granted_into_review = [t for t in new_moves if t.to_state == "needs_review" and t.gateway_payment_id]
            assert not granted_into_review, self._fail(
                "(d) entering needs_review granted in the same step: "
                + ", ".join(f"{ref_of[t.order_id].name} on {self._name(t.gateway_payment_id)} ({t.reason})"
                            for t in granted_into_review))
            for entry in new_entries:
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
            self.sim.set_knobs(error_rate=0.0)
            self.deps.settings = self.base_settings
            if LOG:
                with open(LOG, "a") as log:
                    log.write(self._told() + "\n\n")

    def _settle(self):
        deps = self.deps

        def deliver_everything():
            for index in self._held():
                self._post(index, via="store")
            self._process_inbox()

        for round_ in range(8):
            self._begin(f"settle round {round_ + 1}: every order polled, then everything held delivered")
            before = (self.ours.fingerprint(), self.gw)  # the invariant's views, taken after the latest step
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
                assert len(ours.ledger_of(ref.id)) == 1, self._fail(
                    f"(quiescence) {ref.name} is {order.state} ({order.state_reason}) with no credit, but the gateway "
                    f"keeps {', '.join(self._name(p.id) for p in kept)}")
            waiting = [p for p in at_gateway if p.status == "authorized" and p.amount == ref.amount_minor
                       and p.currency == ref.currency]
            gateway_paid = gw.order_status.get(ref.gateway_order_id) == "paid"
            if waiting and not gateway_paid and not person_has_it and on("captured"):
                raise AssertionError(self._fail(
                    f"(quiescence) {ref.name} is {order.state} ({order.state_reason}) and the gateway still holds "
                    f"{', '.join(self._name(p.id) for p in waiting)} authorised, never captured by us"))

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
    with httpx.Client(base_url=web_server.base_url, timeout=30) as http:
        MoneyMachine.env = Env(deps, simulator, http, deps.settings)
        try:
            run_state_machine_as_test(MoneyMachine, settings=SETTINGS)
        finally:
            MoneyMachine.env = None
            simulator.sim.set_knobs(error_rate=0.0)
