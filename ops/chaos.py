"""``make chaos``: thousands of orders through the real processes while workers are ``kill -9``-ed, Redis is
restarted empty and database connections are cut; afterwards every capture must be credited exactly once.

Everything listens on 127.0.0.1 and is stopped at the end, failure or not: a redis-server of its own on a
spare port, a Postgres database of its own (migrated, then dropped), the gateway simulator with faults
(5xx, 429, slow answers; each webhook three times, shuffled), and the Procfile's processes as supervised
subprocesses (``recon web``, two ``dramatiq worker.actors``, ``recon scheduler``): one that exits is restarted.

    python -m ops.chaos --orders 10000        # exit status 1 if anything was lost, doubled or left stuck
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, fields
from pathlib import Path

import httpx
from rich.console import Console
from sqlalchemy import create_engine

from gateways.simulator.razorpay_rules import SimulatorError
from ops import chaos_checks
from ops.chaos_stack import Database, Faults, Proc, RedisServer, free_port, supervise, wait_until

BIN = Path(sys.executable).parent
#: What each customer does, and how often (weights).
MIX = {"success": 62, "decline": 6, "decline_then_success": 4, "timeout_then_late": 8, "timeout": 4,
       "close_window": 6, "gateway_error": 6, "no_attempt": 4}


@dataclass
class ChaosConfig:
    orders: int = 10_000
    concurrency: int = 12  #: customers in flight at once
    workers: int = 2  #: ``dramatiq worker.actors --processes 1 --threads <threads>`` processes
    threads: int = 8
    organisations: int = 20
    kills: int = 6
    redis_restarts: int = 1
    db_terminations: int = 1
    abandon_after_s: int = 20
    check_backoff_s: tuple[int, ...] = (2, 4, 8)
    sweep_interval_s: float = 1.0
    closed_check_every_s: int = 10
    horizon_s: int = 120  #: RECON_LATE_PAYMENT_HORIZON_S
    gateway_rate_per_s: int = 400
    error_rate: float = 0.05
    rate_limit_rate: float = 0.03
    timeout_rate: float = 0.02
    timeout_sleep_s: float = 3.0
    drain_timeout_s: float = 360.0  #: the drain stops with a failure after this long
    seed: int = 7
    redis_port: int = 0  #: 0: the first free port from 6390
    log_level: str = "INFO"
    keep_logs: bool = False



@dataclass
class ChaosResult:
    ok: bool
    failures: list[str]
    tally: chaos_checks.Tally
    run: dict


class Customers:
    """Customers and billing: POST /orders, the checkout in the simulator, callbacks, support rechecks, late banks."""

    def __init__(self, cfg: ChaosConfig, sim, web_url: str, token: str, orgs: list[str]):
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
        last = time.monotonic()
        for number in range(self.cfg.orders):
            self.slots.acquire()
            self.pool.submit(self._customer, number)
            if time.monotonic() - last > 15:
                last = time.monotonic()
                console.log(f"driven {self.done:,}/{self.cfg.orders:,}  {dict(sorted(self.counts.items()))}")
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


def run_chaos(cfg: ChaosConfig, console: Console | None = None) -> ChaosResult:
    """Stand everything up, drive ``cfg.orders`` orders through it while injecting faults, drain, judge."""
    from gateways.simulator import SimulatorConfig, SimulatorServer

    console = console or Console(width=140)
    run_id, started = secrets.token_hex(4), time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix=f"recon-chaos-{run_id}-"))
    (run_dir / "metrics").mkdir()
    stats: Counter[str] = Counter()
    details: dict[str, list[str]] = {"kills": [], "unexpected_exits": [], "db_terminations": []}
    with ExitStack() as stack:
        database = Database(f"recon_chaos_{run_id}")
        database.create()
        stack.callback(database.drop)
        redis_server = RedisServer(cfg.redis_port, run_dir)
        redis_server.start()
        stack.callback(redis_server.stop)
        web_port = free_port()
        web_url = f"http://127.0.0.1:{web_port}"
        sim = stack.enter_context(SimulatorServer(SimulatorConfig(
            seed=cfg.seed, webhook_url=f"{web_url}/webhooks/razorpay", webhook_duplicates=3, shuffle_webhooks=True,
            webhook_backoff_s=0.5, error_rate=cfg.error_rate, rate_limit_rate=cfg.rate_limit_rate,
            timeout_rate=cfg.timeout_rate, timeout_sleep_s=cfg.timeout_sleep_s)))
        token, namespace = secrets.token_urlsafe(24), f"recon-chaos-{run_id}"
        env = _environment(cfg, database.url, redis_server.url, namespace, sim, token, run_dir)
        orgs = _organisations(cfg, database.url, redis_server.url, namespace)
        recon, dramatiq_cli = str(BIN / "recon"), str(BIN / "dramatiq")
        procs = [Proc("web", [recon, "web", "--host", "127.0.0.1", "--port", str(web_port)], env, run_dir),
                 Proc("scheduler", [recon, "scheduler"], env, run_dir)]
        workers = [Proc(f"worker-{n}", [dramatiq_cli, "worker.actors", "--processes", "1", "--threads", str(cfg.threads)],
                        env, run_dir) for n in range(1, cfg.workers + 1)]
        for proc in procs + workers:
            proc.start()
            stack.callback(proc.stop)
        stop = threading.Event()
        supervisor = threading.Thread(target=supervise, args=(procs + workers, stop, stats, details, console), daemon=True)
        supervisor.start()
        stack.callback(supervisor.join, 5)
        stack.callback(stop.set)
        wait_until(lambda: _ready(web_url), 60, "recon web did not become ready")
        wait_until(lambda: redis_server.client.zcard(f"{namespace}:__heartbeats__") >= cfg.workers, 60,
                   "the workers did not start consuming")
        console.log(f"up: web {web_url}, {cfg.workers} workers, scheduler, Redis :{redis_server.port}, "
                    f"database {database.name}; logs in {run_dir}")
        customers = Customers(cfg, sim.sim, web_url, token, orgs)
        stack.callback(customers.close)
        faults = Faults(cfg, workers, redis_server, database, stats, details, console)
        drive_done = threading.Event()
        shaker = threading.Thread(target=faults.run, args=(customers, drive_done, stop), daemon=True)
        shaker.start()
        customers.drive(console)
        drive_done.set()
        shaker.join()
        drive_s = time.monotonic() - started
        console.log(f"drove {customers.done:,} customers in {drive_s:.0f} s; faults off, draining")
        sim.sim.set_knobs(error_rate=0.0, rate_limit_rate=0.0, timeout_rate=0.0)
        wait_until(lambda: customers.outstanding == 0, cfg.abandon_after_s + 120, "late customer actions did not finish")
        engine = create_engine(database.url, pool_pre_ping=True)
        stack.callback(engine.dispose)
        drain_started, timed_out = time.monotonic(), False
        while True:
            tally = chaos_checks.measure(engine, sim.sim, redis_server.client, namespace, horizon_s=cfg.horizon_s)
            if chaos_checks.settled(tally):
                break
            if time.monotonic() - drain_started > cfg.drain_timeout_s:
                timed_out = True
                break
            console.log(f"draining: lost so far {len(tally.lost)}, inbox pending {tally.inbox_pending}, open "
                        f"{tally.open_in_horizon}, stuck {len(tally.stuck)}, webhooks {tally.webhooks.get('pending')}")
            time.sleep(3)
        tally = chaos_checks.measure(engine, sim.sim, redis_server.client, namespace, horizon_s=cfg.horizon_s,
                                     log_dir=run_dir)
        elapsed = time.monotonic() - started
        run = {**stats, "orders_driven": customers.done, "driver": dict(customers.counts), "drive_s": drive_s,
               "orders_per_s": customers.done / max(drive_s, 1e-9), "drain_s": time.monotonic() - drain_started,
               "drain_timed_out": timed_out, "elapsed_s": elapsed, "log_dir": str(run_dir),
               **{f"{key}_detail": " ".join(values) for key, values in details.items()}}
        problems = chaos_checks.failures(tally)
        if timed_out:
            problems.append(f"the drain did not settle within {cfg.drain_timeout_s:.0f} s")
        chaos_checks.render(tally, run, console)
    for problem in problems:
        console.print(f"[red]FAILED[/red] {problem}")
    if not problems and not cfg.keep_logs:
        shutil.rmtree(run_dir, ignore_errors=True)
    console.print("[green]chaos run passed[/green]" if not problems else f"logs kept in {run_dir}")
    return ChaosResult(not problems, problems, tally, run)


def _environment(cfg: ChaosConfig, db_url: str, redis_url: str, namespace: str, sim, token: str,
                 run_dir: Path) -> dict[str, str]:
    """The processes' environment: ours only (no RECON_* inherited), as the Procfile's would be set."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECON_")}
    env.update({
        "RECON_DATABASE_URL": db_url, "RECON_BROKER_URL": redis_url, "RECON_BROKER_NAMESPACE": namespace,
        "RECON_RAZORPAY_BASE_URL": sim.base_url, "RECON_RAZORPAY_KEY_ID": sim.config.key_id,
        "RECON_RAZORPAY_KEY_SECRET": sim.config.key_secret, "RECON_RAZORPAY_WEBHOOK_SECRET": sim.config.webhook_secret,
        "RECON_API_TOKENS": json.dumps({"chaos": token}), "RECON_ABANDON_AFTER_S": str(cfg.abandon_after_s),
        "RECON_CHECK_BACKOFF_S": json.dumps(list(cfg.check_backoff_s)), "RECON_SWEEP_INTERVAL_S": str(cfg.sweep_interval_s),
        "RECON_CLOSED_CHECK_EVERY_S": str(cfg.closed_check_every_s), "RECON_LATE_PAYMENT_HORIZON_S": str(cfg.horizon_s),
        "RECON_GATEWAY_RATE_PER_S": json.dumps({"razorpay": cfg.gateway_rate_per_s, "payglocal": 20}),
        "RECON_LOG_LEVEL": cfg.log_level, "RECON_LOG_JSON": "true", "PYTHONUNBUFFERED": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics"),
    })
    return env


