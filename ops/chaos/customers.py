"""The people around a payment: customers who order and pay (success, decline, bank timeout then a late
authorisation, closed window, gateway error, nothing at all), the billing backend forwarding checkout
callbacks, and support asking for rechecks, all racing the gateway's webhooks."""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
from rich.console import Console

from gateways.simulator.razorpay_rules import SimulatorError

#: What each customer does, and how often (weights).
MIX = {"success": 62, "decline": 6, "decline_then_success": 4, "timeout_then_late": 8, "timeout": 4,
       "close_window": 6, "gateway_error": 6, "no_attempt": 4}


def webhook_backlog(sim) -> int:
    """Webhook deliveries queued or in flight at the simulated gateway. Not ``sim.webhooks.stats()``: that walks
    the whole delivery log under the sender's lock; twice a second, it slowed delivery down measurably."""
    return len(sim.webhooks._pending) + sim.webhooks._in_flight  # noqa: SLF001  (plain reads, no lock needed)


class Customers:
    """Customers and billing: POST /orders, the checkout in the simulator, callbacks, support rechecks, late banks."""

    def __init__(self, cfg, sim, web_url: str, token: str, orgs: list[str]):
        self.cfg, self.sim, self.orgs = cfg, sim, orgs
        self.http = httpx.Client(base_url=web_url, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                                 limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.pool = ThreadPoolExecutor(cfg.concurrency * 2, thread_name_prefix="customer")
        self.slots = threading.Semaphore(cfg.concurrency)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.done = self.outstanding = self._seq = 0
        self._later: list = []
        self.stop = threading.Event()
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

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def _customer(self, number: int) -> None:
        try:
            self._play(number, random.Random(f"{self.cfg.seed}:{number}"))
        except Exception as exc:  # noqa: BLE001  (a driver fault must not stop the run: it is counted and shown)
            self.count(f"driver_error_{type(exc).__name__}")
        finally:
            with self.lock:
                self.done += 1
            self.slots.release()

    def _play(self, number: int, rng: random.Random) -> None:
        plan = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        created = self._create(number, rng)
        if created is None or plan == "no_attempt":
            return
        order_id, gateway_order_id = created
        first = {"decline_then_success": "decline", "timeout_then_late": "timeout"}.get(plan, plan)
        payment = self._pay(order_id, gateway_order_id, first, rng)
        if plan == "decline_then_success":
            self._defer(rng.uniform(1, 4), self._pay, order_id, gateway_order_id, "success", rng)
        elif plan == "timeout_then_late" and payment:
            self._defer(self.cfg.abandon_after_s + rng.uniform(3, 25), self._late_authorize, payment["id"])

    def _create(self, number: int, rng: random.Random) -> tuple[str, str] | None:
        org = self.orgs[number % len(self.orgs)]
        body = {"organisation_id": org, "requested_by": f"{org}-admin", "plan": "payg",
                "credits": 1_000 + 500 * rng.randrange(9), "refund_policy_accepted": True}
        for attempt in range(4):  # a customer who tries again: each try is a new order
            answer = self._post("/orders", body, "create", attempts=1)
            if answer is not None and answer.status_code == 201:
                data = answer.json()
                return data["order_id"], data["gateway_order_id"]
            time.sleep(0.5 * 2**attempt)
        self.count("create_gave_up")
        return None

    def _pay(self, order_id: str, gateway_order_id: str, outcome: str, rng: random.Random) -> dict | None:
        try:
            paid = self.sim.pay(gateway_order_id, outcome)
        except SimulatorError:
            self.count("checkout_refused")
            return None
        self.count(f"pay_{outcome}")
        if paid.get("razorpay_signature") and rng.random() < 0.85:
            self._post(f"/orders/{order_id}/verify", {"payment_id": paid["razorpay_payment_id"],
                                                      "signature": paid["razorpay_signature"]}, "callback")
        if rng.random() < 0.25:
            self._post(f"/orders/{order_id}/recheck", {"requested_by": "support:chaos", "wait": False}, "recheck")
        return paid

    def _late_authorize(self, payment_id: str) -> None:
        try:
            self.sim.late_authorize(payment_id)
            self.count("late_authorized")
        except SimulatorError:
            self.count("late_authorize_refused")

    def _post(self, path: str, body: dict, what: str, attempts: int = 6) -> httpx.Response | None:
        """POST like a client that retries 5xx and connection failures with back-off; None if it gave up."""
        for attempt in range(attempts):
            try:
                answer = self.http.post(path, json=body)
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
        except Exception as exc:  # noqa: BLE001
            self.count(f"driver_error_{type(exc).__name__}")
        finally:
            with self.lock:
                self.outstanding -= 1
