"""What support does beyond a recheck: find orders, compare with the gateway without changing
anything, replay stored webhooks, and read the dead-letter queue. Every change is audited."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from db import queries
from db.models import InboxEvent, LedgerEntry, Order
from worker.deps import Deps
from worker.domain.errors import UnknownOrder
from worker.domain.order_state import Source, decide
from worker.services.apply import snapshot, with_known_payments
from worker.services.poll import order_evidence


def select_orders(*, deps: Deps, state: str, older_than: timedelta, limit: int = 10_000) -> list[str]:
    cutoff = deps.clock.now() - older_than
    with deps.sessions() as session:
        stmt = (select(Order.id).where(Order.state == state, Order.created_at < cutoff)
                .order_by(Order.created_at).limit(limit))
        return list(session.execute(stmt).scalars())


def dry_run(order_id: str, *, deps: Deps) -> dict[str, Any]:
    """What the gateway says next to what we hold, and what a recheck would do. Changes nothing."""
    with deps.sessions() as session:
        order = queries.get_order(session, order_id)
        if order is None:
            raise UnknownOrder(f"no order {order_id!r}")
        stored = queries.payments_of(session, order_id)
        held = snapshot(session, order, stored)
    reported = order_evidence(deps.gateway(order.gateway), order.gateway_order_id, Source.RECHECK)
    evidence = with_known_payments(reported, order, stored)  # as a real recheck would decide
    decision = decide(held, evidence, now=deps.clock.now(), policy=deps.policy)
    grant = decision.grant
    return {
        "order_id": order_id, "state": held.state.value, "amount_minor": held.amount_minor, "currency": held.currency,
        "gateway_payments": [{"id": p.gateway_payment_id, "status": p.status.value, "amount_minor": p.amount_minor,
                              "currency": p.currency} for p in reported.payments],
        "would_become": decision.to_state.value, "reason": decision.reason,
        "would_grant": ({"payment_id": grant.gateway_payment_id, "plan": order.plan,
                         "credits": order.credits if order.plan == "payg" else 0} if grant else None),
    }


def replay_inbox(*, deps: Deps, requested_by: str, reason: str | None, ids: list[int] | None = None,
                 since: datetime | None = None, until: datetime | None = None) -> list[int]:
    """Put stored webhooks back to pending so a worker processes them again (idempotent)."""
    with deps.unit() as uow:
        chosen = uow.reopen_inbox(ids=ids, since=since, until=until, requested_by=requested_by)
        if chosen:
            uow.audit("inbox_replay", requested_by=requested_by, reason=reason, outcome={"inbox_ids": chosen})
        uow.commit()
    return chosen


def audit(action: str, *, deps: Deps, requested_by: str, reason: str | None, outcome: dict,
          order_id: str | None = None) -> None:
    with deps.unit() as uow:
        uow.audit(action, order_id=order_id, requested_by=requested_by, reason=reason, outcome=outcome)
        uow.commit()


def stats(*, deps: Deps) -> dict[str, Any]:
    with deps.sessions() as session:
        states = dict(session.execute(select(Order.state, func.count()).group_by(Order.state)).all())
        inbox = dict(session.execute(select(InboxEvent.status, func.count()).group_by(InboxEvent.status)).all())
        credits = session.execute(select(func.coalesce(func.sum(LedgerEntry.credits), 0))).scalar_one()
        oldest = session.execute(select(func.min(Order.created_at))
                                 .where(Order.state.in_(("created", "pending")))).scalar_one()
    return {"orders_by_state": states, "inbox_by_status": inbox, "credits_granted": int(credits),
            "oldest_open_order_at": oldest.isoformat() if oldest else None}
