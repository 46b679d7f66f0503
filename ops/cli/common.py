"""What several command modules share: the console, durations and times as people type them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console

console = Console()

DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '2h', '1d' → timedelta."""
    match = DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 30m, 2h or 1d")
    number, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: number})


def as_utc(moment: datetime | None) -> datetime | None:
    """Times typed without a zone are UTC."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)
