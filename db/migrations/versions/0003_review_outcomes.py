"""review outcomes say what happened

Support decisions used to leave orders ``failed``, even credited ones, which later input then tried to
credit again. A credited order now returns to ``paid`` whatever the decision, an uncredited one that
support closed (or asked to refund) is ``closed``; neither is checked at the gateway any more.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 13:10:00

"""
from collections.abc import Sequence

from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Move past review outcomes to the states that say what happened."""
    op.execute("UPDATE orders SET state = 'paid', next_check_at = NULL "
               "WHERE state = 'failed' AND granted_payment_id IS NOT NULL")
    op.execute("UPDATE orders SET state = 'closed', next_check_at = NULL "
               "WHERE state = 'failed' AND state_reason IN ('review_close', 'review_refund')")


def downgrade() -> None:
    """Back to the old outcome (failed) for orders support decided."""
    op.execute("UPDATE orders SET state = 'failed' WHERE state = 'closed'")
    op.execute("UPDATE orders SET state = 'failed' "
               "WHERE state = 'paid' AND state_reason IN ('review_close', 'review_refund')")
