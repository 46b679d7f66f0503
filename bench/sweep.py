"""Benchmark 2: sweep throughput (and the stage for benchmarks 3 and 5).

N open orders, all due, are inserted with SQL; each has its order in the simulator (created in-process
through the simulator's API): 10 % captured there without any webhook reaching us (the sweep must
credit them), 30 % with a declined attempt, 60 % with no attempt yet. The simulator answers every
``/v1`` request after ``latency_ms``. The production processes sweep them: ``recon scheduler`` (the
real APScheduler round, leader lock, SKIP LOCKED claims) enqueues ``check_order`` for
``dramatiq worker.main:start`` (``--processes P --threads T``), whose gateway calls share the Redis rate
limit ``RECON_GATEWAY_RATE_PER_S`` = R, of which sweeps may use ``RECON_SWEEP_SHARE`` (0.8).

Two settings are changed from their defaults so that each order is checked once and the figure is
the sweep's, not the back-off's: ``RECON_CHECK_BACKOFF_S=[3600]`` (a checked order is not due again
within the run) and ``RECON_CHECK_LEASE_S=900`` (a claimed order still waiting in the queue is not
claimed again while the backlog drains; with the default 120 s a backlog longer than 120 s is
claimed twice).

Measured: orders checked per second, from the first check to the last (``orders.last_checked_at``).
Baselines: the ideal bound min(R × sweep share, P × T / check latency), where one check is one
gateway request (``GET /v1/orders/{id}/payments``) and the rate limit counts requests, so check
latency = latency; and a sequential loop with the official ``razorpay`` SDK
(``razorpay.Client(base_url=simulator)``, the same one request per order) over a sample of orders,
extrapolated to a rate. Goal: ≥ 0.9 × bound and ≥ 10 × the sequential loop.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from bench import harness
from bench.harness import log
from bench.recheck import Detached, RecheckLoad, RoundTripProbe


def sdk_sequential(base_url: str, key_id: str, key_secret: str, gateway_order_ids: list[str]) -> dict:
    """The official SDK, one order after the other: fetch the order and its payments."""
    import razorpay

    client = razorpay.Client(auth=(key_id, key_secret), base_url=base_url)
    started = time.perf_counter()
    for gateway_order_id in gateway_order_ids:
        client.order.payments(gateway_order_id)
    elapsed = time.perf_counter() - started
    client.session.close()
    return {"orders": len(gateway_order_ids), "seconds": round(elapsed, 2),
            "orders_per_s": round(len(gateway_order_ids) / elapsed, 2), "sdk": f"razorpay {razorpay.__version__}"
            if hasattr(razorpay, "__version__") else "razorpay"}


def _plan(i: int) -> str:
    """What the customer did at the gateway: 10 % captured, 30 % declined, 60 % nothing yet."""
    return "success" if i % 10 == 0 else "decline" if i % 10 in (1, 2, 3) else "none"


def _seed(sim, engine, prefix: str, count: int, orgs: list[str], next_check_at) -> list[str]:
    ids = [f"ord_{prefix}{i:016x}" for i in range(count)]
    mapping = harness.sim_orders(sim, ids)
    rows = []
    for i, order_id in enumerate(ids):
        plan = _plan(i)
        if plan != "none":
            sim.pay(mapping[order_id], plan, deliver_webhooks=False)
        org = orgs[i % len(orgs)]
        rows.append({"id": order_id, "organisation_id": org, "requested_by": f"{org}-admin",
                     "gateway_order_id": mapping[order_id], "state": "created" if plan == "none" else "pending",
                     "last_attempt_at": None if plan == "none" else harness.ago(30), "created_at": harness.ago(60),
                     "next_check_at": next_check_at})
    harness.insert_orders(engine, rows)
    return ids


def run(*, orders: int, rate: int, latency_ms: int, worker_processes: int, worker_threads: int, sdk_orders: int,
        recheck_rate: float, logs: Path, max_seconds: float, sweep_share: float = 0.8) -> dict:
    from simulator import SimulatorConfig, SimulatorServer

    result: dict = {"orders": orders, "rate_limit_per_s": rate, "sweep_share": sweep_share,
                    "simulator_latency_ms": latency_ms,
                    "worker": {"processes": worker_processes, "threads": worker_threads}}
    check_latency_s = latency_ms / 1000  # one request per check
    bound = min(rate * sweep_share, worker_processes * worker_threads / check_latency_s)
    result["bound_per_s"] = round(bound, 1)
    recheck_orders = max(50, int(recheck_rate * min(max_seconds, orders / bound * 1.5 + 60)))
    with (SimulatorServer(SimulatorConfig(seed=2, latency_ms=latency_ms)) as simulator,
          harness.scratch_db("sweep") as db_url, harness.private_redis() as redis, harness.metrics_dir() as mdir):
        sim = simulator.sim
        engine = create_engine(db_url, pool_size=2)
        orgs = harness.seed_organisations(engine, 100)
        log(f"sweep: seeding {orders} due orders and {recheck_orders} orders for rechecks")
        _seed(sim, engine, "sw", orders, orgs, harness.ago(5))
        recheck_ids = _seed(sim, engine, "rc", recheck_orders, orgs, harness.ago(-3600))
        with engine.connect() as connection:
            recheck_gateway_ids = list(connection.execute(text(
                "SELECT gateway_order_id FROM orders WHERE id LIKE 'ord_rc%' ORDER BY id")).scalars())
        with engine.connect() as connection:
            connection.execute(text("ANALYZE orders"))
            connection.commit()
            gateway_ids = [r[0] for r in connection.execute(
                text("SELECT gateway_order_id FROM orders WHERE id LIKE 'ord_sw%' ORDER BY id LIMIT :n"),
                {"n": sdk_orders})]
        log(f"sweep: baseline: official razorpay SDK, sequential, {sdk_orders} orders at {latency_ms} ms latency")
        sdk = sdk_sequential(simulator.base_url, sim.config.key_id, sim.config.key_secret, gateway_ids)
        result["baseline"] = {"sdk_sequential": sdk, "ideal_bound": {
            "rate_x_share": rate * sweep_share, "threads_over_check_latency": worker_processes * worker_threads /
            check_latency_s, "check_latency_s": check_latency_s}}
        log(f"sweep: SDK sequential loop {sdk['orders_per_s']} orders/s; ideal bound {bound:.1f}/s")

        env = harness.service_env(db_url, redis, simulator.base_url, sim.config, mdir,
                                  gateway_rate_per_s={"razorpay": rate, "payglocal": 20}, sweep_share=str(sweep_share),
                                  check_backoff_s=[3600], check_lease_s="900")
        with harness.services(env, logs / "sweep") as procs:
            procs.start_worker(worker_processes, worker_threads)
            web = procs.start_web()
            workers = procs.worker_pids()
            rss_boot = {pid: harness.rss_kb(pid) for pid in workers}
            cpu_before = {pid: harness.cpu_seconds(pid) for pid in workers}
            own_cpu_before = harness.cpu_seconds(os.getpid())
            load = Detached(RecheckLoad, web, recheck_ids, recheck_rate).start() if recheck_rate else None
            probe = Detached(RoundTripProbe, simulator.base_url, (sim.config.key_id, sim.config.key_secret),
                             recheck_gateway_ids, recheck_rate).start() if recheck_rate else None
            procs.start_scheduler()
            started = time.monotonic()
            log(f"sweep: scheduler started; {orders} orders due at R={rate}/s (sweeps get {rate * sweep_share:g}/s)")
            deadline = started + max_seconds
            progress, rss_samples, checked, during = [], [], 0, None
            with engine.connect() as connection:
                while time.monotonic() < deadline:
                    checked = connection.execute(text(
                        "SELECT count(*) FROM orders WHERE id LIKE 'ord_sw%' AND last_checked_at IS NOT NULL"
                    )).scalar_one()
                    connection.commit()
                    progress.append((round(time.monotonic() - started, 1), checked))
                    rss_samples.append((checked, {pid: harness.rss_kb(pid) for pid in workers}))
                    if checked >= orders:
                        break
                    if during is None and len(progress) >= 20:
                        during = harness.machine_snapshot("during sweep")
                    if len(progress) % 15 == 0:
                        log(f"sweep: {checked}/{orders} checked after {progress[-1][0]:.0f} s")
                    time.sleep(1)
            rss_end = {pid: harness.rss_kb(pid) for pid in workers}
            cpu = {pid: round(harness.cpu_seconds(pid) - cpu_before[pid], 1) for pid in workers}
            cpu_web = round(harness.cpu_seconds(procs.processes["web"].pid), 1)
            cpu_scheduler = round(harness.cpu_seconds(procs.processes["scheduler"].pid), 1)
            own_cpu = round(harness.cpu_seconds(os.getpid()) - own_cpu_before, 1)
            rechecks = load.stop() if load is not None else None
            round_trips = probe.stop() if probe is not None else None
            elapsed = time.monotonic() - started
        with engine.connect() as connection:
            first, last = connection.execute(text(
                "SELECT min(last_checked_at), max(last_checked_at) FROM orders WHERE id LIKE 'ord_sw%'")).one()
            states = dict(connection.execute(text(
                "SELECT state, count(*) FROM orders WHERE id LIKE 'ord_sw%' GROUP BY state")).all())
            credited = connection.execute(text(
                "SELECT count(*) FROM ledger_entries WHERE order_id LIKE 'ord_sw%'")).scalar_one()
            checked_ids = connection.execute(text(
                "SELECT id FROM orders WHERE id LIKE 'ord_sw%' AND last_checked_at IS NOT NULL")).scalars().all()
            polls_untouched = connection.execute(text(
                "SELECT avg(check_count)::float FROM orders WHERE id LIKE 'ord_sw%' AND state = 'created'"
            )).scalar_one()
        engine.dispose()
    window = (last - first).total_seconds() if first and last else None
    per_s = (checked - 1) / window if window else 0.0
    result.update({
        "finished": checked >= orders, "max_seconds": max_seconds, "checked": checked, "elapsed_s": round(elapsed, 1),
        "check_window_s": round(window or 0, 1),
        "checked_per_s": round(per_s, 1), "states": states, "credited_by_sweep": credited,
        "credited_expected": sum(1 for order_id in checked_ids if _plan(int(order_id[6:], 16)) == "success"),
        "polls_per_untouched_order": round(polls_untouched or 0, 3),
        "progress": progress[:: max(1, len(progress) // 40)],
        "worker_rss_kb": {"boot": rss_boot, "end": rss_end, "samples": rss_samples},
        "cpu_s": {"workers": cpu, "web": cpu_web, "scheduler": cpu_scheduler,
                  "bench_process (simulator)": own_cpu},
        "machine_during": during,
    })
    sdk_rate = result["baseline"]["sdk_sequential"]["orders_per_s"]
    vs_bound, vs_sdk = per_s / bound, per_s / sdk_rate if sdk_rate else 0.0
    result["goals"] = [{
        "benchmark": "2 sweep throughput",
        "goal": "≥ 0.9 × ideal bound min(R×share, concurrency/check latency)",
        "measured": f"{per_s:.1f} orders/s ({checked:,}/{orders:,} checked in {window or 0:.0f} s"
                    + ("" if checked >= orders else f"; stopped at the {max_seconds:.0f} s cap") + ")",
        "baseline": f"bound {bound:.1f}/s (R={rate}/s × {sweep_share}; {worker_processes}×{worker_threads} threads / "
                    f"{check_latency_s:.1f} s)",
        "ratio": round(vs_bound, 3), "target": 0.9, "met": vs_bound >= 0.9,
    }, {
        "benchmark": "2 sweep throughput",
        "goal": "≥ 10 × sequential loop with the official razorpay SDK (issue 8's; above the rate bound, see findings)",
        "measured": f"{per_s:.1f} orders/s",
        "baseline": f"SDK sequential {sdk_rate} orders/s ({sdk['orders']} orders, extrapolated)",
        "ratio": round(vs_sdk, 2), "target": 10, "met": vs_sdk >= 10,
    }]
    if rechecks is not None:
        result["recheck"] = rechecks.summary(latency_ms, round_trips.summary() if round_trips is not None else None)
    return result