def _organisations(cfg: ChaosConfig, db_url: str, redis_url: str, namespace: str) -> list[str]:
    """Organisations in India, each with an admin who pays (through the service, as ``recon org`` does)."""
    from worker.deps import build_deps
    from worker.services.organisations import add_member, create_organisation
    from worker.settings import Settings

    deps = build_deps(Settings(database_url=db_url, broker_url=redis_url, broker_namespace=namespace))
    orgs = [f"chaos-org-{n:02d}" for n in range(cfg.organisations)]
    for org in orgs:
        create_organisation(org, f"Chaos {org}", "IN", deps=deps)
        add_member(f"{org}-admin", org, f"admin@{org}.example", "admin", deps=deps)
    deps.engine.dispose()
    return orgs


def _ready(web_url: str) -> bool:
    try:
        return httpx.get(f"{web_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.chaos", description=__doc__.splitlines()[0])
    for f in fields(ChaosConfig):
        flag, default = "--" + f.name.replace("_", "-"), getattr(ChaosConfig, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=lambda s: tuple(json.loads(s)), default=default, help="JSON list")
        else:
            parser.add_argument(flag, type=type(default), default=default)
    return 0 if run_chaos(ChaosConfig(**vars(parser.parse_args(argv)))).ok else 1


if __name__ == "__main__":
    sys.exit(main())
