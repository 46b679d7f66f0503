"""Profiles of the paths furthest from their goals, and A/B checks of the fixes they point at.

1. The webhook → credit path (benchmark 1), in-process under pyinstrument: ``store_webhook`` (what
   ``recon web`` does per webhook) and ``process_inbox_event`` (what the worker does), on a scratch
   Postgres database, with the same signed simulator webhooks. The text profile is written to
   ``bench/results/profile-webhook-path.txt``.
2. What one credited order costs, item by item (``bench/costs.py``): statements and commits per order,
   CPU per statement through the ORM and on bare psycopg, per request through FastAPI, per Dramatiq message.
3. Support's recheck (benchmark 3) in-process against the simulator with no latency: our own CPU and
   wall time per recheck, and where it goes (``bench/results/profile-recheck-path.txt``).
4. The sweep's gateway calls (benchmark 2): ``GuardedGateway`` over a fake gateway that answers
   after ``latency``, called from T threads, at sweep priority (through the circuit breaker) and at
   support priority (no breaker), on the private Redis like production. pybreaker's
   ``CircuitBreaker.call`` holds a per-breaker lock for the whole call, so at sweep priority one
   process makes one gateway call at a time.
"""

from __future__ import annotations

import json
import os
import threading
import time

from sqlalchemy import create_engine, text

from bench import costs, harness
from bench.harness import log


def _webhook_setup(count: int, db_url: str):
    from simulator import Simulator, SimulatorConfig
    from worker.deps import build_deps
    from worker.settings import Settings

    sim = Simulator(SimulatorConfig(seed=3))
    engine = create_engine(db_url, pool_size=2)
    orgs = harness.seed_organisations(engine, 100)
    ids = [f"ord_pf{i:016x}" for i in range(count)]
    mapping = harness.sim_orders(sim, ids)
    harness.insert_orders(engine, [{"id": o, "organisation_id": orgs[i % 100], "requested_by": f"{orgs[i % 100]}-admin",
                                    "gateway_order_id": mapping[o]} for i, o in enumerate(ids)])
    for o in ids:
        sim.pay(mapping[o], "success", deliver_webhooks=False)
    events = sim.webhook_events()
    deps = build_deps(Settings(database_url=db_url, broker_url="stub://",
                               razorpay_webhook_secret=sim.config.webhook_secret))
    sim.close()
    return engine, deps, events


def _cpu_per_event(deps, events) -> tuple[float, float]:
    from worker.services import inbox, intake

    t0 = time.process_time()
    stored = [intake.store_webhook("razorpay", e.body, dict(e.headers), deps=deps) for e in events]
    t1 = time.process_time()
    for s in stored:
        inbox.process_inbox_event(s.inbox_id, deps=deps)
    t2 = time.process_time()
    return (t1 - t0) * 1000 / len(events), (t2 - t1) * 1000 / len(events)


