"""The people around a payment, on both gateways: customers who order and pay (success, decline, bank timeout
then a late authorisation inside or past the auto-capture window, closed window, gateway error, the wrong
amount, nothing at all), some on manual-capture orders; the billing backend forwarding checkout callbacks;
support asking for rechecks, refunding paid orders at the gateway, replaying webhooks under a fresh event id
and deciding the orders that reach ``needs_review``; all racing the gateway's webhooks.

Organisations in region IN pay through Razorpay, those in US through PayGlocal. Manual-capture orders are made
through a second ``recon web`` whose settings say ``razorpay_manual_capture`` (the setting applies to every
gateway: PayGlocal then initiates with ``captureTxn: false``).
"""

from __future__ import annotations

import heapq
import json
import random
import string
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ops.simulator_client import SimulatorClient, SimulatorRefused

#: What each customer does, and how often (weights). ``late_*`` authorise a payment that timed out after the
#: order was abandoned: ``late_in_window`` within Razorpay's 12-minute auto-capture window (captured by the
#: gateway), ``late_past_window`` 15-60 minutes after creation (left ``authorized``: we must capture it).
#: ``refund_after_credit`` waits until we credited the order, then refunds it at the gateway (PayGlocal: and
#: support rechecks it, as PayGlocal notifies no refund); ``refund_racing`` refunds right after the capture, while
#: the capture's webhooks are still on their way (Razorpay; PayGlocal customers pay normally instead).
MIX = {"success": 44, "decline": 5, "decline_then_success": 4, "late_in_window": 5, "late_past_window": 7,
       "timeout": 3, "close_window": 5, "gateway_error": 5, "no_attempt": 3, "mismatch": 5,
       "refund_after_credit": 8, "refund_racing": 4, "authorize_only": 2}
#: What support decides for an order in needs_review, by the order's state_reason (the first choice is likeliest).
DECISIONS = {"amount_or_currency_mismatch": ("refund", "close", "credit"),
             "refunded_after_credit": ("refund", "close"),
             "second_captured_payment": ("refund", "credit", "close"),
             "partly_refunded": ("close", "credit")}
_ALNUM = string.ascii_letters + string.digits


def webhook_backlog(sim: SimulatorClient) -> int:
    """Webhook deliveries queued or in flight at the simulated gateway (``GET /_sim/webhooks/backlog``: a cheap
    read; the full stats walk the whole delivery log under the sender's lock, which twice a second slowed
    delivery down measurably)."""
    return sim.webhook_backlog()


