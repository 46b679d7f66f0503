"""What every ``recon`` command runs on, built once per invocation: settings from the environment,
logging, the broker, Deps and actors. Tests hand in their own (``runner.invoke(app, obj=runtime)``)."""

from __future__ import annotations

import typer

from worker.logging import configure_logging
from worker.main import Runtime, build_runtime
from worker.settings import Settings


def settings(ctx: typer.Context) -> Settings:
    """The settings alone (commands that need neither a broker nor a database pool)."""
    obj = ctx.find_root().obj
    return obj.settings if isinstance(obj, Runtime) else Settings()


def runtime(ctx: typer.Context) -> Runtime:
    """The invocation's runtime: the one handed in, or one built from the environment on first use."""
    root = ctx.find_root()
    if not isinstance(root.obj, Runtime):
        built = Settings()
        configure_logging(level=built.log_level, json=built.log_json)
        root.obj = build_runtime(built)
    return root.obj
