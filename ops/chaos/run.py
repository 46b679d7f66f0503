"""A chaos run, start to end: stand everything up, drive the customers while the faults strike, stop the
faults, drain (bounded), judge, and tear everything down whatever happened."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from ops.chaos import checks
from ops.chaos.customers import Customers, SupportDesk
from ops.chaos.stack import Database, Faults, Proc, RedisServer, free_port, supervise, wait_until
from ops.simulator_client import SimulatorClient, SimulatorProcess

BIN = Path(sys.executable).parent


@dataclass
class ChaosConfig:
    """One run: its size, its processes, the service's timings (short, so that the run can end) and the faults."""

    orders: int = 10_000
    concurrency: int = 12  #: customers in flight at once
    workers: int = 2  #: ``dramatiq worker.main:start --processes 1 --threads <threads>`` processes
    threads: int = 8
    organisations: int = 20
    payglocal_share: float = 0.3  #: organisations in region US (PayGlocal); the others are in IN (Razorpay)
    manual_capture_share: float = 0.2  #: orders made through a ``recon web`` with ``razorpay_manual_capture``
    review_share: float = 0.8  #: orders reaching needs_review that support decides (the rest stay for a person)
    replay_share: float = 0.15  #: Razorpay payments one of whose webhooks is replayed under a fresh event id
    kills: int = 6  #: ``kill -9`` of a worker (its process group, or only its forked child)
    redis_restarts: int = 1  #: Redis stopped and started empty: queued messages are lost
    db_terminations: int = 1  #: every database connection of the run terminated at once
    abandon_after_s: int = 20
    check_backoff_s: tuple[int, ...] = (2, 4, 8)
    sweep_interval_s: float = 1.0
    closed_check_every_s: int = 10
    horizon_s: int = 120  #: RECON_LATE_PAYMENT_HORIZON_S
    check_lease_s: int = 45  #: RECON_CHECK_LEASE_S, scaled down with the rest (a check killed mid-way holds it)
    gateway_rate_per_s: int = 400
    error_rate: float = 0.05  #: gateway API calls answered 5xx ...
    rate_limit_rate: float = 0.03  #: ... or 429 ...
    timeout_rate: float = 0.02  #: ... or only after ``timeout_sleep_s``
    timeout_sleep_s: float = 3.0
    refund_pending_s: float = 3.0  #: a Razorpay refund stays pending this long (simulator refund_processed_after_s)
    refunds_due_every_s: float = 10.0  #: while draining, our refunds in flight are made due this often (see _drain)
    max_webhook_backlog: int = 1_500  #: customers wait while the gateway has more webhook deliveries queued
    drain_timeout_s: float = 600.0  #: the drain stops with a failure after this long
    stall_s: float = 60.0  #: ... or once nothing is in flight and the money left to settle has not moved this long
    seed: int = 7
    redis_port: int = 0  #: 0: the first free port from 6390
    log_level: str = "INFO"
    keep_logs: bool = False


@dataclass
class ChaosResult:
    ok: bool
    failures: list[str]
    tally: checks.Tally
    run: dict


@dataclass
class _Running:
    """What :func:`_stand_up` started (everything registered on the exit stack for the teardown)."""

    database: Database
    redis: RedisServer
    sim: SimulatorClient
    web_url: str
    manual_web_url: str
    token: str
    namespace: str
    workers: list[Proc]
    stop: threading.Event = field(default_factory=threading.Event)


