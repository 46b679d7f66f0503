"""Idempotency-Key of POST /orders

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 22:50:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """order_requests: one row per (organisation, key) with the request's hash and the answer given."""
    op.create_table('order_requests',
    sa.Column('organisation_id', sa.String(length=64), nullable=False),
    sa.Column('idempotency_key', sa.String(length=64), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('order_id', sa.String(length=40), nullable=True),
    sa.Column('response', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('organisation_id', 'idempotency_key', name=op.f('pk_order_requests'))
    )
    op.create_index('ix_order_requests_created_at', 'order_requests', ['created_at'], unique=False)


def downgrade() -> None:
    """Drop the keys (a retried POST /orders may then create a second order)."""
    op.drop_index('ix_order_requests_created_at', table_name='order_requests')
    op.drop_table('order_requests')
