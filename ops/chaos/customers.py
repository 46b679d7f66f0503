"""The people around a payment, on both gateways: customers who order and pay (success, decline, bank timeout
then a late authorisation inside or past the auto-capture window, closed window, gateway error, the wrong
amount, nothing at all), some on manual-capture orders; the billing backend forwarding checkout callbacks;
support asking for rechecks, refunding credited orders through our API (``POST /orders/{id}/refunds``: full
and partial, sent twice with the same key, twice at once, without a key), refunds the gateway fails, refunds
made in the gateway's dashboard, replaying webhooks under a fresh event id and deciding the orders that reach
``needs_review``; banks disputing credited Razorpay payments (won, lost, closed for fraud, won and reopened by
pre-arbitration or arbitration); all racing the gateway's webhooks (each sent three times, shuffled).

Organisations in region IN pay through Razorpay, those in US through PayGlocal. Manual-capture orders are made
through a second ``recon web`` whose settings say ``razorpay_manual_capture`` (the setting applies to every
gateway: PayGlocal then initiates with ``captureTxn: false``).

What the harness did at the gateway that the gateway's state alone does not tell is recorded for the judge
(:mod:`ops.chaos.checks`): the refunds it made there itself (``harness_refund_ids``: so a lost dispute's own
refund is told apart from a dashboard refund) and how many refunds it asked us for, per payment (``asked``).
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
from typing import Any

import httpx
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ops.simulator_client import SimulatorClient, SimulatorRefused

#: What each customer does, and how often (weights). ``late_*`` authorise a payment that timed out after the
#: order was abandoned: ``late_in_window`` within Razorpay's 12-minute auto-capture window (captured by the
#: gateway), ``late_past_window`` 15-60 minutes after creation (left ``authorized``: we must capture it).
#: Once we credited the order: ``refund_after_credit`` refunds it in the gateway's dashboard (Razorpay: full,
#: partial, or one the bank fails; PayGlocal: in full, and support rechecks, as PayGlocal notifies no refund);
#: ``support_refund`` asks us (our API) for a full or partial refund, sometimes sent twice or twice at once,
#: sometimes followed by another; ``refund_fails`` asks us for one the gateway fails, then maybe again once the
#: bank is fine; ``dispute`` has the bank dispute the payment (Razorpay; PayGlocal has no disputes: its
#: customers ask support for a refund instead). ``refund_racing`` refunds right after the capture, while the
#: capture's webhooks are still on their way (Razorpay; PayGlocal customers pay normally instead).
MIX = {"success": 30, "decline": 5, "decline_then_success": 4, "late_in_window": 5, "late_past_window": 7,
       "timeout": 3, "close_window": 5, "gateway_error": 5, "no_attempt": 3, "mismatch": 5,
       "refund_after_credit": 8, "refund_racing": 4, "authorize_only": 2, "support_refund": 7, "refund_fails": 2,
       "dispute": 5}
#: Plans that wait for the credit, then act on the money.
AFTER_CREDIT = ("refund_after_credit", "support_refund", "refund_fails", "dispute")
#: How a dispute goes after ``payment.dispute.created``: moves of ``/_sim/razorpay/disputes/{id}``, each a status
#: or (None, a reopening phase), with weights. ``left_open`` is still under review when the run ends (held).
DISPUTE_PATHS: dict[str, tuple[int, tuple[tuple[str | None, str | None], ...]]] = {
    "won": (25, (("under_review", None), ("won", None))),
    "lost": (20, (("under_review", None), ("lost", None))),
    "action_required_won": (5, (("action_required", None), ("under_review", None), ("won", None))),
    "reopened_won": (15, (("won", None), (None, "pre_arbitration"), ("under_review", None), ("won", None))),
    "reopened_lost": (15, (("under_review", None), ("won", None), (None, "pre_arbitration"), ("lost", None))),
    "arbitration": (5, (("won", None), (None, "pre_arbitration"), ("won", None), (None, "arbitration"),
                        ("lost", None))),
    "fraud_closed": (5, (("closed", None),)),
    "left_open": (10, (("under_review", None),)),
}
#: What support decides for an order in needs_review, by the order's state_reason (the first choice is likeliest).
DECISIONS = {"amount_or_currency_mismatch": ("refund", "close", "credit"),
             "second_captured_payment": ("refund", "credit", "close"),
             "partly_refunded": ("close", "credit")}
_ALNUM = string.ascii_letters + string.digits


def sim_call(sim: SimulatorClient, method: str, path: str, body: dict | None = None, **kwargs) -> Any:
    """A ``/_sim/`` control call :class:`SimulatorClient` has no method for (the refunds of which payments
    fail, the list of disputes); a refusal raises :class:`SimulatorRefused`, as the client's own calls do."""
    response = sim.http.request(method, path, json=body, **kwargs)
    if response.status_code >= 400:
        raise SimulatorRefused(response.status_code, response.text[:300])
    return response.json()


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
        #: Razorpay refunds the harness made at the gateway itself (dashboard, control shortcut): not a dispute's
        self.harness_refund_ids: set[str] = set()
        #: payment id -> refunds asked for through our API (one per request, however often it was sent)
        self.asked: Counter[str] = Counter()
        self._failing: set[str] = set()  #: payments whose refunds the gateway fails now
        self._failing_lock = threading.Lock()
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

    def witness(self) -> dict[str, Any]:
        """What the harness did at the gateway that its state does not tell, for :func:`ops.chaos.checks.measure`:
        ``harness_refund_ids`` (refunds made there by the harness) and ``asked`` (refunds asked of us, by payment)."""
        with self.lock:
            return {"harness_refund_ids": frozenset(self.harness_refund_ids), "asked": dict(self.asked)}

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
        if gateway == "payglocal" and plan == "dispute":  # PayGlocal has no disputes: the customer asks support
            plan = "support_refund"
        created = self._create(org, rng, manual)
        if created is None or plan == "no_attempt":
            return
        self.count(f"plan_{gateway}_{plan}{'_manual' if manual else ''}")
        order = created
        first = {"decline_then_success": "decline", "late_in_window": "timeout", "late_past_window": "timeout",
                 "mismatch": "success", "refund_racing": "success"}.get(plan, plan)
        first = "success" if plan in AFTER_CREDIT else first
        amount = order["amount_minor"] - 100 if plan == "mismatch" else None
        payment = self._pay(order, first, rng, amount_minor=amount)
        if payment is None:
            return
        payment_id: str = payment.get("razorpay_payment_id") or payment.get("id") or payment.get("gid") or ""
        then = {"refund_after_credit": self._gateway_refund, "support_refund": self._support_refund,
                "refund_fails": self._failing_refund, "dispute": self._dispute}.get(plan)
        if plan == "decline_then_success":
            self._defer(rng.uniform(1, 4), self._pay, order, "success", rng)
        elif plan in ("late_in_window", "late_past_window"):
            minutes = rng.uniform(2, 11) if plan == "late_in_window" else rng.uniform(15, 60)
            self._defer(self.cfg.abandon_after_s + rng.uniform(3, 25), self._late_authorize, payment_id, minutes)
        elif then is not None:
            self._defer(1.0, self._once_credited, order, payment_id, rng, time.monotonic() + 60, then)
        elif plan == "refund_racing":
            self._refund_at_gateway(order, payment_id, rng, kind="racing")
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

    def _once_credited(self, order: dict, payment_id: str, rng: random.Random, give_up_at: float, then) -> None:
        """``then(order, payment_id, rng)`` once we have credited the order (asked through our API, once a second)."""
        try:
            answer = self.http.get(f"/orders/{order['order_id']}")
            state = answer.json().get("state") if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            state = None
        if state == "paid":
            then(order, payment_id, rng)
        elif time.monotonic() < give_up_at and state not in ("needs_review", "closed", "failed", "abandoned"):
            self._defer(1.0, self._once_credited, order, payment_id, rng, give_up_at, then)
        else:
            self.count(f"after_credit_skipped_{state}")

    # -- refunds at the gateway (its dashboard), not through us ----------------------------------------------
    def _gateway_refund(self, order: dict, payment_id: str, rng: random.Random) -> None:
        """Support refunds a credited order in the gateway's dashboard: Razorpay in full, in part (and maybe the
        rest later), or one the bank fails; PayGlocal in full, and then support rechecks the order."""
        if order["gateway"] == "payglocal":
            if self._refund_at_gateway(order, payment_id, rng, kind="full"):
                self._defer(rng.uniform(0.5, 2), self._recheck_until_answered, order["order_id"], 6)
            return
        roll, amount = rng.random(), order["amount_minor"]
        if roll < 0.2:
            done = self._refund_at_gateway(order, payment_id, rng, kind="failing",
                                           amount=None if rng.random() < 0.5 else amount * rng.choice((20, 50)) // 100)
        elif roll < 0.55:
            done = self._refund_at_gateway(order, payment_id, rng, kind="full")
        else:
            done = self._refund_at_gateway(order, payment_id, rng, kind="partial",
                                           amount=amount * rng.choice((10, 25, 40, 50)) // 100)
            if done and rng.random() < 0.5:  # the rest, or another part, a little later
                rest = None if rng.random() < 0.5 else amount * rng.choice((10, 20)) // 100
                self._defer(rng.uniform(1, 5), self._refund_at_gateway, order, payment_id, rng, "partial", rest)
        if done and rng.random() < 0.6:  # stale webhooks (a capture's, the refund's), replayed under fresh ids
            self._defer(rng.uniform(2, 6), self._replay, payment_id, rng.choice(("payment.captured", None)), rng)

    def _refund_at_gateway(self, order: dict, payment_id: str, rng: random.Random, kind: str,
                           amount: int | None = None) -> bool:
        """One refund made at the gateway itself: ``racing`` is the control shortcut (processed at once,
        ``refund.processed`` only), the others Razorpay's dashboard (full lifecycle; ``failing``: the bank fails
        it) or PayGlocal's (in full, no notification)."""
        try:
            if order["gateway"] == "payglocal":
                self.sim.refund_payglocal(payment_id)
            elif kind == "racing":
                self._harness_refund(self.sim.refund(payment_id))
            else:
                self._harness_refund(self.sim.dashboard_refund(payment_id, amount, fail=kind == "failing"))
        except SimulatorRefused:
            self.count(f"gateway_refund_{kind}_refused")
            return False
        self.count(f"gateway_refund_{order['gateway']}_{kind}")
        return True

    def _harness_refund(self, refund: dict) -> None:
        with self.lock:
            self.harness_refund_ids.add(refund["id"])

    def _recheck_until_answered(self, order_id: str, attempts_left: int) -> None:
        answer = self._post(f"/orders/{order_id}/recheck", {"requested_by": "support:chaos-refund", "wait": True,
                                                             "wait_timeout_s": 20}, "refund_recheck", attempts=3)
        if (answer is None or answer.status_code != 200) and attempts_left > 1:
            self._defer(2.0, self._recheck_until_answered, order_id, attempts_left - 1)

    # -- refunds through our API ----------------------------------------------------------------------------
    def _support_refund(self, order: dict, payment_id: str, rng: random.Random) -> None:
        """Support refunds a credited order through ``POST /orders/{id}/refunds``: in full or in part, sent once,
        twice with the same key, twice at once, or twice without a key (the key derived from the request);
        after a part, sometimes the rest or another part later."""
        amount = order["amount_minor"]
        part = None if rng.random() < 0.35 else amount * rng.choice((10, 20, 25, 40, 50)) // 100
        style = rng.choices(("once", "twice", "concurrent", "no_key_twice"), weights=(3, 3, 3, 1))[0]
        self._api_refund(order, payment_id, part, rng, style)
        if part is not None and rng.random() < 0.5:
            rest = None if rng.random() < 0.5 else amount * rng.choice((10, 20)) // 100
            self._defer(rng.uniform(1, 6), self._api_refund, order, payment_id, rest, rng,
                        rng.choice(("once", "twice")))

    def _failing_refund(self, order: dict, payment_id: str, rng: random.Random) -> None:
        """A refund through our API that the gateway fails (Razorpay: pending, then ``refund.failed``; PayGlocal:
        REQUEST_ERROR). The bank is fine again right after (a refund's fate is drawn when the gateway creates it;
        one our service could not send yet goes through later), and once no refund of the order is in flight
        any more (asked sooner, the first one still counts: nothing would be left) support often asks again."""
        part = None if rng.random() < 0.6 else order["amount_minor"] * rng.choice((25, 50)) // 100
        self._fail_refunds_of(payment_id, True)
        try:
            self._api_refund(order, payment_id, part, rng, "once", what="failing")
        finally:
            self._fail_refunds_of(payment_id, False)
        if rng.random() < 0.6:
            self._defer(self.cfg.refund_pending_s + rng.uniform(1, 4), self._retry_refund, order, payment_id, rng,
                        time.monotonic() + 90)

    def _retry_refund(self, order: dict, payment_id: str, rng: random.Random, give_up_at: float) -> None:
        """Support asks again for a refund that failed, once our API shows none of the order's in flight."""
        try:
            answer = self.http.get(f"/orders/{order['order_id']}")
            refunds = answer.json().get("refunds", []) if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            refunds = None
        if refunds is None or any(r.get("state") in ("requested", "pending") for r in refunds):
            if time.monotonic() < give_up_at:
                self._defer(2.0, self._retry_refund, order, payment_id, rng, give_up_at)
            else:
                self.count("api_refund_retry_gave_up")
            return
        self._api_refund(order, payment_id, None, rng, rng.choice(("once", "twice")), what="retry")

    def _fail_refunds_of(self, payment_id: str, fail: bool) -> None:
        """Every refund of ``payment_id`` fails at the gateway from now on (or no longer). The simulator takes the
        whole list each time (``/_sim/refunds/behaviour``): kept here, sent whole, one change at a time."""
        with self._failing_lock:
            if fail:
                self._failing.add(payment_id)
            else:
                self._failing.discard(payment_id)
            sim_call(self.sim, "POST", "/_sim/refunds/behaviour", {"fail_payment_ids": sorted(self._failing)})

    def _api_refund(self, order: dict, payment_id: str, amount: int | None, rng: random.Random, style: str,
                    what: str = "support") -> None:
        """One refund asked of us (counted once in ``asked``), sent as ``style`` says."""
        tag = "".join(rng.choice(_ALNUM) for _ in range(20))
        body: dict[str, Any] = {"reason": f"chaos {what} refund {tag}", "requested_by": "support:chaos"}
        if amount is not None:
            body["amount_minor"] = amount
        headers = {} if style == "no_key_twice" else {"Idempotency-Key": f"chaos{tag}"}
        with self.lock:
            self.asked[payment_id] += 1
        path, label = f"/orders/{order['order_id']}/refunds", f"api_refund_{order['gateway']}"
        self.count(f"api_refund_{what}_{style}_{'full' if amount is None else 'partial'}")
        if style == "concurrent":  # two identical requests at once (a double click, a retrying proxy)
            start = threading.Barrier(2)

            def send() -> None:
                start.wait(10)
                self._send_refund(path, body, label, headers)

            pair = [threading.Thread(target=send, daemon=True) for _ in range(2)]
            for thread in pair:
                thread.start()
            for thread in pair:
                thread.join(120)
            return
        for _ in range(2 if style in ("twice", "no_key_twice") else 1):
            self._send_refund(path, body, label, headers)

    def _send_refund(self, path: str, body: dict, label: str, headers: dict[str, str]) -> None:
        answer = self._post(path, body, label, headers=headers)
        if answer is not None and answer.status_code in (409, 422):  # refused by the rules: counted by code
            try:
                code = answer.json().get("code")
            except ValueError:
                code = None
            self.count(f"api_refund_refused_{code}")

    # -- disputes (Razorpay) -----------------------------------------------------------------------------------
    def _dispute(self, order: dict, payment_id: str, rng: random.Random) -> None:
        """The customer's bank disputes the credited payment (all of it, or a part), and the case goes one of
        :data:`DISPUTE_PATHS`, a move every few seconds; sometimes an old webhook of the payment is replayed."""
        name = rng.choices(list(DISPUTE_PATHS), weights=[w for w, _ in DISPUTE_PATHS.values()])[0]
        amount = None if rng.random() < 0.7 else order["amount_minor"] * rng.choice((25, 50)) // 100
        try:
            dispute = self.sim.open_dispute(payment_id, amount=amount)
        except SimulatorRefused:
            self.count("dispute_refused")
            return
        self.count(f"dispute_path_{name}")
        self._defer(rng.uniform(0.5, 4), self._dispute_moves, dispute["id"], payment_id, DISPUTE_PATHS[name][1], rng)

    def _dispute_moves(self, dispute_id: str, payment_id: str, moves: tuple, rng: random.Random) -> None:
        (status, phase), rest = moves[0], moves[1:]
        try:
            self.sim.move_dispute(dispute_id, status=status, phase=phase)
            self.count(f"dispute_{status or phase}")
        except SimulatorRefused:
            self.count(f"dispute_{status or phase}_refused")
            return
        if rest:
            self._defer(rng.uniform(0.5, 4), self._dispute_moves, dispute_id, payment_id, rest, rng)
        elif rng.random() < 0.5:  # an old snapshot of the case (or of its payment) comes again, under a new id
            self._defer(rng.uniform(1, 4), self._replay, payment_id, None, rng)

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
    def _post(self, path: str, body: dict, what: str, attempts: int = 6, client: httpx.Client | None = None,
              headers: dict[str, str] | None = None) -> httpx.Response | None:
        """POST like a client that retries 5xx and connection failures with back-off; None if it gave up."""
        client = client or self.http
        for attempt in range(attempts):
            try:
                answer = client.post(path, json=body, headers=headers)
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
