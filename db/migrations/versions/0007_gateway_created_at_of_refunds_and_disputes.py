"""when the gateway made each refund and opened each dispute

A lost or closed dispute's own refund entity is linked to it by amount; a refund made before the dispute was
opened cannot be that refund, so both keep the gateway's ``created_at``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:40:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """refunds.gateway_created_at and disputes.gateway_created_at (NULL for rows seen before)."""
    for table in ('refunds', 'disputes'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('gateway_created_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop both columns."""
    for table in ('refunds', 'disputes'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('gateway_created_at')
