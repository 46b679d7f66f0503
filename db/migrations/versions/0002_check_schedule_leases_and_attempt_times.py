"""check schedule leases and attempt times

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 22:02:23.500211

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_checked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('check_lease_until', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('inbox_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requeued_at', sa.DateTime(timezone=True), nullable=True))



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('inbox_events', schema=None) as batch_op:
        batch_op.drop_column('requeued_at')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('check_lease_until')
        batch_op.drop_column('last_checked_at')
        batch_op.drop_column('last_attempt_at')