def webhook_path(orders: int, out_dir) -> dict:
    from pyinstrument import Profiler

    from worker.logging import configure_logging

    configure_logging(level="INFO", json=True, stream=open(os.devnull, "w"))  # noqa: SIM115  (open for the run)
    with harness.scratch_db("profile") as db_url:
        engine, deps, events = _webhook_setup(orders, db_url)
        warm, rest = events[:60], events[60:]
        _cpu_per_event(deps, warm)
        measured, profiled = rest[: len(rest) // 2], rest[len(rest) // 2:]
        store_ms, process_ms = _cpu_per_event(deps, measured)  # batched: an order's 3 rows stored, then applied
        profiler = Profiler(interval=0.001)
        profiler.start()
        _cpu_per_event(deps, profiled)
        profiler.stop()
        (out_dir / "profile-webhook-path.txt").write_text(
            profiler.output_text(unicode=True, color=False, show_all=False))
        with engine.connect() as connection:
            credited = connection.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one()
        deps.engine.dispose()
        engine.dispose()
    return {"events_profiled": len(profiled), "credited": credited, "store_ms_cpu": round(store_ms, 2),
            "process_ms_cpu": round(process_ms, 2), "events_measured": len(measured),
            "profile_file": "bench/results/profile-webhook-path.txt",
            "hot_spots": _hot_spots(profiler)}


def recheck_path(orders: int, out_dir) -> dict:
    """Support's recheck as ``POST /orders/{id}/recheck`` runs it (404 check + ``recheck_order``), in-process,
    against the simulator with no added latency, so what is left is our own cost per recheck."""
    from pyinstrument import Profiler

    from simulator import SimulatorConfig, SimulatorServer
    from worker.deps import build_deps
    from worker.services import recheck, views
    from worker.settings import Settings

    with SimulatorServer(SimulatorConfig(seed=4)) as simulator, harness.scratch_db("profile_recheck") as db_url:
        sim = simulator.sim
        engine = create_engine(db_url, pool_size=2)
        orgs = harness.seed_organisations(engine, 10)
        ids = [f"ord_rp{i:016x}" for i in range(orders)]
        mapping = harness.sim_orders(sim, ids)
        for i, o in enumerate(ids):
            if i % 10 == 0:
                sim.pay(mapping[o], "success", deliver_webhooks=False)
        harness.insert_orders(engine, [{"id": o, "organisation_id": orgs[i % 10],
                                        "requested_by": f"{orgs[i % 10]}-admin", "gateway_order_id": mapping[o]}
                                       for i, o in enumerate(ids)])
        deps = build_deps(Settings(database_url=db_url, broker_url="stub://", razorpay_base_url=simulator.base_url,
                                   razorpay_key_id=sim.config.key_id, razorpay_key_secret=sim.config.key_secret,
                                   razorpay_webhook_secret=sim.config.webhook_secret))

        def one(order_id: str) -> None:
            views.order_detail(order_id, deps=deps)
            recheck.recheck_order(order_id, "support:bench (token bench)", deps=deps, reason="benchmark")

        for o in ids[:20]:
            one(o)
        profiler = Profiler(interval=0.001)
        cpu, wall = time.process_time(), time.perf_counter()
        profiler.start()
        for o in ids[20:]:
            one(o)
        profiler.stop()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        (out_dir / "profile-recheck-path.txt").write_text(profiler.output_text(unicode=True, color=False))
        deps.engine.dispose()
        engine.dispose()
    n = len(ids) - 20
    return {"rechecks": n, "ms_cpu_per_recheck": round(cpu * 1000 / n, 2),
            "ms_wall_per_recheck": round(wall * 1000 / n, 2),
            "profile_file": "bench/results/profile-recheck-path.txt", "hot_spots": _hot_spots(profiler)}


def _hot_spots(profiler, limit: int = 12) -> list[dict]:
    """Our functions (worker/, db/, gateways/, ops/) by inclusive time in the profile."""
    session = profiler.last_session
    totals: dict[str, float] = {}

    def walk(frame, seen: frozenset):
        name = (f"{frame.function} ({frame.file_path_short}:{frame.line_no})" if frame.file_path_short
                else frame.function)
        ours = frame.file_path_short and frame.file_path_short.split("/")[0] in ("worker", "db", "gateways", "ops")
        if ours and name not in seen and not frame.function.startswith("["):
            totals[name] = totals.get(name, 0.0) + frame.time
            seen = seen | {name}
        for child in frame.children:
            walk(child, seen)

    root = session.root_frame()
    walk(root, frozenset())
    total = root.time or 1.0
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:limit]
    return [{"function": k, "share": round(v / total, 3)} for k, v in ranked]


def breaker_serialisation(redis: harness.RedisTarget, *, latency_s: float = 0.1, threads: int = 16,
                          calls: int = 96) -> dict:
    """Calls/s through GuardedGateway at sweep priority (breaker) and at support priority, T threads."""
    from gateways.port import RemoteOrder
    from worker.coordination import Coordination
    from worker.deps import guard
    from worker.gateway_guard import low_priority
    from worker.settings import Settings

    answer = RemoteOrder(gateway_order_id="order_x", amount_minor=1, currency="INR", receipt=None,
                         wire_status="created")

    class SlowGateway:
        name = "razorpay"

        def fetch_order(self, gateway_order_id: str):
            time.sleep(latency_s)
            return answer

    settings = Settings(broker_url=redis.url, broker_namespace=f"{redis.namespace}-breaker",
                        gateway_rate_per_s={"razorpay": 10_000})
    gateway = guard({"razorpay": SlowGateway()}, settings, Coordination(settings))["razorpay"]

    def measure(sweeping: bool) -> float:
        remaining = iter(range(calls))
        lock = threading.Lock()

        def work():
            while True:
                with lock:
                    if next(remaining, None) is None:
                        return
                if sweeping:
                    with low_priority():
                        gateway.fetch_order("order_x")
                else:
                    gateway.fetch_order("order_x")

        pool = [threading.Thread(target=work) for _ in range(threads)]
        started = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return calls / (time.perf_counter() - started)

    sweep_rate, support_rate = measure(True), measure(False)
    return {"threads": threads, "latency_s": latency_s, "calls": calls,
            "sweep_priority_calls_per_s": round(sweep_rate, 1), "support_priority_calls_per_s": round(support_rate, 1),
            "ideal_calls_per_s": round(threads / latency_s, 1)}


def run(*, orders: int, out_dir, redis: harness.RedisTarget) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"profile: webhook → credit path in-process ({orders} orders, pyinstrument)")
    webhook = webhook_path(orders, out_dir)
    log("profile: the webhook path's costs item by item (statements, ORM vs psycopg, FastAPI, Dramatiq)")
    webhook["costs"] = costs.run(redis)
    log("profile: recheck path in-process (simulator without latency)")
    recheck = recheck_path(max(60, orders // 3), out_dir)
    log("profile: GuardedGateway concurrency at sweep vs support priority")
    breaker = breaker_serialisation(redis)
    return {"webhook_path": webhook, "recheck_path": recheck, "breaker": breaker}


if __name__ == "__main__":
    from pathlib import Path

    with harness.private_redis() as target:
        print(json.dumps(run(orders=300, out_dir=Path(harness.RESULTS), redis=target), indent=1))