def run_chaos(cfg: ChaosConfig, console: Console | None = None) -> ChaosResult:
    """Stand everything up, drive ``cfg.orders`` customers while the faults strike, drain, judge, tear down."""
    console = console or Console(width=140)
    started = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="recon-chaos-"))
    stats: Counter[str] = Counter()
    details: dict[str, list[str]] = {"kills": [], "unexpected_exits": [], "redis_restarts": [], "db_terminations": []}
    with ExitStack() as stack:
        up = _stand_up(stack, cfg, run_dir, stats, details, console)
        engine = create_engine(up.database.url, pool_pre_ping=True)
        stack.callback(engine.dispose)
        up.sim.set_knobs(refund_processed_after_s=cfg.refund_pending_s)
        customers = Customers(cfg, up.sim, up.web_url, up.token, _organisations(cfg, up), up.manual_web_url)
        stack.callback(customers.close)
        desk = SupportDesk(cfg, engine, customers)
        desk.start()
        stack.callback(desk.close)
        faults = Faults(cfg, up.workers, up.redis, up.database, stats, details, console)
        drive_done = threading.Event()
        shaker = threading.Thread(target=faults.run, args=(customers, drive_done, up.stop), daemon=True)
        shaker.start()
        drive_started = time.monotonic()
        customers.drive(console)
        drive_done.set()
        shaker.join()
        drive_s = time.monotonic() - drive_started
        console.log(f"drove {customers.done:,} customers in {drive_s:.0f} s; faults off, draining")
        up.sim.set_knobs(error_rate=0.0, rate_limit_rate=0.0, timeout_rate=0.0)
        wait_until(lambda: customers.outstanding == 0, cfg.abandon_after_s + 120,
                   "late customer actions did not finish")
        drain_started = time.monotonic()
        drain_end = _drain(cfg, up, engine, desk, customers, stats, console)
        desk.close()
        tally = checks.measure(engine, up.sim, up.redis.client, up.namespace, horizon_s=cfg.horizon_s,
                               log_dir=run_dir, **customers.witness())
        run = {**stats, "orders_driven": customers.done, "driver": dict(customers.counts), "drive_s": drive_s,
               "orders_per_s": customers.done / max(drive_s, 1e-9), "drain_s": time.monotonic() - drain_started,
               "drain_end": drain_end, "elapsed_s": time.monotonic() - started, "log_dir": str(run_dir),
               **{f"{key}_detail": " ".join(values) for key, values in details.items()}}
        problems = checks.failures(tally) + ([f"the drain did not settle within {cfg.drain_timeout_s:.0f} s"]
                                             if drain_end == "timed out" else [])
        checks.render(tally, run, console)
        if problems:
            _show_timelines(engine, tally, run_dir, console)
    for problem in problems:
        console.print(f"[red]FAILED[/red] {problem}")
    if not problems and not cfg.keep_logs:
        shutil.rmtree(run_dir, ignore_errors=True)
    console.print("[green]chaos run passed[/green]" if not problems
                  else f"[red]chaos run failed[/red]; logs in {run_dir}")
    return ChaosResult(not problems, problems, tally, run)


def _show_timelines(engine, tally: checks.Tally, run_dir: Path, console: Console) -> None:
    """Before the database is dropped: what we hold about the failing orders (all in timelines.txt, a few shown)."""
    failing = tally.verdict.failing_orders(tally.truth) + [o for o in tally.stuck + tally.paid_without_ledger]
    failing = list(dict.fromkeys(failing))
    if not failing:
        return
    try:
        told = checks.timelines(engine, failing[:200], tally.truth, tally.verdict)
    except Exception as exc:  # noqa: BLE001  (the timelines are a diagnostic extra; the verdict stands without them)
        console.print(f"[yellow]could not read the failing orders' timelines: {exc!r}[/yellow]")
        return
    (run_dir / "timelines.txt").write_text(told + "\n")
    shown = checks.timelines(engine, failing[:4], tally.truth, tally.verdict)
    console.print(f"[bold]timelines of {min(4, len(failing))} of {len(failing)} failing orders[/bold] "
                  f"(all in {run_dir / 'timelines.txt'}):\n{shown}", markup=False, highlight=False)


def _stand_up(stack: ExitStack, cfg: ChaosConfig, run_dir: Path, stats: Counter, details: dict,
              console: Console) -> _Running:
    """Database, Redis, simulator, then web, scheduler and workers under a supervisor; each torn down by ``stack``."""
    run_id = secrets.token_hex(4)
    database = Database(f"recon_chaos_{run_id}")
    stack.callback(database.drop)  # before create(): a failed migration still drops it
    database.create()
    redis_server = RedisServer(cfg.redis_port, run_dir)
    redis_server.start()
    stack.callback(redis_server.stop)
    web_url, manual_web_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    sim = stack.enter_context(SimulatorProcess(  # its own process, driven over its control API
        log_path=run_dir / "simulator.log", seed=cfg.seed, webhook_url=f"{web_url}/webhooks/razorpay",
        webhook_duplicates=3, shuffle_webhooks=True, webhook_backoff_s=0.5, error_rate=cfg.error_rate,
        rate_limit_rate=cfg.rate_limit_rate, timeout_rate=cfg.timeout_rate, timeout_sleep_s=cfg.timeout_sleep_s))
    up = _Running(database, redis_server, sim, web_url, manual_web_url, secrets.token_urlsafe(24),
                  f"recon-chaos-{run_id}", [])
    env = _environment(cfg, up, run_dir)
    manual_env = {**env, "RECON_RAZORPAY_MANUAL_CAPTURE": "true"}
    recon, dramatiq_cli = str(BIN / "recon"), str(BIN / "dramatiq")
    procs = [Proc("web", [recon, "web", "--host", "127.0.0.1", "--port", web_url.rsplit(":", 1)[1]], env, run_dir),
             Proc("scheduler", [recon, "scheduler"], env, run_dir)]
    if cfg.manual_capture_share > 0:
        procs.append(Proc("web-manual", [recon, "web", "--host", "127.0.0.1", "--port",
                                         manual_web_url.rsplit(":", 1)[1]], manual_env, run_dir))
    up.workers = [Proc(f"worker-{n}", [dramatiq_cli, "worker.main:start", "--processes", "1", "--threads",
                                       str(cfg.threads)], env, run_dir) for n in range(1, cfg.workers + 1)]
    for proc in procs + up.workers:
        proc.start()
        stack.callback(proc.stop)
    supervisor = threading.Thread(target=supervise, args=(procs + up.workers, up.stop, stats, details, console),
                                  daemon=True, name="chaos-supervisor")
    supervisor.start()
    stack.callback(supervisor.join, 5)
    stack.callback(up.stop.set)
    wait_until(lambda: _ready(web_url), 60, "recon web did not become ready")
    if cfg.manual_capture_share > 0:
        wait_until(lambda: _ready(manual_web_url), 60, "the manual-capture recon web did not become ready")
    else:
        up.manual_web_url = ""
    wait_until(lambda: redis_server.client.zcard(f"{up.namespace}:__heartbeats__") >= cfg.workers, 60,
               "the workers did not start consuming")
    console.log(f"up: web {web_url} (manual capture: {up.manual_web_url or 'none'}), {cfg.workers} workers, "
                f"scheduler, Redis :{redis_server.port}, database {database.name}; logs in {run_dir}")
    return up


