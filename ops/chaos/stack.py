"""What a chaos run stands on, all on 127.0.0.1 and all stoppable: a redis-server of its own on a spare port,
a Postgres database of its own, subprocesses in their own process groups (so ``kill -9`` reaches the
children a dramatiq master forks), the supervisor that restarts them, and the faults that shake it all."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import redis
from rich.console import Console
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("RECON_CHAOS_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


class Proc:
    """A subprocess in its own process group, so that ``kill -9`` also reaches the children it forked."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.killed = False
        self.started_at = 0.0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        self.killed, self.started_at = False, time.monotonic()

    def kill(self, whole_group: bool) -> None:
        """``kill -9`` the group, or only the forked dramatiq worker child (its master then exits by itself)."""
        self.killed = True
        pgid = self.popen.pid
        children = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != pgid and _pgid(int(p)) == pgid]
        if whole_group or not children:
            _signal_group(pgid, signal.SIGKILL)
        else:
            for pid in children:
                os.kill(pid, signal.SIGKILL)

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None:
            return
        self.killed = True
        _signal_group(self.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        _signal_group(self.popen.pid, signal.SIGKILL)  # stragglers of the group too
        self.popen.wait(5)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


class RedisServer:
    """A redis-server of our own on a spare loopback port that keeps nothing on disk."""

    def __init__(self, port: int, run_dir: Path):
        self.port, self.run_dir = port or _spare_redis_port(), run_dir
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        subprocess.run(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                        "no", "--daemonize", "yes", "--dir", str(self.run_dir),
                        "--pidfile", str(self.run_dir / "redis.pid"), "--logfile", str(self.run_dir / "redis.log")],
                       check=True)
        wait_until(self._up, 20, f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        """SIGTERM, as an orchestrator stops it: with ``--save ""`` nothing is written, everything queued is gone."""
        pidfile = self.run_dir / "redis.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        wait_until(lambda: not self._listening(), 20, f"redis-server on port {self.port} did not stop", every=0.05)

    def _listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def _up(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False


def _spare_redis_port() -> int:
    for port in range(6390, 6400):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no spare Redis port in 6390-6399")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout: float, failure: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(every)


class Database:
    """A Postgres database of our own, migrated to head; dropped by :meth:`drop`."""

    def __init__(self, name: str):
        self.name, self.admin = name, create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def create(self) -> None:
        from db.migrate import upgrade

        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{self.name}"'))
        upgrade(self.url)

    def terminate_connections(self) -> int:
        with self.admin.connect() as c:
            return c.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": self.name}).scalar_one()

    def drop(self) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


class Faults:
    """At set points of the drive: ``kill -9`` workers, restart Redis empty, cut every database connection."""

    def __init__(self, cfg, workers: list[Proc], redis_server: RedisServer, database: Database,
                 stats: Counter, details: dict, console: Console):
        self.cfg, self.workers, self.redis, self.database = cfg, workers, redis_server, database
        self.stats, self.details, self.console = stats, details, console
        self.rng = random.Random(f"{cfg.seed}:faults")

    def plan(self) -> list[tuple[float, str]]:
        def spread(n: int, low: float, high: float) -> list[float]:
            return [low + (high - low) * (j + 0.5) / n for j in range(n)]

        cfg = self.cfg
        return sorted([(f, "kill") for f in spread(cfg.kills, 0.05, 0.95)]
                      + [(f, "restart_redis") for f in spread(cfg.redis_restarts, 0.4, 0.6)]
                      + [(f, "terminate_db") for f in spread(cfg.db_terminations, 0.6, 0.8)])

    def run(self, customers, drive_done: threading.Event, stop: threading.Event) -> None:
        """Strike at each point of :meth:`plan` (fractions of the customers started); the rest once the drive ends."""
        for fraction, action in self.plan():
            while customers.done < fraction * self.cfg.orders and not drive_done.is_set():
                if stop.wait(0.1):
                    return
            try:
                getattr(self, action)()
            except Exception as exc:  # noqa: BLE001  (a failed fault injection is counted, the run goes on)
                self.stats["fault_errors"] += 1
                self.console.log(f"[red]{action} failed: {exc!r}[/red]")

    def kill(self) -> None:
        def ready() -> list[Proc]:  # up for a few seconds, so busy with messages
            return [w for w in self.workers if w.popen.poll() is None and time.monotonic() - w.started_at > 5]

        wait_until(lambda: ready(), 60, "no worker stayed up long enough to be killed")
        worker, whole = self.rng.choice(ready()), self.rng.random() < 0.5
        worker.kill(whole_group=whole)
        self.stats["kills"] += 1
        self.details["kills"].append(f"{worker.name}/{'group' if whole else 'child'}")
        self.console.log(f"kill -9 {worker.name} ({'process group' if whole else 'worker child only'})")

    def restart_redis(self) -> None:
        down_at = time.monotonic()
        self.redis.stop()
        time.sleep(1.0)
        self.redis.start()
        self.stats["redis_restarts"] += 1
        self.details["redis_restarts"].append(f"down {time.monotonic() - down_at:.1f} s")
        self.console.log(f"Redis on port {self.redis.port} restarted empty after {time.monotonic() - down_at:.1f} s")

    def terminate_db(self) -> None:
        terminated = self.database.terminate_connections()
        self.stats["db_terminations"] += 1
        self.details["db_terminations"].append(f"{terminated} backends")
        self.console.log(f"terminated {terminated} database connections")


def supervise(procs: list[Proc], stop: threading.Event, stats: Counter, details: dict, console: Console) -> None:
    """Restart any process that exits; one that exits without being killed by us is recorded."""
    while not stop.wait(0.3):
        for proc in procs:
            code = proc.popen.poll()
            if code is None or time.monotonic() - proc.started_at < 1.0:
                continue
            if not proc.killed:
                stats["unexpected_exits"] += 1
                details["unexpected_exits"].append(f"{proc.name} code {code}")
                console.log(f"[red]{proc.name} exited by itself (code {code}); see {proc.log_path}[/red]")
            stats["worker_restarts" if proc.name.startswith("worker") else "other_restarts"] += 1
            proc.start()
