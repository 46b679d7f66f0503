"""The long-running processes ``recon`` starts: web, scheduler, the simulator, the demo."""

from __future__ import annotations

import os
import sys

import typer
import uvicorn

from ops.cli import bootstrap
from worker.scheduler import run_scheduler


def web(host: str = "127.0.0.1", port: int = int(os.environ.get("PORT", "8000")),
        workers: int = typer.Option(1, help="Web processes (uvicorn workers); each builds its own runtime.")) -> None:
    """Serve the HTTP API (webhooks, orders, rechecks)."""
    uvicorn.run("ops.web:app_from_env", factory=True, host=host, port=port, log_level="warning", workers=workers)


def scheduler(ctx: typer.Context) -> None:
    """Run the periodic sweep: due orders are checked at the gateway, stale inbox rows re-enqueued."""
    runtime = bootstrap.runtime(ctx)
    run_scheduler(deps=runtime.deps, actors=runtime.actors)


def simulator(ctx: typer.Context) -> None:
    """Run the gateway simulator (flags: see `recon simulator --help-sim`).

    It runs as its own program (``python -m simulator``): the service packages never import it."""
    args = ["--help"] if "--help-sim" in ctx.args else ctx.args
    os.execvp(sys.executable, [sys.executable, "-m", "simulator", *args])


def demo(keep_db: bool = typer.Option(False, help="Keep the SQLite file afterwards."),
         keep_running: bool = typer.Option(False, help="Keep serving afterwards: the support console's address "
                                                       "and a sign-in are printed (Ctrl-C stops).")) -> None:
    """Run every case of the top-up flow end to end on the embedded set-up and print what happened."""
    from ops.demo import run_demo  # the demo's own imports (rich tables, the embedded stack) only when asked

    sys.exit(run_demo(keep_db=keep_db, keep_running=keep_running))
