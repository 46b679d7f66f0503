"""Benchmark 1: callback throughput. Signed webhooks over HTTP → verified → stored → worker → credited.

Production layout: ``recon web`` and ``dramatiq worker.main:start`` as subprocesses on a scratch Postgres
database and a private Redis. Orders are pre-created with SQL (state ``created``, each with its order
in the simulator); the simulator takes every payment (auto-capture) **without** delivering its
webhooks, and this module sends the exact bytes and signed headers it generated (payment.authorized,
payment.captured, order.paid per order, in that order) from N concurrent httpx clients.

Measured: credited orders per second (first webhook sent → last ledger row) and, per order, the time
from the inbox row's ``received_at`` of its first capture-carrying event (``payment.captured`` or
``order.paid``) to the ledger row's ``created_at``. ``created_at`` is stamped when the worker starts
the crediting transaction, a few milliseconds before its commit.

Baseline, same run, same machine, same Postgres server: ``pgbench`` TPC-B (``-i -s 10`` into a scratch
database, then ``-c N -j 2 -T 20``) with the same client count N. Goal: credited/s ≥ 0.5 × pgbench tps.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from bench import harness
from bench.harness import log


def pgbench(clients: int, seconds: int, scale: int = 10) -> dict:
    """TPC-B on the same Postgres server, in a scratch database of its own."""
    exe = shutil.which("pgbench")
    if exe is None:
        raise RuntimeError("pgbench is not installed (Debian: postgresql-client)")
    with harness.scratch_db("pgbench", migrate=False) as url:
        name = harness.db_name(url)
        common = ["-h", "127.0.0.1", "-U", "postgres"]
        started = time.monotonic()
        subprocess.run([exe, *common, "-i", "-s", str(scale), "-q", name], check=True, capture_output=True)
        init_s = time.monotonic() - started
        run = subprocess.run([exe, *common, "-c", str(clients), "-j", "2", "-T", str(seconds), name], check=True,
                             capture_output=True, text=True)
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", run.stdout)
    latency = re.search(r"latency average = ([0-9.]+) ms", run.stdout)
    return {"tps": float(tps.group(1)), "latency_avg_ms": float(latency.group(1)) if latency else None,
            "clients": clients, "threads": 2, "seconds": seconds, "scale": scale, "init_s": round(init_s, 1)}


async def _send_all(url: str, batches: list[list[tuple[bytes, dict]]], clients: int,
                    seconds: float | None = None) -> dict:
    """N senders, each with its own httpx client; each takes the next order and posts its events in order.
    With ``seconds``, senders take no new order after that long."""
    stop_at = time.monotonic() + seconds if seconds else float("inf")
    orders_sent = 0
    queue: asyncio.Queue = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    statuses: dict[int, int] = defaultdict(int)
    latencies: list[float] = []

    async def sender() -> None:
        nonlocal orders_sent
        async with httpx.AsyncClient(timeout=30) as client:
            while time.monotonic() < stop_at:
                try:
                    batch = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                orders_sent += 1
                for body, headers in batch:
                    started = time.perf_counter()
                    response = await client.post(url, content=body, headers=headers)
                    latencies.append(time.perf_counter() - started)
                    statuses[response.status_code] += 1

    await asyncio.gather(*(sender() for _ in range(clients)))
    return {"orders_sent": orders_sent, "statuses": dict(statuses),
            "http_p50_ms": _ms(harness.percentile(latencies, 50)),
            "http_p99_ms": _ms(harness.percentile(latencies, 99))}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def run(*, clients: int, orders: int, seconds: float, pgbench_seconds: int, worker_processes: int,
        worker_threads: int, logs: Path, profile: bool = False) -> dict:
    from simulator import Simulator, SimulatorConfig

    log(f"callbacks: pgbench baseline (-c {clients} -j 2 -T {pgbench_seconds})")
    baseline = pgbench(clients, pgbench_seconds)
    log(f"callbacks: pgbench {baseline['tps']:.0f} tps")

    sim = Simulator(SimulatorConfig(seed=1))
    result: dict = {"baseline": {"pgbench": baseline}}
    with harness.scratch_db("callbacks") as db_url, harness.private_redis() as redis, harness.metrics_dir() as mdir:
        engine = create_engine(db_url, pool_size=4)
        orgs = harness.seed_organisations(engine, 100)
        ids = [f"ord_cb{i:016x}" for i in range(orders)]
        mapping = harness.sim_orders(sim, ids)
        harness.insert_orders(engine, [{"id": oid, "organisation_id": orgs[i % len(orgs)],
                                        "requested_by": f"{orgs[i % len(orgs)]}-admin",
                                        "gateway_order_id": mapping[oid],
                                        "next_check_at": harness.ago(-3600)}
                                       for i, oid in enumerate(ids)])
        for oid in ids:
            sim.pay(mapping[oid], "success", deliver_webhooks=False)
        by_order: dict[str, list[tuple[bytes, dict]]] = defaultdict(list)
        for event in sim.webhook_events():
            gateway_order = json.loads(event.body)["payload"]["payment"]["entity"]["order_id"]
            by_order[gateway_order].append((event.body, dict(event.headers)))
        batches = [by_order[mapping[oid]] for oid in ids]
        webhooks = sum(len(b) for b in batches)
        env = harness.service_env(db_url, redis, "http://127.0.0.1:9", sim.config, mdir)
        with harness.services(env, logs / "callbacks") as procs:
            web = procs.start_web()
            procs.start_worker(worker_processes, worker_threads)
            watched = [procs.processes["web"].pid, *procs.worker_pids()]
            cpu_before = {pid: harness.cpu_seconds(pid) for pid in watched}
            spies = [_start_py_spy(procs.processes["worker"].pid, logs / "callbacks-worker.py-spy.txt",
                                   subprocesses=True),
                     _start_py_spy(procs.processes["web"].pid, logs / "callbacks-web.py-spy.txt")] if profile else []
            log(f"callbacks: sending the webhooks of up to {orders} orders ({webhooks}) for at most {seconds:g} s "
                f"from {clients} concurrent clients")
            started_wall = harness.utcnow()
            started = time.monotonic()
            sent = asyncio.run(_send_all(f"{web}/webhooks/razorpay", batches, clients, seconds))
            send_s = time.monotonic() - started
            orders = sent["orders_sent"]
            webhooks = sum(len(b) for b in batches[:orders])
            deadline = time.monotonic() + min(180, max(60, send_s * 3))
            with engine.connect() as connection:
                while time.monotonic() < deadline:
                    credited = connection.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one()
                    connection.commit()
                    if credited >= orders:
                        break
                    time.sleep(0.25)
            drain_s = time.monotonic() - started
            cpu = {pid: round(harness.cpu_seconds(pid) - cpu_before[pid], 1) for pid in watched}
            for spy in spies:
                _stop_py_spy(spy)
        with engine.connect() as connection:
            rows = connection.execute(text("""
                SELECT l.created_at, min(i.received_at) AS received
                FROM ledger_entries l JOIN inbox_events i
                  ON i.order_id = l.order_id AND i.event_type IN ('payment.captured', 'order.paid')
                GROUP BY l.order_id, l.created_at""")).all()
            first_received = connection.execute(text("SELECT min(received_at) FROM inbox_events")).scalar_one()
            last_credit = connection.execute(text("SELECT max(created_at) FROM ledger_entries")).scalar_one()
            inbox = dict(connection.execute(text("SELECT status, count(*) FROM inbox_events GROUP BY status")).all())
            balance = connection.execute(text("SELECT sum(credit_balance) FROM organisations")).scalar_one()
        engine.dispose()
    sim.close()
    credited = len(rows)
    window_s = (last_credit - first_received).total_seconds() if credited else None
    per_s = credited / window_s if window_s else 0.0
    waits = [(r.created_at - r.received).total_seconds() for r in rows]
    result.update({
        "orders": orders, "webhooks": webhooks, "clients": clients, "credited": credited,
        "credited_exactly_once": credited == orders and balance == orders * harness.CREDITS,
        "worker": {"processes": worker_processes, "threads": worker_threads},
        "credited_per_s": round(per_s, 1), "webhooks_per_s": round(webhooks / send_s, 1),
        "window_s": round(window_s or 0, 2), "send_s": round(send_s, 2), "drain_s": round(drain_s, 2),
        "received_to_credited_p50_ms": _ms(harness.percentile(waits, 50)),
        "received_to_credited_p99_ms": _ms(harness.percentile(waits, 99)),
        "http": sent, "inbox": inbox, "cpu_s": {"web": cpu.pop(watched[0]), "workers": round(sum(cpu.values()), 1)},
        "started_at": started_wall.isoformat(timespec="seconds"),
    })
    ratio = per_s / baseline["tps"] if baseline["tps"] else 0.0
    result["goals"] = [{
        "benchmark": "1 callback throughput",
        "goal": "credited/s ≥ 0.5 × pgbench TPC-B tps (same N clients)",
        "measured": f"{per_s:.1f} credited/s (p50 {result['received_to_credited_p50_ms']} ms, "
                    f"p99 {result['received_to_credited_p99_ms']} ms)",
        "baseline": f"pgbench {baseline['tps']:.0f} tps (-c {clients})",
        "ratio": round(ratio, 3), "target": 0.5, "met": ratio >= 0.5 and result["credited_exactly_once"],
    }]
    return result


def _start_py_spy(pid: int, out: Path, seconds: int = 20, subprocesses: bool = False) -> subprocess.Popen | None:
    exe = shutil.which("py-spy") or str(harness.BIN / "py-spy")
    if not Path(exe).exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100",
                             "--format", "raw", "--output", str(out), "--nonblocking", "--gil",
                             *(["--subprocesses"] if subprocesses else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_py_spy(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        harness.stop(process)
