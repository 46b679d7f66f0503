"""Benchmark 1: the webhook → credit path, the service against its floor, in the same run.

Both systems get the same orders (1,000 credits, India, each with its gateway order in the simulator,
which takes the payment without delivering webhooks), the same 3 webhooks per order
(payment.authorized, payment.captured, order.paid: exactly the bytes and signed headers the
simulator generated), the same 8 senders (``bench/loadgen.py``) and the same Postgres server, each
in a scratch database of its own; Redis is the run's private ``redis-server``.

- **service**: ``recon web [--workers W]`` + ``dramatiq worker.main:start --processes 2 --threads 8``
  on a migrated database (the Procfile's processes);
- **floor**: ``bench/floor.py`` under uvicorn with the same number of web processes + two
  ``python -m bench.floor_worker`` processes on the floor's minimal schema.

Phases, one system at a time (the other's processes are not running), after a warm-up of ``WARM_UP_S``
unmeasured (as fast as they go: pools filled, Postgres backends' caches and Python's lazy imports warm; a
cold start cost the service a quarter of its sustained rate):

1. sustained: senders as fast as the answers come for ``seconds``, then the backlog drains;
   credited/s = orders credited / (first webhook received → last ledger row); CPU seconds of the web
   and worker process trees (utime + stime from /proc, before → after, drain included) per credited order;
2. open loop at a fixed offered load of half the service's sustained rate (both systems) for ``fixed_seconds``
   (longer than the others: its p99, the goal, is then over a thousand orders or more):
   received → credited p50/p99, where received is the inbox row's ``received_at`` of the order's
   first capture-carrying event and credited the ledger row's ``created_at``;
3. the chart's points: open loop at fractions of each system's own sustained rate.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import create_engine, text

from bench import floor, harness, loadgen
from bench.harness import log

#: Seconds each system runs at full speed, unmeasured, before its sustained phase.
WARM_UP_S = 5.0

WEBHOOK_PATH = "/webhooks/razorpay"
ORGANISATIONS = 100


class Orders:
    """Orders and their webhooks from one simulator; every call gives new orders."""

    def __init__(self) -> None:
        from simulator import Simulator, SimulatorConfig

        self.sim = Simulator(SimulatorConfig(seed=1))
        self.made = 0
        self.events_seen = 0

    @property
    def webhook_secret(self) -> str:
        return self.sim.config.webhook_secret

    def make(self, count: int, tag: str) -> list[dict]:
        ids = [f"ord_{tag}{self.made + i:012x}" for i in range(count)]
        self.made += count
        mapping = harness.sim_orders(self.sim, ids)
        for oid in ids:
            self.sim.pay(mapping[oid], "success", deliver_webhooks=False)
        events = self.sim.webhook_events()
        fresh, self.events_seen = events[self.events_seen:], len(events)
        by_order: dict[str, list[tuple[bytes, dict]]] = defaultdict(list)
        for event in fresh:
            gateway_order = json.loads(event.body)["payload"]["payment"]["entity"]["order_id"]
            by_order[gateway_order].append((event.body, dict(event.headers)))
        return [{"id": oid, "gateway_order_id": mapping[oid], "webhooks": by_order[mapping[oid]]} for oid in ids]

    def close(self) -> None:
        self.sim.close()


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of these processes and all their descendants."""
    every = set(pids)
    for pid in pids:
        every |= harness.descendants(pid)
    return sum(harness.cpu_seconds(pid) for pid in every)


def stamp_sql(inbox: str, ledger: str) -> str:
    """Triggers that stamp, with Postgres's wall clock at the statement (``clock_timestamp()``, not the
    transaction's start that ``now()`` and our own ``received_at``/``created_at`` give), when each inbox row is
    inserted and each order's ledger row is written: the same measure of received → credited for both
    systems, and not flattered by a transaction that began before the webhook it credits arrived (a
    worker's transaction for payment.authorized gathering the payment.captured stored meanwhile)."""
    return f"""
CREATE UNLOGGED TABLE bench_stamps (kind text NOT NULL, key text NOT NULL, at timestamptz NOT NULL);
CREATE FUNCTION bench_received() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO bench_stamps VALUES ('received', NEW.id::text, clock_timestamp()); RETURN NULL; END $$;
CREATE FUNCTION bench_credited() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO bench_stamps VALUES ('credited', NEW.order_id, clock_timestamp()); RETURN NULL; END $$;
CREATE TRIGGER bench_received AFTER INSERT ON {inbox} FOR EACH ROW EXECUTE FUNCTION bench_received();
CREATE TRIGGER bench_credited AFTER INSERT ON {ledger} FOR EACH ROW EXECUTE FUNCTION bench_credited();
CREATE INDEX ON bench_stamps (kind, key);
"""


