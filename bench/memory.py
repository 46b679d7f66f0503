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

Goal: growth ≤ 50 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

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
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0


def summarise(claim: dict | None, sweep: dict | None, *, claim_expected: int,
              per_process_checks: int = 1_000_000) -> dict:
    result: dict = {"claim_path": claim}
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
            "ratio": round(growth / 50, 3), "target": "≤ 1.0", "met": claim["claimed"] >= claim_expected and growth <= 50,
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
        goals.append({
            "benchmark": "5 memory: check path (extrapolated)",
            "goal": f"worker RSS growth ≤ 50 MB for 1,000,000 checks per process (extrapolated from {checks:,})",
            "measured": f"measured {measured:+.1f} MB boot → end over {per_process:,.0f} checks/process; "
                        f"projected {worst:+.1f} MB at 1,000,000 (growth to mid-run + slope fitted over the second half × checks)",
            "baseline": "worker RSS at boot " + ", ".join(f"{r['boot_mb']:.0f} MB" for r in rows),
            "ratio": round(worst / 50, 3), "target": "≤ 1.0", "met": worst <= 50,
        })
    result["goals"] = goals
    return result


if __name__ == "__main__":
    if sys.argv[1:] == ["claim"]:
        _claim_main()
    else:
        raise SystemExit("usage: python -m bench.memory claim   (run by `python -m bench`)")
