"""The checkout callback the billing backend forwards (``verify_payment``): stored first, then applied.

The same two steps as ``POST /orders/{id}/verify``, in one worker: :func:`intake.store_callback`
verifies and keeps it (refused ones too), :func:`inbox.process_inbox_event` asks the gateway and decides.
"""

from __future__ import annotations

from worker.deps import Deps
from worker.domain.order_state import Decision
from worker.services.inbox import process_inbox_event
from worker.services.intake import store_callback


def verify_payment(order_id: str, gateway_payment_id: str, signature: str, *, deps: Deps) -> Decision | None:
    """Store the callback, then fetch its payment and decide. None when the callback was refused
    (kept with the reason) or another worker already applied it."""
    stored = store_callback(order_id, gateway_payment_id, signature, deps=deps)
    if stored.status == "rejected":
        return None
    return process_inbox_event(stored.inbox_id, deps=deps)
