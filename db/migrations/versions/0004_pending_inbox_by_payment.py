"""pending inbox rows by payment

A worker applying one webhook takes the other pending webhooks about the same payment in the same
transaction (payment.authorized, payment.captured and order.paid arrive together): a partial index finds
them without scanning the inbox.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 16:20:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    """Index pending rows by gateway and payment id."""
    op.create_index("ix_inbox_events_pending_payment", "inbox_events", ["gateway", "gateway_payment_id"],
                    postgresql_where=PENDING, sqlite_where=PENDING)


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_inbox_events_pending_payment", table_name="inbox_events")