class Service:
    name = "service"
    guess_max_per_s = 300  # orders made for a sustained phase: this × seconds

    def __init__(self, stack, orders: Orders, logs: Path, *, web_workers: int, worker_processes: int,
                 worker_threads: int) -> None:
        self.stack, self.orders, self.logs = stack, orders, logs
        self.web_workers, self.worker_processes, self.worker_threads = web_workers, worker_processes, worker_threads
        self.layout = (f"`recon web --workers {web_workers}` + `dramatiq worker.main:start --processes "
                       f"{worker_processes} --threads {worker_threads}`")

    def __enter__(self) -> Service:
        self.db_url = self.stack.enter_context(harness.scratch_db("callbacks"))
        self.redis = self.stack.enter_context(harness.private_redis())
        mdir = self.stack.enter_context(harness.metrics_dir())
        self.engine = create_engine(self.db_url, pool_size=2)
        with psycopg.connect(floor.conninfo(self.db_url), autocommit=True) as c:
            c.execute(stamp_sql("inbox_events", "ledger_entries"))
        self.orgs = harness.seed_organisations(self.engine, ORGANISATIONS)
        env = harness.service_env(self.db_url, self.redis, "http://127.0.0.1:9", self.orders.sim.config, mdir)
        self.procs = self.stack.enter_context(harness.services(env, self.logs))
        self.url = self.procs.start_web(workers=self.web_workers) + WEBHOOK_PATH
        self.procs.start_worker(self.worker_processes, self.worker_threads)
        self.web_pids = [self.procs.processes["web"].pid]
        self.worker_pids = [self.procs.processes["worker"].pid]
        return self

    def stop(self) -> None:
        self.procs.stop()
        self.engine.dispose()

    def add(self, orders: list[dict]) -> None:
        harness.insert_orders(self.engine, [{"id": o["id"], "organisation_id": self.orgs[i % len(self.orgs)],
                                             "requested_by": f"{self.orgs[i % len(self.orgs)]}-admin",
                                             "gateway_order_id": o["gateway_order_id"],
                                             "next_check_at": harness.ago(-3600)} for i, o in enumerate(orders)])

    def progress(self, ids: list[str]) -> tuple[int, int]:
        """(credited among ``ids``, inbox rows still pending anywhere)."""
        with self.engine.connect() as c:
            credited = c.execute(text("SELECT count(*) FROM ledger_entries WHERE order_id = ANY(:ids)"),
                                 {"ids": ids}).scalar_one()
            pending = c.execute(text("SELECT count(*) FROM inbox_events WHERE status = 'pending'")).scalar_one()
        return credited, pending

    def measure(self, ids: list[str]) -> dict:
        with self.engine.connect() as c:
            rows = c.execute(text("""
                SELECT cs.at AS created_at, min(rs.at) AS received
                FROM ledger_entries l JOIN bench_stamps cs ON cs.kind = 'credited' AND cs.key = l.order_id
                  JOIN inbox_events i ON i.order_id = l.order_id AND i.event_type IN ('payment.captured', 'order.paid')
                  JOIN bench_stamps rs ON rs.kind = 'received' AND rs.key = i.id::text
                WHERE l.order_id = ANY(:ids) GROUP BY l.order_id, cs.at"""), {"ids": ids}).all()
            first = c.execute(text("""
                SELECT min(rs.at) FROM inbox_events i JOIN bench_stamps rs ON rs.kind = 'received'
                  AND rs.key = i.id::text WHERE i.order_id = ANY(:ids)"""), {"ids": ids}).scalar_one()
        return _summary([(r.created_at - r.received).total_seconds() for r in rows], first,
                        max((r.created_at for r in rows), default=None))

    def totals(self) -> tuple[int, int]:
        with self.engine.connect() as c:
            return (c.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one(),
                    c.execute(text("SELECT coalesce(sum(credit_balance), 0) FROM organisations")).scalar_one())

    def messages(self) -> dict[str, float]:
        """The web's count of webhook messages so far, sent and coalesced (``recon_inbox_messages_total``)."""
        from prometheus_client.parser import text_string_to_metric_families

        body = httpx.get(self.url.removesuffix(WEBHOOK_PATH) + "/metrics", timeout=10).text
        counts = {"sent": 0.0, "coalesced": 0.0}
        for family in text_string_to_metric_families(body):
            if family.name == "recon_inbox_messages":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        counts[sample.labels["outcome"]] += sample.value
        return counts


