"""structlog set-up: JSON lines with bound ``order_id``, ``payment_id`` and ``gateway``; secrets redacted."""

from __future__ import annotations

import logging
import re
import sys

import structlog

#: Keys whose values never reach a log line.
SECRET_KEYS = re.compile(r"(secret|password|token|signature|authorization|api[_-]?key|card|cvv)", re.I)
REDACTED = "[redacted]"


def redact_secrets(_logger, _method, event_dict: dict) -> dict:
    """Replace the value of any key that names a secret, at any depth of nested dicts."""
    return {key: _redact(key, value) for key, value in event_dict.items()}


def _redact(key: str, value):
    if isinstance(key, str) and SECRET_KEYS.search(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: _redact(k, v) for k, v in value.items()}
    return value


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(*, level: str = "INFO", json: bool = True, stream=None) -> None:
    """Configure structlog and the standard library to write one JSON object per line."""
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or _CurrentStderr()),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level.upper(), stream=stream or sys.stderr, format="%(message)s", force=True)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(**bound):
    return structlog.get_logger("recon").bind(**bound)
