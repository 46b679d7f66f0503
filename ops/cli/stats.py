"""``recon stats``: orders by state, inbox by status, credits granted, oldest open order."""

from __future__ import annotations

import json

import typer

from ops.cli import bootstrap
from ops.cli.common import console
from worker.services.support import stats as read_stats


def stats(ctx: typer.Context) -> None:
    """Orders by state, inbox by status, credits granted, oldest open order."""
    console.print(json.dumps(read_stats(deps=bootstrap.runtime(ctx).deps), indent=2), soft_wrap=True)
