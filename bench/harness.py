"""What every benchmark needs: scratch databases, a private Redis, the production processes, RSS.

Nothing here measures anything by itself. Every database is created for the run and dropped at the
end; Redis is a private ``redis-server`` on a spare port (or, when that binary is missing, a unique
namespace in logical database 15 of the shared Redis, deleted at the end). Subprocesses are ended
by their own pid, never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PG_ADMIN_URL = os.environ.get("RECON_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SHARED_REDIS_URL = os.environ.get("RECON_BENCH_SHARED_REDIS_URL", "redis://127.0.0.1:6379/15")
API_TOKEN = "bench-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
BIN = Path(sys.executable).parent

#: Prices as the default settings give them: 1,000 credits in India = 200,000 + 18 % tax.
CREDITS = 1_000
SUBTOTAL = 200_000
TAX = 36_000
AMOUNT = SUBTOTAL + TAX


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def free_port(start: int | None = None) -> int:
    """A free loopback port: the first free one from ``start`` upwards, or any."""
    candidates = range(start, start + 200) if start else [0]
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


# -- the machine -------------------------------------------------------------------------------------
def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(x) for x in (task / "children").read_text().split()]
    except (FileNotFoundError, PermissionError):
        pass
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (seconds)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, IndexError):
        return 0.0


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def machine_snapshot(label: str, sample_s: float = 1.0) -> dict:
    """Load average and the processes not started by this run that used ≥ 5 % CPU over ``sample_s``."""
    own = {os.getpid(), *descendants(os.getpid())}
    before = {int(p.name): cpu_seconds(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    time.sleep(sample_s)
    busy = []
    for pid, cpu in before.items():
        if pid in own:
            continue
        used = (cpu_seconds(pid) - cpu) / sample_s * 100
        if used >= 5.0:
            try:
                name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if not name:  # kernel threads
                continue
            busy.append((used, f"{name[:70]} ({pid}) {used:.0f}%"))
    busy = [text for _, text in sorted(busy, reverse=True)]
    return {"label": label, "loadavg": list(os.getloadavg()), "cpus": os.cpu_count(), "others_busy": busy[:6],
            "others_cpu_pct": round(sum(float(t.rsplit(" ", 1)[1].rstrip("%")) for t in busy)),
            "at": datetime.now(UTC).isoformat(timespec="seconds")}


# -- Postgres ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def scratch_db(label: str, *, migrate: bool = True) -> Iterator[str]:
    """A database of its own, migrated to head (unless ``migrate=False``), dropped afterwards."""
    name = f"recon_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        if migrate:
            from db.migrate import upgrade

            upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


# -- Redis -------------------------------------------------------------------------------------------
@dataclass
class RedisTarget:
    url: str
    namespace: str
    process: subprocess.Popen | None = None

    def close(self) -> None:
        if self.process is not None:
            stop(self.process)
            return
        import redis

        client = redis.Redis.from_url(self.url)
        for key in client.scan_iter(match=f"{self.namespace}*", count=1000):
            client.delete(key)
        client.close()


@contextlib.contextmanager
def private_redis() -> Iterator[RedisTarget]:
    """A redis-server of our own on a spare port (6391 upwards), or a namespace on the shared db 15."""
    namespace = f"recon-bench-{uuid.uuid4().hex[:8]}"
    server = shutil.which("redis-server")
    if server is None:
        log("redis-server not found: using a namespace on the shared Redis db 15")
        target = RedisTarget(SHARED_REDIS_URL, namespace)
    else:
        port = free_port(6391)
        process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                    "no", "--daemonize", "no", "--loglevel", "warning"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = RedisTarget(f"redis://127.0.0.1:{port}/0", namespace, process)
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(target.url).ping()
                break
            except Exception as exc:  # any error means not up yet; retried until the deadline
                if time.monotonic() > deadline or process.poll() is not None:
                    stop(process)
                    raise RuntimeError("the private redis-server did not start") from exc
                time.sleep(0.05)
    try:
        yield target
    finally:
        target.close()


# -- the production processes ------------------------------------------------------------------------
def service_env(db_url: str, redis: RedisTarget, sim_base_url: str, sim_config, metrics_dir: str,
                **settings: object) -> dict[str, str]:
    """Environment of ``recon web`` / ``dramatiq worker.main:start`` / ``recon scheduler`` for one run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env.update({
        "RECON_DATABASE_URL": db_url,
        "RECON_BROKER_URL": redis.url,
        "RECON_BROKER_NAMESPACE": redis.namespace,
        "RECON_API_TOKENS": json.dumps({"bench": API_TOKEN}),
        "RECON_RAZORPAY_BASE_URL": sim_base_url,
        "RECON_RAZORPAY_KEY_ID": sim_config.key_id,
        "RECON_RAZORPAY_KEY_SECRET": sim_config.key_secret,
        "RECON_RAZORPAY_WEBHOOK_SECRET": sim_config.webhook_secret,
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        "PYTHONUNBUFFERED": "1",
    })
    for key, value in settings.items():
        env[f"RECON_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


@dataclass
class Services:
    """The processes of one benchmark, started from the Procfile's commands."""

    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    web_url: str | None = None

    def start_web(self, workers: int = 1) -> str:
        """``recon web`` (``workers`` > 1: that many uvicorn worker processes under one supervisor)."""
        port = free_port()
        self._start("web", [str(BIN / "recon"), "web", "--host", "127.0.0.1", "--port", str(port),
                            *(["--workers", str(workers)] if workers > 1 else [])])
        self.web_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.web_url}/healthz", timeout=2).status_code == 200:
                    return self.web_url
            except httpx.HTTPError:
                pass
            self._check_alive("web")
            if time.monotonic() > deadline:
                raise RuntimeError("recon web did not start")
            time.sleep(0.2)

    def start_worker(self, processes: int = 2, threads: int = 8) -> subprocess.Popen:
        process = self._start("worker", [str(BIN / "dramatiq"), "worker.main:start", "--processes", str(processes),
                                         "--threads", str(threads)])
        deadline = time.monotonic() + 60
        while len(children(process.pid)) < processes or "Worker process is ready" not in self.log_text("worker"):
            self._check_alive("worker")
            if time.monotonic() > deadline:
                raise RuntimeError("dramatiq worker did not start: " + self.log_text("worker")[-2000:])
            time.sleep(0.2)
        return process

    def start_scheduler(self) -> subprocess.Popen:
        return self._start("scheduler", [str(BIN / "recon"), "scheduler"])

    def worker_pids(self) -> list[int]:
        return children(self.processes["worker"].pid) if "worker" in self.processes else []

    def log_text(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as handle:  # the child keeps its own descriptor
            process = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.processes[name] = process
        return process

    def _check_alive(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {self.log_text(name)[-2000:]}")

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            stop(process)
        self.processes.clear()


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process (and its own process group, which only it and its children are in), then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM) if os.getpgid(process.pid) == process.pid else process.terminate()
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL) if os.getpgid(process.pid) == process.pid else process.kill()
        process.wait(5)