def _drain(cfg: ChaosConfig, up: _Running, engine, desk: SupportDesk, customers: Customers, stats: Counter,
           console: Console) -> str:
    """Wait until nothing more can happen (see :func:`checks.settled`) and support has decided what it will.

    Our refunds in flight are looked at again by the scheduler with a back-off of minutes (``money.next_check``:
    1, 2, 4 … minutes), longer than this run's scaled-down timings; so every ``refunds_due_every_s`` the harness
    brings the looks the service planned forward to now (``UPDATE refunds SET next_check_at = now()``, see
    :func:`_make_refunds_due`), as if the minutes had passed, and the run settles.

    Returns how it ended: "settled", "timed out" (the bound ran out), or "stalled" (nothing in flight but our
    refunds, support idle, and the money left to settle and the refunds in flight have not moved for ``stall_s``:
    waiting longer would only delay the report)."""
    drain_started = logged = time.monotonic()
    last_money, money_since, made_due_at = None, time.monotonic(), 0.0
    while time.monotonic() - drain_started < cfg.drain_timeout_s:
        if time.monotonic() - made_due_at > cfg.refunds_due_every_s:
            made_due_at = time.monotonic()
            try:
                stats["refunds_made_due"] += _make_refunds_due(engine)
            except OperationalError as exc:
                console.log(f"[yellow]making refunds due failed, trying again: {str(exc).splitlines()[0]}[/yellow]")
        try:
            tally = checks.measure(engine, up.sim, up.redis.client, up.namespace, horizon_s=cfg.horizon_s,
                                   **customers.witness())
        except OperationalError as exc:  # the shared Postgres may refuse a connection for a moment: measure again
            console.log(f"[yellow]measuring failed, trying again: {str(exc).splitlines()[0]}[/yellow]")
            time.sleep(2)
            continue
        quiet = checks.idle(tally, refunds=False) and desk.idle()
        if quiet and checks.idle(tally) and tally.unsettled_money == 0:
            return "settled"
        v = tally.verdict
        money = (tuple(v.under_credited), tuple(v.over_credited), tuple(v.uncredited_payments),
                 tuple(v.lost_captures), tuple(v.refunds_out_of_step), tuple(v.disputes_out_of_step),
                 tuple(v.stuck_refunds), tally.gateway_refunds_pending)
        if money != last_money or not quiet:
            last_money, money_since = money, time.monotonic()
        elif time.monotonic() - money_since > cfg.stall_s:
            return (f"stalled: {tally.unsettled_money} unsettled and {tally.refunds_in_flight} refunds in flight "
                    f"unchanged for {cfg.stall_s:.0f} s")
        if time.monotonic() - logged > 15:
            logged = time.monotonic()
            console.log(f"draining: under-credited {len(v.under_credited)}, over-credited {len(v.over_credited)}, "
                        f"kept not credited {len(v.uncredited_payments)}, authorised not captured "
                        f"{len(v.lost_captures)}, refunds in flight {tally.refunds_in_flight} (at the gateway "
                        f"{tally.gateway_refunds_pending}), refunds/disputes out of step {len(v.refunds_out_of_step)}/"
                        f"{len(v.disputes_out_of_step)}, inbox pending {tally.inbox_pending}, open "
                        f"{tally.open_in_horizon} (checks planned {tally.open_scheduled}), past the horizon "
                        f"{len(tally.stuck)}, webhooks queued {tally.webhooks.get('pending')}, support idle "
                        f"{desk.idle()}")
        time.sleep(2)
    return "timed out"


