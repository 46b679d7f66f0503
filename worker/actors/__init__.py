"""Dramatiq actors. ``worker.broker`` is imported first so that the actors bind to the configured broker.

Run the worker with ``dramatiq worker.actors``.
"""

from worker import broker as _broker  # noqa: F401  (must come before any actor is declared)
from worker.actors.callbacks import recheck_order, verify_payment  # noqa: E402
from worker.actors.reconcile import check_order  # noqa: E402
from worker.actors.webhooks import process_inbox_event  # noqa: E402

__all__ = ["check_order", "process_inbox_event", "recheck_order", "verify_payment"]


def _configure_logging() -> None:
    from worker.logging import configure_logging
    from worker.settings import get_settings

    settings = get_settings()
    configure_logging(level=settings.log_level, json=settings.log_json)


_configure_logging()
