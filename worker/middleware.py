"""Dramatiq middleware: log context per message, and a count of dead-lettered messages with why."""

from __future__ import annotations

import structlog
from dramatiq.middleware import Middleware

from worker.logging import configure_logging, get_logger
from worker.metrics import DEAD_LETTERED
from worker.settings import Settings


class LogContext(Middleware):
    """Binds ``message_id``, ``actor`` and ``retries`` for every log line of one message."""

    def before_process_message(self, broker, message) -> None:
        structlog.contextvars.bind_contextvars(message_id=message.message_id, actor=message.actor_name,
                                               retries=message.options.get("retries", 0))

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        structlog.contextvars.clear_contextvars()

    after_skip_message = after_process_message


class ConfigureLogging(Middleware):
    """Worker processes started by the ``dramatiq`` CLI log structlog JSON, configured once at boot."""

    def __init__(self, settings: Settings) -> None:
        self.level, self.json = settings.log_level, settings.log_json

    def after_process_boot(self, broker) -> None:
        configure_logging(level=self.level, json=self.json)


class DeadLetters(Middleware):
    """Counts and logs every message sent to the dead-letter queue, with the reason."""

    def after_nack(self, broker, message) -> None:
        exception = getattr(message, "_exception", None)
        reason = type(exception).__name__ if exception else "rejected"
        DEAD_LETTERED.labels(message.queue_name, message.actor_name, reason).inc()
        get_logger().error("message_dead_lettered", queue=message.queue_name, actor=message.actor_name,
                           reason=reason, detail=str(exception)[:500] if exception else None)
