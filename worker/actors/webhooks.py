"""Applies stored webhooks to their orders."""

from __future__ import annotations

from worker.actors._args import recon_actor
from worker.contract import InboxEventArgs
from worker.deps import Deps
from worker.queues import WEBHOOK_QUEUE
from worker.services import inbox


@recon_actor(name="process_inbox_event", queue=WEBHOOK_QUEUE, contract=InboxEventArgs)
def process_inbox_event(message: InboxEventArgs, deps: Deps) -> None:
    """Apply one stored, verified webhook to its order."""
    inbox.process_inbox_event(message.inbox_id, deps=deps, coalesce_key=message.coalesce_key)
