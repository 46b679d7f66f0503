"""Dramatiq actors. ``worker.broker`` is imported first so that the actors bind to the configured broker.

Run the worker with ``dramatiq worker.actors``.
"""

from worker import broker as _broker  # noqa: F401  (must come before any actor is declared)
from worker.actors.callbacks import recheck_order, verify_payment  # noqa: E402
from worker.actors.reconcile import check_order  # noqa: E402
from worker.actors.webhooks import process_inbox_event  # noqa: E402

__all__ = ["check_order", "process_inbox_event", "recheck_order", "verify_payment"]

