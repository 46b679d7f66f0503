"""Dramatiq actors: thin, one queue per module. Declared on a broker by the entry point that built it
(:func:`declare_actors`), never at import, so importing this package builds nothing.

Run the worker with ``dramatiq worker.main:start`` (see :mod:`worker.main`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dramatiq

from worker.actors import callbacks, events, reconcile, settlements, webhooks
from worker.deps import Deps


@dataclass(frozen=True, slots=True)
class Actors:
    """The actors as declared on one broker: what a process enqueues with (``actors.check_order.send``)."""

    check_order: dramatiq.Actor
    process_inbox_event: dramatiq.Actor
    verify_payment: dramatiq.Actor
    recheck_order: dramatiq.Actor
    check_refund: dramatiq.Actor
    deliver_events: dramatiq.Actor
    reconcile_settlements: dramatiq.Actor
    recheck_settled_order: dramatiq.Actor


def declare_actors(broker: dramatiq.Broker, deps: Callable[[], Deps]) -> Actors:
    """Declare every actor on ``broker``; each message runs with ``deps()`` (the process's Deps)."""
    return Actors(
        check_order=reconcile.check_order.declare(broker, deps),
        process_inbox_event=webhooks.process_inbox_event.declare(broker, deps),
        verify_payment=callbacks.verify_payment.declare(broker, deps),
        recheck_order=callbacks.recheck_order.declare(broker, deps),
        check_refund=reconcile.check_refund.declare(broker, deps),
        deliver_events=events.deliver_events.declare(broker, deps),
        reconcile_settlements=settlements.reconcile_settlements.declare(broker, deps),
        recheck_settled_order=settlements.recheck_settled_order.declare(broker, deps),
    )


__all__ = ["Actors", "declare_actors"]