@contextlib.contextmanager
def services(env: dict[str, str], logs: Path) -> Iterator[Services]:
    running = Services(env, logs)
    try:
        yield running
    finally:
        running.stop()


@contextlib.contextmanager
def metrics_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="recon-bench-metrics-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- data --------------------------------------------------------------------------------------------
def seed_organisations(engine, count: int) -> list[str]:
    """``count`` Indian organisations, each with one admin; returns their ids."""
    now = datetime.now(UTC)
    orgs = [f"bench-org-{i:04d}" for i in range(count)]
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO organisations (id, name, region, plan, credit_balance, created_at) "
                                "VALUES (:id, :id, 'IN', 'payg', 0, :now)"), [{"id": o, "now": now} for o in orgs])
        connection.execute(text("INSERT INTO members (id, organisation_id, email, role) "
                                "VALUES (:id, :org, :email, 'admin')"),
                           [{"id": f"{o}-admin", "org": o, "email": f"admin@{o}.example"} for o in orgs])
    return orgs


def insert_orders(engine, rows: list[dict]) -> None:
    """Insert orders as POST /orders would have left them (payg, 1,000 credits, India)."""
    now = datetime.now(UTC)
    defaults = {"plan": "payg", "credits": CREDITS, "currency": "INR", "subtotal_minor": SUBTOTAL, "tax_rate_bp": 1800,
                "tax_minor": TAX, "amount_minor": AMOUNT, "gateway": "razorpay", "manual_capture": False,
                "state": "created", "state_reason": None, "refund_policy_accepted_at": now, "created_at": now,
                "updated_at": now, "next_check_at": None, "check_count": 0, "last_attempt_at": None}
    columns = [*defaults, "id", "organisation_id", "requested_by", "gateway_order_id"]
    statement = text(f"INSERT INTO orders ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})")
    with engine.begin() as connection:
        for start in range(0, len(rows), 5_000):
            connection.execute(statement, [{**defaults, **row} for row in rows[start:start + 5_000]])


def sim_orders(sim, order_ids: list[str]) -> dict[str, str]:
    """Create the gateway side of each order in the simulator, in-process; returns ours → theirs."""
    mapping = {}
    for order_id in order_ids:
        created = sim.razorpay.create_order({"amount": AMOUNT, "currency": "INR", "receipt": order_id,
                                             "notes": {"order_id": order_id}})
        mapping[order_id] = created["id"]
    return mapping


def utcnow() -> datetime:
    return datetime.now(UTC)


def ago(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)