class Floor:
    name = "floor"
    guess_max_per_s = 700

    def __init__(self, stack, orders: Orders, logs: Path, *, web_workers: int, redis) -> None:
        self.stack, self.orders, self.logs, self.redis = stack, orders, logs, redis
        self.web_workers = web_workers
        self.threads = int(os.environ.get("FLOOR_WORKER_THREADS", "2"))
        self.layout = (f"`uvicorn bench.floor:app --workers {web_workers}` + 2 × `python -m bench.floor_worker` "
                       f"({self.threads} consumer threads, one connection each)")
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> Floor:
        self.db_url = self.stack.enter_context(harness.scratch_db("floor", migrate=False))
        floor.create_schema(self.db_url)
        with psycopg.connect(floor.conninfo(self.db_url), autocommit=True) as c:
            c.execute(stamp_sql("inbox", "ledger"))
        self.orgs = [f"bench-org-{i:04d}" for i in range(ORGANISATIONS)]
        floor.seed(self.db_url, self.orgs, [])
        self.conn = psycopg.connect(floor.conninfo(self.db_url), autocommit=True)
        env = {**os.environ, "FLOOR_DATABASE_URL": self.db_url, "FLOOR_REDIS_URL": self.redis.url,
               "FLOOR_QUEUE": f"{self.redis.namespace}:floor", "FLOOR_WEBHOOK_SECRET": self.orders.webhook_secret,
               "FLOOR_WORKER_THREADS": str(self.threads), "PYTHONUNBUFFERED": "1"}
        port = harness.free_port()
        self.logs.mkdir(parents=True, exist_ok=True)
        web = self._start("floor-web", [str(harness.BIN / "python"), "-m", "uvicorn", "bench.floor:app", "--host",
                                        "127.0.0.1", "--port", str(port), "--workers", str(self.web_workers),
                                        "--log-level", "warning", "--no-access-log"], env)
        workers = [self._start(f"floor-worker-{i}", [str(harness.BIN / "python"), "-m", "bench.floor_worker"], env)
                   for i in range(2)]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            for p in [web, *workers]:
                if p.poll() is not None:
                    raise RuntimeError(f"a floor process exited with {p.returncode}; see {self.logs}")
            if time.monotonic() > deadline:
                raise RuntimeError("the floor's web did not start")
            time.sleep(0.1)
        while not all("ready" in (self.logs / f"floor-worker-{i}.log").read_text() for i in range(2)):
            time.sleep(0.1)
        self.url = base + WEBHOOK_PATH
        self.web_pids, self.worker_pids = [web.pid], [w.pid for w in workers]
        return self

    def _start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "ab") as handle:
            process = subprocess.Popen(argv, cwd=harness.ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            harness.stop(process)
        self.processes.clear()
        self.conn.close()

    def add(self, orders: list[dict]) -> None:
        floor.seed(self.db_url, [], [(o["id"], o["gateway_order_id"], self.orgs[i % len(self.orgs)], harness.CREDITS,
                                      harness.AMOUNT, "INR") for i, o in enumerate(orders)])

    def progress(self, ids: list[str]) -> tuple[int, int]:
        credited = self.conn.execute("SELECT count(*) FROM ledger WHERE order_id = ANY(%s)", (ids,)).fetchone()[0]
        pending = self.conn.execute("SELECT count(*) FROM inbox WHERE processed_at IS NULL").fetchone()[0]
        return credited, pending

    def measure(self, ids: list[str]) -> dict:
        rows = self.conn.execute("""
            SELECT cs.at, min(rs.at)
            FROM ledger l JOIN bench_stamps cs ON cs.kind = 'credited' AND cs.key = l.order_id
              JOIN orders o ON o.id = l.order_id
              JOIN inbox i ON i.gateway_order_id = o.gateway_order_id
                AND i.event_type IN ('payment.captured', 'order.paid')
              JOIN bench_stamps rs ON rs.kind = 'received' AND rs.key = i.id::text
            WHERE l.order_id = ANY(%s) GROUP BY l.order_id, cs.at""", (ids,)).fetchall()
        first = self.conn.execute("SELECT min(rs.at) FROM inbox i JOIN orders o "
                                  "ON o.gateway_order_id = i.gateway_order_id JOIN bench_stamps rs "
                                  "ON rs.kind = 'received' AND rs.key = i.id::text WHERE o.id = ANY(%s)",
                                  (ids,)).fetchone()[0]
        return _summary([(c - r).total_seconds() for c, r in rows], first, max((c for c, _ in rows), default=None))

    def totals(self) -> tuple[int, int]:
        return (self.conn.execute("SELECT count(*) FROM ledger").fetchone()[0],
                self.conn.execute("SELECT coalesce(sum(credit_balance), 0) FROM organisations").fetchone()[0])


def _summary(waits: list[float], first_received, last_credit) -> dict:
    window = (last_credit - first_received).total_seconds() if waits and first_received and last_credit else None
    return {"credited": len(waits), "window_s": round(window or 0, 2),
            "credited_per_s": round(len(waits) / window, 1) if window else 0.0,
            "received_to_credited_p50_ms": _ms(harness.percentile(waits, 50)),
            "received_to_credited_p99_ms": _ms(harness.percentile(waits, 99))}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def phase(system, orders: Orders, *, clients: int, seconds: float, rate: float | None, label: str) -> dict:
    """One phase: new orders, send, wait until credited and the inbox is empty, measure."""
    count = int(rate * seconds) + 1 if rate else int(system.guess_max_per_s * seconds)
    made = orders.make(count, system.name[0])
    system.add(made)
    requests = loadgen.build_requests(system.url, [o["webhooks"] for o in made])
    messages_before = system.messages() if hasattr(system, "messages") else None
    web_before, workers_before = tree_cpu(system.web_pids), tree_cpu(system.worker_pids)
    how = f"open loop at {rate:.1f} orders/s" if rate else "closed loop (as fast as they go)"
    log(f"callbacks: {system.name} {label}: {clients} senders, {how}, {seconds:g} s")
    sent = loadgen.send(system.url, requests, clients=clients, seconds=seconds, rate=rate)
    ids = [o["id"] for o in made[:sent["orders_sent"]]]
    deadline = time.monotonic() + min(180, max(30, sent["send_s"] * 3))
    credited = pending = 0
    while time.monotonic() < deadline:
        credited, pending = system.progress(ids)
        if credited >= len(ids) and pending == 0:
            break
        time.sleep(0.1)
    cpu = {"web": tree_cpu(system.web_pids) - web_before, "workers": tree_cpu(system.worker_pids) - workers_before}
    result = {"label": label, "seconds": seconds, "offered_per_s": rate, "orders": len(ids),
              "webhooks": 3 * len(ids), "http": sent,
              "drained": credited >= len(ids) and pending == 0, "orders_made_exhausted": len(ids) == len(made),
              **system.measure(ids)}
    n = max(1, result["credited"])
    if messages_before is not None:  # the floor sends one per webhook, by construction
        after = system.messages()
        result["messages_per_order"] = round((after["sent"] - messages_before["sent"]) / max(1, len(ids)), 2)
    result["cpu_s"] = {k: round(v, 2) for k, v in cpu.items()}
    result["cpu_ms_per_credited"] = {"web": round(cpu["web"] / n * 1000, 2),
                                     "workers": round(cpu["workers"] / n * 1000, 2),
                                     "total": round((cpu["web"] + cpu["workers"]) / n * 1000, 2)}
    log(f"callbacks: {system.name} {label}: {result['credited']}/{len(ids)} credited, {result['credited_per_s']}/s, "
        f"p50 {result['received_to_credited_p50_ms']} ms, p99 {result['received_to_credited_p99_ms']} ms, "
        f"CPU {result['cpu_ms_per_credited']['total']} ms/order (web {result['cpu_ms_per_credited']['web']}, "
        f"workers {result['cpu_ms_per_credited']['workers']})")
    return result


def run(*, clients: int, seconds: float, point_seconds: float, fixed_seconds: float, fractions: tuple[float, ...],
        web_workers: int, worker_processes: int, worker_threads: int, logs: Path, pgbench_seconds: int = 0,
        profile: bool = False, profile_seconds: float = 0) -> dict:
    """``profile``: py-spy on the service during its sustained phase; ``profile_seconds``: a further sustained
    phase of the service that long with py-spy attached (``--gil``), whose stacks say where its CPU goes."""
    result: dict = {"clients": clients, "web_workers": web_workers,
                    "worker": {"processes": worker_processes, "threads": worker_threads}, "baseline": {}}
    if pgbench_seconds:
        from bench.callbacks import pgbench

        log(f"callbacks: pgbench TPC-B for reference (-c {clients} -j 2 -T {pgbench_seconds})")
        result["baseline"]["pgbench"] = pgbench(clients, pgbench_seconds)
    orders = Orders()
    systems: dict[str, dict] = {}
    warm_up_s = min(WARM_UP_S, seconds)
    try:
        with contextlib.ExitStack() as stack:
            service = Service(stack, orders, logs / "callbacks", web_workers=web_workers,
                              worker_processes=worker_processes, worker_threads=worker_threads).__enter__()
            s = systems["service"] = {"layout": service.layout, "phases": []}
            s["warm_up"] = phase(service, orders, clients=clients, seconds=warm_up_s, rate=None, label="warm-up")
            spies = []
            if profile:  # py-spy stacks of the service during its sustained phase
                from bench.callbacks import _start_py_spy, _stop_py_spy

                spies = [_start_py_spy(service.worker_pids[0], logs / "callbacks-worker.py-spy.txt", subprocesses=True),
                         _start_py_spy(service.web_pids[0], logs / "callbacks-web.py-spy.txt", subprocesses=True)]
            s["sustained"] = phase(service, orders, clients=clients, seconds=seconds, rate=None, label="sustained")
            for spy in spies:
                _stop_py_spy(spy)
            fixed = round(0.5 * s["sustained"]["credited_per_s"], 1)
            result["fixed_load_per_s"] = fixed
            s["fixed"] = phase(service, orders, clients=clients, seconds=fixed_seconds, rate=fixed,
                               label="fixed load (½ service)")
            for f in fractions:
                if f != 0.5:
                    s["phases"].append(phase(service, orders, clients=clients, seconds=point_seconds,
                                             rate=round(f * s["sustained"]["credited_per_s"], 1), label=f"{f:.0%}"))
            if profile_seconds:
                s["profile"] = _profiled_phase(service, orders, clients=clients, seconds=profile_seconds, logs=logs)
                s["phases"].append(s["profile"].pop("phase"))
            s["totals"] = service.totals()
            service.stop()
            redis = service.redis
            fl = Floor(stack, orders, logs / "callbacks", web_workers=web_workers, redis=redis).__enter__()
            f_ = systems["floor"] = {"layout": fl.layout, "phases": []}
            f_["warm_up"] = phase(fl, orders, clients=clients, seconds=warm_up_s, rate=None, label="warm-up")
            f_["sustained"] = phase(fl, orders, clients=clients, seconds=seconds, rate=None, label="sustained")
            f_["fixed"] = phase(fl, orders, clients=clients, seconds=fixed_seconds, rate=fixed,
                                label="fixed load (½ service)")
            for f in fractions:
                f_["phases"].append(phase(fl, orders, clients=clients, seconds=point_seconds,
                                          rate=round(f * f_["sustained"]["credited_per_s"], 1), label=f"{f:.0%}"))
            f_["totals"] = fl.totals()
            fl.stop()
    finally:
        orders.close()
    for sysres in systems.values():
        credited, balance = sysres.pop("totals")
        measured = [sysres["warm_up"], sysres["sustained"], sysres["fixed"], *sysres["phases"]]
        expected = sum(p["orders"] for p in measured)
        sysres["credited_exactly_once"] = credited == expected and balance == credited * harness.CREDITS
        sysres["curve"] = sorted(
            [{"offered_per_s": p["offered_per_s"], "credited_per_s": p["credited_per_s"],
              "p99_ms": p["received_to_credited_p99_ms"], "p50_ms": p["received_to_credited_p50_ms"]}
             for p in [sysres["fixed"], *sysres["phases"]] if p["offered_per_s"]]
            + [{"offered_per_s": None, "credited_per_s": sysres["sustained"]["credited_per_s"],
                "p99_ms": sysres["sustained"]["received_to_credited_p99_ms"],
                "p50_ms": sysres["sustained"]["received_to_credited_p50_ms"], "saturated": True}],
            key=lambda c: c["offered_per_s"] if c["offered_per_s"] is not None else float("inf"))
    result.update(systems)
    result["goals"] = goals(result)
    return result


def _profiled_phase(service: Service, orders: Orders, *, clients: int, seconds: float, logs: Path) -> dict:
    """A sustained phase with py-spy sampling the web and worker process trees (only the thread holding the GIL:
    Python's CPU, not its waits), and the samples' shares by library and by step (``bench/spy_layers.py``)."""
    from bench import spy_layers
    from bench.callbacks import _start_py_spy, _stop_py_spy

    out = {"web": logs / "callbacks-web.py-spy.txt", "workers": logs / "callbacks-workers.py-spy.txt"}
    spies = [_start_py_spy(service.web_pids[0], out["web"], seconds=int(seconds) + 2, subprocesses=True),
             _start_py_spy(service.worker_pids[0], out["workers"], seconds=int(seconds) + 2, subprocesses=True)]
    phase_result = phase(service, orders, clients=clients, seconds=seconds, rate=None, label="sustained, py-spy on")
    for spy in spies:
        _stop_py_spy(spy)
    if None in spies:
        return {"phase": phase_result, "error": "py-spy not installed"}
    return {"phase": phase_result, "cpu_ms_per_credited": phase_result["cpu_ms_per_credited"],
            **{name: spy_layers.shares(path) for name, path in out.items()}}


def goals(r: dict) -> list[dict]:
    s, f = r["service"], r["floor"]
    ss, fs = s["sustained"], f["sustained"]
    ok = s["credited_exactly_once"] and f["credited_exactly_once"]
    cpu_ratio = ss["cpu_ms_per_credited"]["total"] / fs["cpu_ms_per_credited"]["total"]
    rate_ratio = ss["credited_per_s"] / fs["credited_per_s"] if fs["credited_per_s"] else 0.0
    sp99, fp99 = s["fixed"]["received_to_credited_p99_ms"], f["fixed"]["received_to_credited_p99_ms"]
    p99_ratio = sp99 / fp99 if sp99 is not None and fp99 else None
    layout = f"{r['web_workers']} web process{'es' if r['web_workers'] > 1 else ''}"

    def cpu(x: dict) -> str:
        c = x["cpu_ms_per_credited"]
        return f"{c['total']} ms (web {c['web']} + workers {c['workers']})"

    return [
        {"benchmark": "1 webhook → credit: CPU", "goal": "CPU per credited order (web + workers) ≤ 2 × floor's",
         "measured": f"service {cpu(ss)} per order at {ss['credited_per_s']}/s",
         "baseline": f"floor {cpu(fs)} per order at {fs['credited_per_s']}/s",
         "ratio": round(cpu_ratio, 2), "target": "≤ 2", "met": cpu_ratio <= 2 and ok},
        {"benchmark": "1 webhook → credit: throughput",
         "goal": f"sustained credited orders/s ≥ 0.5 × floor's ({r['clients']} senders, {layout})",
         "measured": f"service {ss['credited_per_s']} credited/s ({ss['credited']:,} orders"
                     f"{'' if s['credited_exactly_once'] else ', NOT exactly once'})",
         "baseline": f"floor {fs['credited_per_s']} credited/s ({fs['credited']:,} orders)",
         "ratio": round(rate_ratio, 3), "target": "≥ 0.5", "met": rate_ratio >= 0.5 and ok},
        {"benchmark": "1 webhook → credit: latency",
         "goal": f"received → credited p99 at {r['fixed_load_per_s']} orders/s offered (½ service's rate) "
                 "≤ 5 × floor's p99 at the same load",
         "measured": f"service p50 {s['fixed']['received_to_credited_p50_ms']} ms, p99 {sp99} ms",
         "baseline": f"floor p50 {f['fixed']['received_to_credited_p50_ms']} ms, p99 {fp99} ms",
         "ratio": round(p99_ratio, 2) if p99_ratio is not None else None, "target": "≤ 5",
         "met": p99_ratio is not None and p99_ratio <= 5 and ok},
    ]
