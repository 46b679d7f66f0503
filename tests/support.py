"""Small helpers shared by integration and end-to-end tests."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from db.models import InboxEvent, LedgerEntry, Order, Organisation
from worker.services.orders import PurchaseRequest, create_order

#: The bearer token the test settings accept (see ``settings_for`` in conftest).
AUTH = {"Authorization": "Bearer test-token-0123456789"}


@dataclass(frozen=True)
class GatewayOrg:
    """An organisation whose region routes to one gateway, and how that gateway's checkout answers."""

    gateway: str
    org: str
    admin: str

    def callback(self, paid: dict) -> tuple[str, str]:
        """The (payment id, signature) the checkout handler passes to ``verify_payment``."""
        if self.gateway == "razorpay":
            return paid["razorpay_payment_id"], paid["razorpay_signature"]
        return paid["gid"], paid["x-gl-token"]

    def payment_id(self, paid: dict) -> str:
        return paid.get("razorpay_payment_id") or paid.get("id") if self.gateway == "razorpay" else paid["gid"]


GATEWAY_ORGS = {"razorpay": GatewayOrg("razorpay", "org-in", "admin-1"),
                "payglocal": GatewayOrg("payglocal", "org-us", "admin-us")}
ADMINS = {g.org: g.admin for g in GATEWAY_ORGS.values()}


def new_order(deps, org: str | GatewayOrg = "org-in", *, plan: str = "payg", credits: int | None = 5_000, **extra):
    """Create an order through the service, as POST /orders does; returns the stored Order."""
    org = org.org if isinstance(org, GatewayOrg) else org
    request = PurchaseRequest(organisation_id=org, requested_by=ADMINS[org], plan=plan, refund_policy_accepted=True,
                              credits=credits if plan == "payg" else None, **extra)
    return create_order(request, deps=deps).order


def order_row(deps, order_id: str) -> Order:
    with deps.sessions() as session:
        return session.get(Order, order_id)


def ledger_count(deps, order_id: str | None = None) -> int:
    """How many grants (credits given for a payment) the ledger holds; reversals and restores are not counted."""
    with deps.sessions() as session:
        stmt = select(func.count()).select_from(LedgerEntry).where(LedgerEntry.entry == "grant")
        if order_id:
            stmt = stmt.where(LedgerEntry.order_id == order_id)
        return session.execute(stmt).scalar_one()


def balance(deps, org: str | GatewayOrg = "org-in") -> int:
    org = org.org if isinstance(org, GatewayOrg) else org
    with deps.sessions() as session:
        return session.get(Organisation, org).credit_balance


def inbox_rows(deps, **filters) -> list[InboxEvent]:
    with deps.sessions() as session:
        return list(session.execute(select(InboxEvent).filter_by(**filters).order_by(InboxEvent.id)).scalars())
