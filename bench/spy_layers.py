"""Where a process's Python CPU goes, from py-spy's raw stacks (``--gil``: only samples of the thread holding
the GIL, so waits on sockets and locks are left out and each sample is Python work).

Two views of the same samples: by **library** (whose code the innermost frame is: ours, the ORM, the driver,
Dramatiq, uvicorn, …) and by **step** (which of our steps the stack is under: storing a webhook, enqueueing
it, loading the inbox row, applying, committing, or nothing of ours: the framework's own work).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

#: (library, pattern on the frame's file path); the first match names the library of a frame.
LIBRARIES: tuple[tuple[str, str], ...] = (  # py-spy names files relative to their sys.path entry
    ("our code", r"(^|/)(worker|ops|db|gateways)/"),
    ("SQLAlchemy ORM", r"(^|/)sqlalchemy/orm/"),
    ("SQLAlchemy Core and engine", r"(^|/)sqlalchemy/"),
    ("psycopg (driver)", r"(^|/)psycopg"),
    ("Dramatiq", r"(^|/)dramatiq/"),
    ("redis-py", r"(^|/)redis/"),
    ("structlog and logging", r"(^|/)(structlog|logging)/"),
    ("prometheus_client", r"(^|/)prometheus_client/"),
    ("uvicorn and httptools", r"(^|/)(uvicorn|httptools)"),
    ("Starlette, FastAPI, anyio", r"(^|/)(starlette|fastapi|anyio)/"),
    ("pydantic", r"(^|/)pydantic"),
    ("event loop (asyncio, uvloop)", r"(^|/)(asyncio|uvloop)"),
    ("threads and queues (stdlib)", r"(^|/)(threading\.py|queue\.py|concurrent/)"),
    ("json, hmac, hashlib (stdlib)", r"(^|/)(json/|hmac\.py|hashlib\.py)"),
)

#: (step, pattern on any frame of the stack); the first match names the step of a sample.
STEPS: tuple[tuple[str, str], ...] = (
    ("web: enqueue (coalescing marker, Dramatiq send)", r"stored_webhook \(ops/enqueue|inbox_event \(ops/enqueue"),
    ("web: verify signature, parse body", r"verify_webhook \("),
    ("web: store the inbox row (insert, commit)", r"store_webhook \(|store_rejected \("),
    ("worker: release the coalescing marker", r"release_queued \("),
    ("worker: load and lock the inbox row", r"inbox_row \(worker/services/unit"),
    ("worker: find and lock the order", r"find_order \(worker/services/unit"),
    ("worker: gather the payment's other rows", r"_siblings_about \("),
    ("worker: decide and write (state machine, payments, ledger, events)", r"apply \(worker/services/unit"),
    ("worker: mark rows processed, log", r"_finish \(worker/services/inbox"),
    ("worker: commit (ORM flush, COMMIT)", r"commit \(worker/services/unit"),
    ("worker: open and close the unit", r"__enter__ \(worker/services/unit|__exit__ \(worker/services/unit"),
    ("worker: rest of process_inbox_event", r"process_inbox_event \(worker/services/inbox|_process \(worker/"),
    ("worker: message contract check", r"actors/_args\.py"),
    ("Dramatiq: consumer thread (fetch, ack, prefetch)", r"ConsumerThread"),
    ("Dramatiq: worker thread around the actor (middleware, ack)", r"_WorkerThread|process_message"),
    ("web: thread-pool handoff", r"to_thread|WorkerThread\.run \(anyio|run_in_threadpool"),
    ("web: HTTP and ASGI stack (uvicorn, Starlette, FastAPI)", r"httptools_impl|uvicorn/"),
)

_FRAME_FILE = re.compile(r"\(([^()]*?):\d+\)$")


def read(path: Path) -> list[tuple[list[str], int]]:
    """py-spy ``--format raw`` lines: ``frame;frame;…;leaf count``, process and thread frames first."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def library_of(frame: str) -> str:
    match = _FRAME_FILE.search(frame)
    where = match.group(1) if match else frame
    for name, pattern in LIBRARIES:
        if re.search(pattern, where):
            return name
    return "other stdlib and C"


def step_of(frames: list[str]) -> str:
    for name, pattern in STEPS:
        if any(re.search(pattern, f) for f in frames):
            return name
    return "other (process start-up, scheduler threads, …)"


def shares(path: Path) -> dict:
    """The samples' shares by library (innermost frame) and by step, and how many there were."""
    stacks = read(path) if path.exists() else []
    total = sum(n for _, n in stacks)
    by_library: Counter[str] = Counter()
    by_step: Counter[str] = Counter()
    for frames, n in stacks:
        by_library[library_of(frames[-1])] += n
        by_step[step_of(frames)] += n
    if not total:
        return {"samples": 0, "by_library": {}, "by_step": {}}
    return {"samples": total,
            "by_library": {k: round(v / total, 4) for k, v in by_library.most_common()},
            "by_step": {k: round(v / total, 4) for k, v in by_step.most_common()}}
