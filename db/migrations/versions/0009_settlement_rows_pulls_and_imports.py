"""Settlement rows, pulls and imports

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 01:03:49

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    """settlement_rows (settled transactions as received, with their bucket), settlement_pulls (where each
    day's pull stands) and settlement_imports (report files imported, by hash)."""
    op.create_table('settlement_imports',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('gateway', sa.String(length=16), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('imported_by', sa.String(length=120), nullable=False),
    sa.Column('created_at', Time, nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_settlement_imports'))
    )
    op.create_table('settlement_pulls',
    sa.Column('gateway', sa.String(length=16), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('next_skip', sa.Integer(), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('complete', sa.Boolean(), nullable=False),
    sa.Column('updated_at', Time, nullable=False),
    sa.PrimaryKeyConstraint('gateway', 'day', name=op.f('pk_settlement_pulls'))
    )
    op.create_table('settlement_rows',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('gateway', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=80), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('fee_minor', sa.BigInteger(), nullable=False),
    sa.Column('tax_minor', sa.BigInteger(), nullable=False),
    sa.Column('credit_minor', sa.BigInteger(), nullable=False),
    sa.Column('debit_minor', sa.BigInteger(), nullable=False),
    sa.Column('settlement_id', sa.String(length=80), nullable=True),
    sa.Column('utr', sa.String(length=80), nullable=True),
    sa.Column('settled_at', Time, nullable=True),
    sa.Column('payment_id', sa.String(length=80), nullable=True),
    sa.Column('gateway_order_id', sa.String(length=80), nullable=True),
    sa.Column('dispute_id', sa.String(length=80), nullable=True),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('raw', sa.JSON(), nullable=False),
    sa.Column('received_at', Time, nullable=False),
    sa.Column('bucket', sa.String(length=32), nullable=True),
    sa.Column('order_id', sa.String(length=40), nullable=True),
    sa.Column('matched_at', Time, nullable=True),
    sa.Column('recheck_requested_at', Time, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_rows')),
    sa.UniqueConstraint('gateway', 'kind', 'entity_id', name=op.f('uq_settlement_rows_gateway_kind_entity_id'))
    )
    with op.batch_alter_table('settlement_rows', schema=None) as batch_op:
        batch_op.create_index('ix_settlement_rows_bucket', ['gateway', 'bucket'], unique=False)
        batch_op.create_index('ix_settlement_rows_settled_at', ['settled_at'], unique=False)



def downgrade() -> None:
    """Drop the settlement tables (nothing else refers to them)."""
    with op.batch_alter_table('settlement_rows', schema=None) as batch_op:
        batch_op.drop_index('ix_settlement_rows_settled_at')
        batch_op.drop_index('ix_settlement_rows_bucket')

    op.drop_table('settlement_rows')
    op.drop_table('settlement_pulls')
    op.drop_table('settlement_imports')
