"""Read models for the API and the CLI: an order with its payments, events, transitions, ledger, refunds and
disputes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from db import queries
from db.models import Dispute, LedgerEntry, Order, Refund, SupportAction
from gateways import registry
from worker.deps import Deps
from worker.domain.errors import UnknownOrder


def payment_button(gateway: str) -> str:
    """How the Payment step names ``gateway`` ("Pay with Razorpay"): its adapter's ``label``."""
    known = registry.BY_NAME.get(gateway)
    return f"Pay with {known.label if known else gateway}"


def order_summary(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.id, "organisation_id": order.organisation_id, "plan": order.plan, "credits": order.credits,
        "currency": order.currency, "subtotal_minor": order.subtotal_minor, "tax_rate_bp": order.tax_rate_bp,
        "tax_minor": order.tax_minor, "amount_minor": order.amount_minor, "gateway": order.gateway,
        "gateway_order_id": order.gateway_order_id, "state": order.state, "state_reason": order.state_reason,
        "created_at": order.created_at.isoformat(), "paid_at": order.paid_at.isoformat() if order.paid_at else None,
    }


def order_detail(order_id: str, *, deps: Deps) -> dict[str, Any]:
    with deps.sessions() as session:
        order = queries.get_order(session, order_id)
        if order is None:
            raise UnknownOrder(f"no order {order_id!r}")
        rows = queries.timeline(session, order_id)
        return {
            **order_summary(order),
            "payments": [{"payment_id": p.gateway_payment_id, "status": p.status, "amount_minor": p.amount_minor,
                          "currency": p.currency, "failure_kind": p.failure_kind, "flag_reason": p.flag_reason}
                         for p in rows["payments"]],
            "events": [{"inbox_id": e.id, "kind": e.kind, "event_type": e.event_type, "status": e.status,
                        "reason": e.reason, "received_at": e.received_at.isoformat()} for e in rows["events"]],
            "transitions": [{"from": t.from_state, "to": t.to_state, "reason": t.reason, "source": t.source,
                             "at": t.created_at.isoformat()} for t in rows["transitions"]],
            "ledger": [ledger_entry(entry) for entry in rows["ledger"]],
            "refunds": [refund_view(refund) for refund in rows["refunds"]],
            "disputes": [dispute_view(dispute) for dispute in rows["disputes"]],
        }


def _at(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def ledger_entry(entry: LedgerEntry) -> dict[str, Any]:
    """One movement of credits: ``entry`` grant | reversal | restore, ``credits`` the signed balance change,
    ``shortfall`` what a reversal could not take back (already spent)."""
    return {"entry": entry.entry, "kind": entry.kind, "credits": entry.credits, "shortfall": entry.shortfall,
            "money_event_id": entry.money_event_id, "payment_id": entry.gateway_payment_id,
            "amount_minor": entry.amount_minor, "currency": entry.currency, "at": _at(entry.created_at)}


def refund_view(refund: Refund) -> dict[str, Any]:
    return {"refund_id": refund.id, "state": refund.state, "amount_minor": refund.amount_minor,
            "currency": refund.currency, "full": refund.full, "payment_id": refund.gateway_payment_id,
            "gateway_refund_id": refund.gateway_refund_id, "wire_status": refund.wire_status, "origin": refund.origin,
            "reason": refund.reason, "requested_by": refund.requested_by, "override_spent": refund.override_spent,
            "failure_reason": refund.failure_reason, "created_at": _at(refund.created_at),
            "processed_at": _at(refund.processed_at), "next_check_at": _at(refund.next_check_at)}


def dispute_view(dispute: Dispute) -> dict[str, Any]:
    return {"dispute_id": dispute.gateway_dispute_id, "state": dispute.state, "phase": dispute.phase,
            "amount_minor": dispute.amount_minor, "currency": dispute.currency,
            "payment_id": dispute.gateway_payment_id, "reason_code": dispute.reason_code,
            "respond_by": _at(dispute.respond_by), "held": dispute.held,
            "amount_deducted_minor": dispute.amount_deducted_minor, "source": dispute.source, "reason": dispute.reason,
            "requested_by": dispute.requested_by, "created_at": _at(dispute.created_at),
            "updated_at": _at(dispute.updated_at)}


def ensure_order_exists(order_id: str, *, deps: Deps) -> None:
    """404 material: raises UnknownOrder, without loading the order's timeline."""
    with deps.sessions() as session:
        if session.execute(select(Order.id).where(Order.id == order_id)).first() is None:
            raise UnknownOrder(f"no order {order_id!r}")


def ledger_total(organisation_id: str, *, deps: Deps) -> int:
    with deps.sessions() as session:
        return queries.ledger_sum(session, organisation_id)


def callback_outcome(inbox_id: int, order_id: str, *, deps: Deps) -> dict[str, Any] | None:
    """What a stored callback came to, once a worker has processed it (None while it is pending): the order
    and the organisation's balance, what the billing dashboard's spinner waits for."""
    from db.models import InboxEvent, Organisation

    with deps.sessions() as session:
        row = session.get(InboxEvent, inbox_id)
        if row is None or row.status == "pending":
            return None
        order = session.get(Order, order_id)
        balance = session.get(Organisation, order.organisation_id).credit_balance
        return {"inbox_status": row.status, "order": order_summary(order), "balance": balance}


def timeline_rows(detail: dict[str, Any]) -> list[tuple[str, str, str]]:
    """An order's story as (at, what, detail) rows, oldest first: stored events, state changes, refunds,
    disputes and the ledger's reversals and restores (``recon order show`` and the console print these)."""
    rows = [(e["received_at"], f"{e['kind']} {e['event_type'] or ''}", f"{e['status']}: {e['reason'] or ''}")
            for e in detail["events"]]
    rows += [(t["at"], f"state {t['from']} → {t['to']}", f"{t['reason']} (by {t['source']})")
             for t in detail["transitions"]]
    rows += [(r["created_at"], f"refund {r['refund_id']} {r['amount_minor']:,} {r['currency']} ({r['origin']})",
              f"{r['state']}: {r['reason'] or ''} (by {r['requested_by'] or r['origin']})") for r in detail["refunds"]]
    rows += [(d["created_at"], f"dispute {d['dispute_id']} {d['amount_minor']:,} {d['currency']}",
              f"{d['state']} {d['phase'] or ''}, respond by {d['respond_by'] or '-'}") for d in detail["disputes"]]
    rows += [(e["at"], f"ledger {e['entry']} {e['kind']} {e['credits']:+,} credits",
              f"{e['money_event_id']}" + (f", shortfall {e['shortfall']:,}" if e["shortfall"] else ""))
             for e in detail["ledger"] if e["entry"] != "grant"]
    rows += [(a["at"], f"support {a['action']}", f"{a['reason'] or ''} (by {a['requested_by']})")
             for a in detail.get("support_actions", ())]
    return sorted(rows)


def support_actions(order_id: str, *, deps: Deps) -> list[dict[str, Any]]:
    """Who asked support to do what to this order, oldest first (the audit trail)."""
    with deps.sessions() as session:
        rows = session.execute(select(SupportAction).where(SupportAction.order_id == order_id)
                               .order_by(SupportAction.id)).scalars()
        return [{"action": a.action, "requested_by": a.requested_by, "reason": a.reason, "outcome": a.outcome,
                 "at": a.created_at.isoformat()} for a in rows]
