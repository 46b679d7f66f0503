"""refunds by payment

Settlement rows imported from a report are matched as they are inserted, a chunk at a time, by index lookups:
a payment's processed refunds are summed per row (a hash of every refund for each chunk would read the whole
table a hundred times for a million-row report).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:20:00

"""
from collections.abc import Sequence

from alembic import op

revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Index refunds by gateway and payment id."""
    op.create_index("ix_refunds_payment", "refunds", ["gateway", "gateway_payment_id"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_refunds_payment", table_name="refunds")