class Customers:
    """Customers and billing: POST /orders, the checkout in the simulator, callbacks, support rechecks, refunds,
    webhook replays, late banks."""

    def __init__(self, cfg, sim: SimulatorClient, web_url: str, token: str, orgs: list[tuple[str, str]],
                 manual_web_url: str | None = None):
        self.cfg, self.sim, self.orgs = cfg, sim, orgs
        headers = {"Authorization": f"Bearer {token}"}
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self.http = httpx.Client(base_url=web_url, headers=headers, timeout=30, limits=limits)
        self.manual_http = httpx.Client(base_url=manual_web_url, headers=headers, timeout=30,
                                        limits=limits) if manual_web_url else None
        self.web_url = web_url
        self.pool = ThreadPoolExecutor(cfg.concurrency * 2, thread_name_prefix="customer")
        self.slots = threading.Semaphore(cfg.concurrency)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.done = self.outstanding = self._seq = 0
        self._later: list = []
        self.stop = threading.Event()
        #: payment id -> epoch seconds once the gateway had refunded it (after the call returned: an upper bound)
        self.refunded_at: dict[str, float] = {}
        self._events_lock = threading.Lock()
        self._events_seen = 0
        self._events_by_payment: dict[str, list] = defaultdict(list)
        threading.Thread(target=self._timer, daemon=True, name="customer-timer").start()

    def drive(self, console: Console) -> None:
        """Start every customer, ``concurrency`` at a time, holding back while the gateway has more than
        ``max_webhook_backlog`` webhook deliveries queued: a gateway delivers within seconds, not minutes."""
        logged = time.monotonic()
        for number in range(self.cfg.orders):
            self.slots.acquire()
            while webhook_backlog(self.sim) > self.cfg.max_webhook_backlog:
                time.sleep(0.2)
            self.pool.submit(self._customer, number)
            if time.monotonic() - logged > 30:
                logged = time.monotonic()
                console.log(f"driven {self.done:,}/{self.cfg.orders:,}, webhooks queued at the gateway "
                            f"{webhook_backlog(self.sim):,}: {dict(sorted(self.counts.items()))}")
        for _ in range(self.cfg.concurrency):  # every customer's first steps are done
            self.slots.acquire()

    def close(self) -> None:
        self.stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()
        if self.manual_http is not None:
            self.manual_http.close()

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def _customer(self, number: int) -> None:
        try:
            self._play(number, random.Random(f"{self.cfg.seed}:{number}"))
        except Exception as exc:  # noqa: BLE001  (any driver error is counted, the run goes on)
            self.count(f"driver_error_{type(exc).__name__}")
        finally:
            with self.lock:
                self.done += 1
            self.slots.release()

    # -- one customer ----------------------------------------------------------------------------------------
    def _play(self, number: int, rng: random.Random) -> None:
        plan = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        org, gateway = self.orgs[number % len(self.orgs)]
        manual = self.manual_http is not None and rng.random() < self.cfg.manual_capture_share
        if gateway == "payglocal" and plan == "refund_racing":
            plan = "success"
        created = self._create(org, rng, manual)
        if created is None or plan == "no_attempt":
            return
        self.count(f"plan_{gateway}_{plan}{'_manual' if manual else ''}")
        order = created
        first = {"decline_then_success": "decline", "late_in_window": "timeout", "late_past_window": "timeout",
                 "mismatch": "success", "refund_after_credit": "success", "refund_racing": "success"}.get(plan, plan)
        amount = order["amount_minor"] - 100 if plan == "mismatch" else None
        payment = self._pay(order, first, rng, amount_minor=amount)
        if payment is None:
            return
        payment_id = payment.get("razorpay_payment_id") or payment.get("id") or payment.get("gid")
        if plan == "decline_then_success":
            self._defer(rng.uniform(1, 4), self._pay, order, "success", rng)
        elif plan in ("late_in_window", "late_past_window"):
            minutes = rng.uniform(2, 11) if plan == "late_in_window" else rng.uniform(15, 60)
            self._defer(self.cfg.abandon_after_s + rng.uniform(3, 25), self._late_authorize, payment_id, minutes)
        elif plan == "refund_after_credit":
            self._defer(1.0, self._refund_once_credited, order, payment_id, rng, time.monotonic() + 60)
        elif plan == "refund_racing":
            self._refund(order, payment_id)
            self._defer(rng.uniform(3, 8), self._replay, payment_id, "payment.captured", rng)
        elif gateway == "razorpay" and rng.random() < self.cfg.replay_share:
            self._defer(rng.uniform(1, 6), self._replay, payment_id, None, rng)

    def _create(self, org: str, rng: random.Random, manual: bool) -> dict | None:
        body = {"organisation_id": org, "requested_by": f"{org}-admin", "plan": "payg",
                "credits": 1_000 + 500 * rng.randrange(9), "refund_policy_accepted": True}
        client = self.manual_http if manual else self.http
        for attempt in range(4):  # a customer who tries again: each try is a new order
            answer = self._post("/orders", body, "create", attempts=1, client=client)
            if answer is not None and answer.status_code == 201:
                return answer.json()
            time.sleep(0.5 * 2**attempt)
        self.count("create_gave_up")
        return None

    def _pay(self, order: dict, outcome: str, rng: random.Random, *, amount_minor: int | None = None) -> dict | None:
        try:
            paid = self.sim.pay(order["gateway_order_id"], outcome, amount_minor=amount_minor)
        except SimulatorRefused:
            self.count("checkout_refused")
            return None
        self.count(f"pay_{outcome}" if amount_minor is None else "pay_wrong_amount")
        payment_id, signature = (paid.get("razorpay_payment_id"), paid.get("razorpay_signature")) \
            if order["gateway"] == "razorpay" else (paid.get("gid"), paid.get("x-gl-token"))
        if payment_id and signature and rng.random() < 0.85:
            self._post(f"/orders/{order['order_id']}/verify", {"payment_id": payment_id, "signature": signature},
                       "callback")
        if rng.random() < 0.25:
            self._post(f"/orders/{order['order_id']}/recheck", {"requested_by": "support:chaos", "wait": False},
                       "recheck")
        return paid

    def _late_authorize(self, payment_id: str, minutes: float) -> None:
        try:
            if payment_id.startswith("gl_"):
                self.sim.late_authorize(payment_id)
            else:
                self.sim.late_authorize(payment_id, minutes_after_creation=minutes)
            self.count("late_authorized")
        except SimulatorRefused:
            self.count("late_authorize_refused")

    def _refund_once_credited(self, order: dict, payment_id: str, rng: random.Random, give_up_at: float) -> None:
        """Support refunds a paid order at the gateway (as from its dashboard) once we have credited it."""
        try:
            answer = self.http.get(f"/orders/{order['order_id']}")
            state = answer.json().get("state") if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            state = None
        if state != "paid":
            if time.monotonic() < give_up_at and state not in ("needs_review", "closed", "failed", "abandoned"):
                self._defer(1.0, self._refund_once_credited, order, payment_id, rng, give_up_at)
            else:
                self.count(f"refund_skipped_{state}")
            return
        if not self._refund(order, payment_id):
            return
        if order["gateway"] == "payglocal":  # PayGlocal sends no refund notification: support rechecks the order
            self._defer(rng.uniform(0.5, 2), self._recheck_until_answered, order["order_id"], 6)
        elif rng.random() < 0.6:  # and a stale capture webhook, replayed under a fresh event id, must not re-credit
            self._defer(rng.uniform(2, 6), self._replay, payment_id, "payment.captured", rng)

    def _refund(self, order: dict, payment_id: str) -> bool:
        try:
            if order["gateway"] == "payglocal":
                self.sim.refund_payglocal(payment_id)
            else:
                self.sim.refund(payment_id)
        except SimulatorRefused:
            self.count("refund_refused")
            return False
        with self.lock:
            self.refunded_at[payment_id] = time.time()
        self.count(f"refund_{order['gateway']}")
        return True

    def _recheck_until_answered(self, order_id: str, attempts_left: int) -> None:
        answer = self._post(f"/orders/{order_id}/recheck", {"requested_by": "support:chaos-refund", "wait": True,
                                                             "wait_timeout_s": 20}, "refund_recheck", attempts=3)
        if (answer is None or answer.status_code != 200) and attempts_left > 1:
            self._defer(2.0, self._recheck_until_answered, order_id, attempts_left - 1)

    # -- webhooks replayed under a fresh event id ------------------------------------------------------------
    def _events_of(self, payment_id: str) -> list:
        """The simulator's events naming ``payment_id`` (an index built incrementally: each event fetched and
        parsed once)."""
        with self._events_lock:
            for event in self.sim.webhook_events(since=self._events_seen):
                self._events_seen += 1
                if event.gateway != "razorpay":
                    continue
                try:
                    named = json.loads(event.body)["payload"]["payment"]["entity"]["id"]
                except (ValueError, KeyError, TypeError):
                    continue
                self._events_by_payment[named].append(event)
            return list(self._events_by_payment.get(payment_id, ()))

    def _replay(self, payment_id: str, event_name: str | None, rng: random.Random) -> None:
        """Post one of the payment's old webhooks again, its signed bytes unchanged, under a new X-Razorpay-Event-Id
        (as Razorpay's dashboard replay or a second webhook subscription would)."""
        events = [e for e in self._events_of(payment_id) if event_name in (None, e.event)]
        if not events:
            self.count("replay_nothing")
            return
        event = rng.choice(events)
        headers = {**event.headers, "X-Razorpay-Event-Id": "evt_" + "".join(rng.choice(_ALNUM) for _ in range(14))}
        for attempt in range(5):
            try:
                answer = self.http.post("/webhooks/razorpay", content=event.body, headers=headers)
            except httpx.HTTPError as exc:
                self.count(f"replay_{type(exc).__name__}")
            else:
                self.count(f"replay_{event.event}_{answer.status_code}")
                if answer.status_code < 500:
                    return
            time.sleep(0.25 * 2**attempt)

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _post(self, path: str, body: dict, what: str, attempts: int = 6,
              client: httpx.Client | None = None) -> httpx.Response | None:
        """POST like a client that retries 5xx and connection failures with back-off; None if it gave up."""
        client = client or self.http
        for attempt in range(attempts):
            try:
                answer = client.post(path, json=body)
            except httpx.HTTPError as exc:
                self.count(f"{what}_{type(exc).__name__}")
            else:
                self.count(f"{what}_{answer.status_code}")
                if answer.status_code < 500:
                    return answer
            if attempt + 1 < attempts:
                time.sleep(min(4.0, 0.25 * 2**attempt))
        return None

    def _defer(self, delay_s: float, fn, *args) -> None:
        with self.lock:
            self.outstanding += 1
            self._seq += 1
            heapq.heappush(self._later, (time.monotonic() + delay_s, self._seq, fn, args))

    def _timer(self) -> None:
        while not self.stop.wait(0.05):
            with self.lock:
                due = []
                while self._later and self._later[0][0] <= time.monotonic():
                    due.append(heapq.heappop(self._later))
            for _, _, fn, args in due:
                self.pool.submit(self._run_later, fn, args)

    def _run_later(self, fn, args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001  (any driver error is counted, the run goes on)
            self.count(f"driver_error_{type(exc).__name__}")
        finally:
            with self.lock:
                self.outstanding -= 1


class SupportDesk:
    """A person deciding orders that reach ``needs_review``: ``review_share`` of them, a few seconds after they
    arrive, through ``POST /orders/{id}/review`` (credit, close or refund, by the order's reason)."""

    def __init__(self, cfg, engine, customers: Customers):
        self.cfg, self.engine, self.customers = cfg, engine, customers
        self.rng = random.Random(f"{cfg.seed}:support")
        self.seen: dict[str, int] = {}  #: order id -> times we found it in needs_review
        self.due: dict[str, tuple[float, str]] = {}  #: order id -> (monotonic time to decide, reason)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="support-desk")

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)

    def idle(self) -> bool:
        """No decision planned, and every order in needs_review has been looked at."""
        with self.lock:
            if self.due:
                return False
        return not self._new_in_review()

    def _new_in_review(self) -> list[tuple[str, str]]:
        try:
            with self.engine.connect() as c:
                rows = c.execute(text("SELECT id, coalesce(state_reason, '') FROM orders WHERE state = 'needs_review'"))
                in_review = [(r[0], r[1]) for r in rows]
        except SQLAlchemyError:
            return [("?", "")]  # the database went away for a moment: not idle
        with self.lock:
            return [(order_id, reason) for order_id, reason in in_review
                    if order_id not in self.due and self.seen.get(order_id, 0) < 1]

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            for order_id, reason in self._new_in_review():
                if order_id == "?":
                    break
                with self.lock:
                    self.seen[order_id] = self.seen.get(order_id, 0) + 1
                    if self.rng.random() < self.cfg.review_share:
                        self.due[order_id] = (time.monotonic() + self.rng.uniform(1, 4), reason)
                    else:
                        self.customers.count("review_left_open")
            with self.lock:
                ready = [(oid, reason) for oid, (at, reason) in self.due.items() if at <= time.monotonic()]
            for order_id, reason in ready:
                self._decide(order_id, reason)
                with self.lock:
                    self.due.pop(order_id, None)

    def _decide(self, order_id: str, reason: str) -> None:
        choices = DECISIONS.get(reason, ("close",))
        decision = self.rng.choices(choices, weights=[3] + [1] * (len(choices) - 1))[0]
        body = {"decision": decision, "reason": f"chaos support: {reason or 'no reason'} -> {decision}",
                "requested_by": "support:chaos-desk"}
        answer = self.customers._post(f"/orders/{order_id}/review", body, f"review_{decision}")
        if answer is not None and answer.status_code == 409:
            self.customers.count(f"review_refused_{reason}")
