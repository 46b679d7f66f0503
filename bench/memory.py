"""Benchmark 5: memory growth of the sweep.

Sweeping 1,000,000 orders through the gateway does not fit in the time budget (at the sweep's rate
limit it would take hours), so two measurements are combined, and each says what it measured:

- **Claim path, 1,000,000 orders, measured.** In the 1,000,000-order database of benchmark 4 every
  order is made due; a fresh process (``python -m bench.memory claim``, the code the scheduler runs:
  ``worker.services.sweep.sweep_due_orders`` with its real round budget) claims rounds until none
  is left. Its RSS is read after start-up, after the first round and at the end. Messages are not
  enqueued (1,000,000 messages would only measure Redis).
- **Check path, the sweep of benchmark 2, measured and extrapolated.** The RSS of each real
  ``dramatiq worker.main:start`` process at boot and then every second of the sweep, against the number
  of orders checked. Projection to 1,000,000 checks per process = growth from boot to mid-run +
  least-squares slope over the second half × the remaining checks; labelled as extrapolated.

- **Check path, 200,000 checks in one worker process, measured** (:func:`check_run`, issue 13 §3): a
  fresh worker process (the runtime ``dramatiq worker.main:start`` builds, a ``dramatiq.Worker`` with 16
  threads) checks 20,000 orders again and again against the simulator at zero latency; its RSS is read
  every 2 % of the run. Goal: growth after warm-up (the first 10 % of checks) ≤ 20 MB. The JSON result keeps
  ``samples`` = [(checks, rss_kb)] for the chart. With ``check_run`` results the extrapolated sweep figure
  above is data only, not a goal.

Goal (claim path): growth ≤ 50 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from bench import harness

MB = 1024


def claim_all(db_url: str, rate: int) -> dict:
    """Make every order due, then claim them all from a fresh process; returns that process's report."""
    engine = create_engine(db_url, pool_size=1)
    started = time.monotonic()
    with engine.begin() as connection:
        connection.execute(text("UPDATE orders SET next_check_at = now() - interval '1 minute', state = 'pending'"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE orders"))
    engine.dispose()
    prepare_s = time.monotonic() - started
    env = {**os.environ, "RECON_DATABASE_URL": db_url, "RECON_BROKER_URL": "stub://",
           "RECON_GATEWAY_RATE_PER_S": json.dumps({"razorpay": rate}), "RECON_LOG_LEVEL": "WARNING"}
    run = subprocess.run([sys.executable, "-m", "bench.memory", "claim"], cwd=harness.ROOT, env=env,
                         capture_output=True, text=True, check=True)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    report["prepare_s"] = round(prepare_s, 1)
    return report


def _claim_main() -> None:
    """In a fresh process: claim rounds until nothing is due; print RSS and timings as JSON."""
    from worker.deps import build_deps
    from worker.logging import configure_logging
    from worker.services.sweep import round_budget, sweep_due_orders
    from worker.settings import Settings

    settings = Settings()
    configure_logging(level=settings.log_level, json=True)
    deps = build_deps(settings)
    pid = os.getpid()
    rss_start = harness.rss_kb(pid)
    rounds, total, durations, rss_first = 0, 0, [], None
    started = time.monotonic()
    while True:
        t = time.perf_counter()
        claimed = sweep_due_orders(deps=deps)
        durations.append(time.perf_counter() - t)
        if not claimed:
            break
        rounds += 1
        total += len(claimed)
        if rss_first is None:
            rss_first = harness.rss_kb(pid)
        del claimed
    rss_end = harness.rss_kb(pid)
    print(json.dumps({
        "claimed": total, "rounds": rounds, "round_budget": round_budget(deps, "razorpay"),
        "seconds": round(time.monotonic() - started, 1),
        "round_ms_first10_median": round(sorted(durations[:10])[len(durations[:10]) // 2] * 1000, 1),
        "round_ms_last10_median": round(sorted(durations[-11:-1] or durations)[len(durations[-11:-1] or durations) // 2]
                                        * 1000, 1),
        "rss_kb": {"start": rss_start, "after_first_round": rss_first, "end": rss_end},
    }))


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs (0 with fewer than 3 points or no spread)."""
    if len(xs) < 3:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def summarise(claim: dict | None, sweep: dict | None, *, claim_expected: int,
              per_process_checks: int = 1_000_000, checks: dict | None = None, goal_checks: int = 200_000) -> dict:
    """The memory section: claim path; the measured check run (``checks``, from :func:`check_run`), which then
    is the check-path goal; the sweep's worker RSS (extrapolated) is kept as data, a goal only without it."""
    result: dict = {"claim_path": claim}
    run = checks  # the measured check run; ``checks`` below counts the sweep's checks
    goals = []
    if claim is not None:
        rss = claim["rss_kb"]
        growth = (rss["end"] - rss["start"]) / MB
        after_first = (rss["end"] - (rss["after_first_round"] or rss["start"])) / MB
        result["claim_path"]["growth_mb"] = round(growth, 1)
        goals.append({
            "benchmark": "5 memory: claim path (measured)",
            "goal": f"RSS growth ≤ 50 MB claiming {claim_expected:,} orders (scheduler code, fresh process)",
            "measured": f"{growth:+.1f} MB from start-up ({rss['start'] / MB:.0f} → {rss['end'] / MB:.0f} MB), "
                        f"{after_first:+.1f} MB after the first round; {claim['claimed']:,} claimed in "
                        f"{claim['rounds']} rounds",
            "baseline": f"RSS at start-up {rss['start'] / MB:.0f} MB",
            "ratio": round(growth / 50, 3), "target": "≤ 1.0",
            "met": claim["claimed"] >= claim_expected and growth <= 50,
        })
    if sweep is not None:
        rss = sweep["worker_rss_kb"]
        checks = sweep["checked"]
        processes = len(rss["end"])
        per_process = checks / max(1, processes)
        # Warm-up (imports, pools, caches) is what RSS gains over the first half of the run; the slope is a
        # least-squares fit of RSS against checks over the second half, where the curve has settled.
        later = [(c, r) for c, r in rss["samples"] if c >= 0.5 * checks and c > 0]
        rows, worst = [], 0.0
        for pid, end in rss["end"].items():
            boot = rss["boot"][pid]
            xs = [c / processes for c, _ in later]
            ys = [r[pid] for _, r in later]
            slope = _slope(xs, ys)
            warm_at, warm = (xs[0], ys[0]) if xs else (per_process, end)
            projected = (warm - boot) + slope * (per_process_checks - warm_at)
            rows.append({"pid": pid, "boot_mb": round(boot / MB, 1), "warm_mb": round(warm / MB, 1),
                         "end_mb": round(end / MB, 1), "measured_growth_mb": round((end - boot) / MB, 1),
                         "kb_per_check_after_warmup": round(slope, 4), "fit_points": len(xs),
                         "projected_growth_1m_checks_mb": round(projected / MB, 1)})
            worst = max(worst, projected / MB)
        result["check_path"] = {"checks": checks, "processes": processes, "per_process": rows}
        measured = max(r["measured_growth_mb"] for r in rows)
        goals.append({} if run is not None else {
            "benchmark": "5 memory: check path (extrapolated)",
            "goal": f"worker RSS growth ≤ 50 MB for 1,000,000 checks per process (extrapolated from {checks:,})",
            "measured": f"measured {measured:+.1f} MB boot → end over {per_process:,.0f} checks/process; "
                        f"projected {worst:+.1f} MB at 1,000,000 "
                        "(growth to mid-run + slope fitted over the second half × checks)",
            "baseline": "worker RSS at boot " + ", ".join(f"{r['boot_mb']:.0f} MB" for r in rows),
            "ratio": round(worst / 50, 3), "target": "≤ 1.0", "met": worst <= 50,
        })
    if run is not None and "error" in run:
        result["check_run"] = {"error": run["error"]}
        goals += run.get("goals", [])
    elif run is not None:
        result["check_run"] = run
        goals.append(summarise_checks(run, goal_checks=goal_checks))
    result["goals"] = [g for g in goals if g]
    return result


# -- the check path, measured: one worker process, N checks ------------------------------------------
GOAL_MB = 20


def check_run(*, checks: int, orders: int = 20_000, threads: int = 16, samples: int = 50, warmup: int | None = None,
              max_seconds: float = 1_800, logs=None) -> dict:
    """RSS of one worker process over ``checks`` order checks, measured (nothing extrapolated).

    The parent serves the simulator (zero latency) and a private Redis and database with ``orders`` open
    orders (the sweep's mix: 10 % captured, 30 % declined, 60 % no attempt), each checked again and again.
    The worker is a fresh process (``python -m bench.memory checks``) running what ``dramatiq
    worker.main:start`` runs: ``build_runtime(Settings())`` and a ``dramatiq.Worker`` with ``threads``
    threads consuming ``check_order`` from Redis; it enqueues its own messages in batches and reads its
    own RSS (``/proc/self/status``) after each batch. Warm-up = the first ``warmup`` checks (default 10 %).
    """
    from bench.sweep import _plan
    from simulator import SimulatorConfig, SimulatorServer

    warmup = warmup if warmup is not None else max(1, checks // 10)
    with (SimulatorServer(SimulatorConfig(seed=5, latency_ms=0)) as simulator, harness.scratch_db("memory") as db_url,
          harness.private_redis() as redis, harness.metrics_dir() as mdir):
        sim = simulator.sim
        engine = create_engine(db_url, pool_size=2)
        orgs = harness.seed_organisations(engine, 50)
        ids = [f"ord_mem{i:016x}" for i in range(orders)]
        mapping = harness.sim_orders(sim, ids)
        rows = []
        for i, order_id in enumerate(ids):
            plan = _plan(i)
            if plan != "none":
                sim.pay(mapping[order_id], plan, deliver_webhooks=False)
            org = orgs[i % len(orgs)]
            rows.append({"id": order_id, "organisation_id": org, "requested_by": f"{org}-admin",
                         "gateway_order_id": mapping[order_id], "state": "created" if plan == "none" else "pending",
                         "last_attempt_at": None if plan == "none" else harness.ago(30), "created_at": harness.ago(60)})
        harness.insert_orders(engine, rows)
        engine.dispose()
        env = harness.service_env(db_url, redis, simulator.base_url, sim.config, mdir,
                                  gateway_rate_per_s={"razorpay": 1_000_000, "payglocal": 20},
                                  abandon_after_s=str(30 * 86_400))
        argv = [sys.executable, "-m", "bench.memory", "checks", str(checks), str(orders), str(threads), str(samples),
                str(warmup), str(max_seconds)]
        log_path = Path(logs or tempfile.gettempdir()) / "memory-worker.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log_file:
            run = subprocess.run(argv, cwd=harness.ROOT, env=env, stdout=subprocess.PIPE, stderr=log_file, text=True,
                                 check=True, timeout=max_seconds + 300)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    report.update({"orders": orders, "threads": threads, "simulator_latency_ms": 0})
    return report


def _checks_main(checks: int, orders: int, threads: int, samples: int, warmup: int, max_seconds: float) -> None:
    """In a fresh process: the worker's runtime and a Dramatiq worker; ``checks`` checks; RSS as JSON."""
    import dramatiq

    from worker.main import build_runtime
    from worker.queues import SWEEP_QUEUE
    from worker.settings import Settings

    pid = os.getpid()
    runtime = build_runtime(Settings())
    runtime.broker.emit_after("process_boot")  # as the dramatiq CLI does: ConfigureLogging runs here
    worker = dramatiq.Worker(runtime.broker, worker_threads=threads)
    worker.start()
    ids = [f"ord_mem{i:016x}" for i in range(orders)]
    rss = [(0, harness.rss_kb(pid))]
    every = max(100, checks // samples)
    done, warm, started = 0, None, time.monotonic()
    cpu_start = harness.cpu_seconds(pid)
    while done < checks and time.monotonic() - started < max_seconds:
        batch = min(every, checks - done)
        for i in range(done, done + batch):
            runtime.actors.check_order.send(ids[i % orders])
        runtime.broker.join(SWEEP_QUEUE, timeout=int(max_seconds * 1000))
        worker.join()  # the messages in flight too
        done += batch
        rss.append((done, harness.rss_kb(pid)))
        if warm is None and done >= warmup:
            warm = rss[-1]
    elapsed = time.monotonic() - started
    cpu = harness.cpu_seconds(pid) - cpu_start
    worker.stop()
    warm = warm or rss[-1]
    print(json.dumps({"checks": done, "asked": checks, "finished": done >= checks, "seconds": round(elapsed, 1),
                      "checks_per_s": round(done / elapsed, 1) if elapsed else None,
                      "worker_cpu_ms_per_check": round(cpu * 1000 / max(1, done), 2),
                      "rss_kb": {"boot": rss[0][1], "warm": warm[1], "warm_at": warm[0], "end": rss[-1][1]},
                      "growth_mb": round((rss[-1][1] - warm[1]) / MB, 1), "samples": rss}))


def summarise_checks(run: dict, *, goal_checks: int = 200_000, label: str = "measured") -> dict:
    """The goal row of a :func:`check_run`: measured growth after warm-up ≤ 20 MB over ``goal_checks`` checks."""
    rss, growth = run["rss_kb"], run["growth_mb"]
    reached = run["checks"] >= goal_checks
    return {
        "benchmark": f"5 memory: check path ({label})",
        "goal": f"worker RSS growth ≤ {GOAL_MB} MB after warm-up over {goal_checks:,} checks in one process",
        "measured": f"{growth:+.1f} MB from {rss['warm_at']:,} to {run['checks']:,} checks "
                    f"({rss['warm'] / MB:.0f} → {rss['end'] / MB:.0f} MB; boot {rss['boot'] / MB:.0f} MB; "
                    f"{run['checks_per_s']} checks/s, {run['threads']} threads, {run['orders']:,} orders)"
                    + ("" if reached else f"; stopped before {goal_checks:,} checks"),
        "baseline": f"RSS after warm-up {rss['warm'] / MB:.0f} MB",
        "ratio": round(growth / GOAL_MB, 3), "target": "≤ 1.0", "met": reached and growth <= GOAL_MB,
    }


FULL_RUN = harness.RESULTS / "memory-checks-full.json"


def full_run(checks: int = 200_000, max_seconds: float = 3_600) -> dict:
    """``make bench-memory``: the check run to the goal's 200,000 checks (about 35 minutes on one core, more
    than ``make bench``'s 20-minute budget holds), kept in :data:`FULL_RUN` for ``make bench`` to report."""
    import datetime
    import subprocess as sp

    harness.log(f"memory: {checks:,} checks in one worker process (cap {max_seconds:.0f} s)")
    run = check_run(checks=checks, max_seconds=max_seconds, logs=harness.RESULTS / "logs")
    head = sp.run(["git", "rev-parse", "--short", "HEAD"], cwd=harness.ROOT, capture_output=True, text=True)
    run.update({"finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "git": head.stdout.strip()})
    FULL_RUN.write_text(json.dumps(run, indent=1))
    return run


def last_full_run() -> dict | None:
    """The last ``make bench-memory`` result, if one was kept."""
    return json.loads(FULL_RUN.read_text()) if FULL_RUN.exists() else None


def attach_full_run(results: dict) -> None:
    """Add the last ``make bench-memory`` run (its own row, labelled with when and on which commit it ran)."""
    full, section = last_full_run(), results["benchmarks"].get("memory")
    if full is None or not isinstance(section, dict):
        return
    section["full_run"] = full
    label = f"make bench-memory, {full.get('finished_at', '?')}, git {full.get('git', '?')}"
    section["goals"] = [g for g in section.get("goals", []) if "make bench-memory" not in g["benchmark"]]
    section["goals"].append(summarise_checks(full, label=label))


if __name__ == "__main__":
    if sys.argv[1:2] == ["full"]:
        result = full_run(*(int(a) for a in sys.argv[2:3]))
        print(json.dumps(summarise_checks(result), indent=1))
    elif sys.argv[1:] == ["claim"]:
        _claim_main()
    elif sys.argv[1:2] == ["checks"] and len(sys.argv) == 8:
        _checks_main(*(int(a) for a in sys.argv[2:7]), float(sys.argv[7]))
    else:
        raise SystemExit("usage: python -m bench.memory full [CHECKS]   (make bench-memory)\n"
                         "       python -m bench.memory claim | checks N ORDERS THREADS SAMPLES WARMUP MAX_S"
                         "   (run by `python -m bench`)")