def _make_refunds_due(engine) -> int:
    """Bring the next look at every refund in flight forward to now (the harness compressing the service's
    back-off of minutes, see :func:`_drain`). Only a look the service planned: a refund in flight with none
    planned (``next_check_at`` NULL) is left alone, for the judge to find stuck. A look whose check is running
    holds a lease in ``next_check_at`` (``claim_due_refunds``); making it due starts a second check, which the
    service must take (both lock the order; a refund is observed once)."""
    with engine.begin() as c:
        return c.execute(text("UPDATE refunds SET next_check_at = now() WHERE state IN ('requested', 'pending') "
                              "AND next_check_at > now()")).rowcount


def _environment(cfg: ChaosConfig, up: _Running, run_dir: Path) -> dict[str, str]:
    """The processes' environment: ours only (no RECON_* inherited), as a Procfile's would be. Both gateways are
    configured with the keys the simulator serves (``/_sim/razorpay/keys``, ``/_sim/payglocal/keys``)."""
    (run_dir / "metrics").mkdir(exist_ok=True)
    sim = up.sim.razorpay_keys()
    payglocal = up.sim.payglocal_settings()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECON_")}
    env.update({
        "RECON_DATABASE_URL": up.database.url, "RECON_BROKER_URL": up.redis.url, "RECON_BROKER_NAMESPACE": up.namespace,
        "RECON_RAZORPAY_BASE_URL": up.sim.base_url, "RECON_RAZORPAY_KEY_ID": sim["key_id"],
        "RECON_RAZORPAY_KEY_SECRET": sim["key_secret"], "RECON_RAZORPAY_WEBHOOK_SECRET": sim["webhook_secret"],
        "RECON_PAYGLOCAL_BASE_URL": up.sim.base_url, "RECON_PAYGLOCAL_MERCHANT_ID": payglocal["merchant_id"],
        "RECON_PAYGLOCAL_PRIVATE_KEY_PEM": payglocal["private_key_pem"],
        "RECON_PAYGLOCAL_PRIVATE_KID": payglocal["private_kid"],
        "RECON_PAYGLOCAL_PUBLIC_KEYS": json.dumps(payglocal["payglocal_public_keys"]),
        "RECON_PAYGLOCAL_PUBLIC_KID": payglocal["payglocal_public_kid"],
        "RECON_PAYGLOCAL_CALLBACK_URL": f"{up.web_url}/webhooks/payglocal",
        "RECON_API_TOKENS": json.dumps({"chaos": up.token}), "RECON_ABANDON_AFTER_S": str(cfg.abandon_after_s),
        "RECON_CHECK_BACKOFF_S": json.dumps(list(cfg.check_backoff_s)),
        "RECON_SWEEP_INTERVAL_S": str(cfg.sweep_interval_s),
        "RECON_CLOSED_CHECK_EVERY_S": str(cfg.closed_check_every_s), "RECON_LATE_PAYMENT_HORIZON_S": str(cfg.horizon_s),
        "RECON_CHECK_LEASE_S": str(cfg.check_lease_s),
        "RECON_GATEWAY_RATE_PER_S": json.dumps({"razorpay": cfg.gateway_rate_per_s,
                                                "payglocal": cfg.gateway_rate_per_s}),
        "RECON_LOG_LEVEL": cfg.log_level, "RECON_LOG_JSON": "true", "PYTHONUNBUFFERED": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics"),
    })
    return env


def _organisations(cfg: ChaosConfig, up: _Running) -> list[tuple[str, str]]:
    """Organisations in India (Razorpay) and, ``payglocal_share`` of them, in the US (PayGlocal), each with an
    admin who pays (created through the service, as ``recon org`` does); (organisation id, gateway) pairs."""
    from worker.deps import build_deps
    from worker.services.organisations import add_member, create_organisation
    from worker.settings import Settings

    deps = build_deps(Settings(database_url=up.database.url, broker_url=up.redis.url, broker_namespace=up.namespace))
    us = round(cfg.organisations * cfg.payglocal_share)
    orgs = []
    for n in range(cfg.organisations):
        region, gateway = ("US", "payglocal") if _spread(n, cfg.organisations, us) else ("IN", "razorpay")
        org = f"chaos-org-{n:02d}-{region.lower()}"
        create_organisation(org, f"Chaos {org}", region, deps=deps)
        add_member(f"{org}-admin", org, f"admin@{org}.example", "admin", deps=deps)
        orgs.append((org, gateway))
    deps.engine.dispose()
    return orgs


def _spread(n: int, total: int, chosen: int) -> bool:
    """True for ``chosen`` of ``total`` indices, evenly spread (so customer ``number % total`` mixes gateways)."""
    return chosen > 0 and (n * chosen) // total != ((n + 1) * chosen) // total


def _ready(web_url: str) -> bool:
    try:
        return httpx.get(f"{web_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
