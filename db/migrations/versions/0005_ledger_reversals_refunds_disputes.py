"""append-only ledger with reversals; refunds and disputes

The ledger held one row per order (a grant). It now holds every movement of credits: grants, reversals
(refunds, dispute holds, recorded chargebacks) and restores (won disputes), each unique per gateway, entry
and money event; grants stay unique per order and per gateway payment (partial unique indexes). On
Postgres a trigger refuses UPDATE and DELETE of ledger rows: the ledger is append-only.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:10:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GRANT = sa.text("entry = 'grant'")
DUE = sa.text("next_check_at IS NOT NULL")
SHORTFALL = sa.text("shortfall <> 0")
BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION ledger_entries_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'ledger_entries is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
  FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
"""


def upgrade() -> None:
    """Ledger entries gain entry, money_event_id and shortfall; refunds and disputes tables."""
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('entry', sa.String(length=16), nullable=False, server_default='grant'))
        batch_op.add_column(sa.Column('money_event_id', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('shortfall', sa.BigInteger(), nullable=False, server_default='0'))
    op.execute("UPDATE ledger_entries SET money_event_id = gateway_payment_id")
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.alter_column('money_event_id', existing_type=sa.String(length=128), nullable=False)
        batch_op.alter_column('entry', existing_type=sa.String(length=16), server_default=None)
        batch_op.alter_column('shortfall', existing_type=sa.BigInteger(), server_default=None)
        batch_op.drop_constraint('uq_ledger_entries_order_id', type_='unique')
        batch_op.drop_constraint('uq_ledger_entries_gateway_gateway_payment_id', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_ledger_entries_gateway_entry_money_event_id'),
                                          ['gateway', 'entry', 'money_event_id'])
        batch_op.create_index('ix_ledger_entries_order_id', ['order_id'], unique=False)
    op.create_index('ux_ledger_entries_grant_order', 'ledger_entries', ['order_id'], unique=True,
                    postgresql_where=GRANT, sqlite_where=GRANT)
    op.create_index('ux_ledger_entries_grant_payment', 'ledger_entries', ['gateway', 'gateway_payment_id'],
                    unique=True, postgresql_where=GRANT, sqlite_where=GRANT)
    op.create_index('ix_ledger_entries_shortfall', 'ledger_entries', ['gateway'], postgresql_where=SHORTFALL,
                    sqlite_where=SHORTFALL)

    op.create_table('refunds',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('order_id', sa.String(length=40), nullable=False),
    sa.Column('gateway', sa.String(length=16), nullable=False),
    sa.Column('gateway_payment_id', sa.String(length=64), nullable=False),
    sa.Column('gateway_refund_id', sa.String(length=80), nullable=True),
    sa.Column('idempotency_key', sa.String(length=64), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('full', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('wire_status', sa.String(length=32), nullable=True),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('override_spent', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('requested_by', sa.String(length=120), nullable=True),
    sa.Column('failure_reason', sa.String(length=300), nullable=True),
    sa.Column('covered_by_dispute', sa.String(length=80), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_check_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('check_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_refunds_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    sa.UniqueConstraint('gateway', 'gateway_refund_id', name=op.f('uq_refunds_gateway_gateway_refund_id')),
    sa.UniqueConstraint('gateway', 'idempotency_key', name=op.f('uq_refunds_gateway_idempotency_key'))
    )
    op.create_index(op.f('ix_refunds_order_id'), 'refunds', ['order_id'], unique=False)
    op.create_index('ix_refunds_due', 'refunds', ['next_check_at'], postgresql_where=DUE, sqlite_where=DUE)

    op.create_table('disputes',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('order_id', sa.String(length=40), nullable=False),
    sa.Column('gateway', sa.String(length=16), nullable=False),
    sa.Column('gateway_dispute_id', sa.String(length=80), nullable=False),
    sa.Column('gateway_payment_id', sa.String(length=64), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('phase', sa.String(length=32), nullable=True),
    sa.Column('reason_code', sa.String(length=120), nullable=True),
    sa.Column('respond_by', sa.DateTime(timezone=True), nullable=True),
    sa.Column('amount_deducted_minor', sa.BigInteger(), nullable=False),
    sa.Column('held', sa.Boolean(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('requested_by', sa.String(length=120), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_disputes_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disputes')),
    sa.UniqueConstraint('gateway', 'gateway_dispute_id', name=op.f('uq_disputes_gateway_gateway_dispute_id'))
    )
    op.create_index(op.f('ix_disputes_order_id'), 'disputes', ['order_id'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(APPEND_ONLY)


def downgrade() -> None:
    """Drop refunds and disputes; the ledger back to one grant per order (reversals are lost)."""
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries")
        op.execute("DROP FUNCTION IF EXISTS ledger_entries_append_only()")
    op.drop_table('disputes')
    op.drop_index('ix_refunds_due', table_name='refunds')
    op.drop_table('refunds')
    op.execute("DELETE FROM ledger_entries WHERE entry <> 'grant'")
    op.drop_index('ix_ledger_entries_shortfall', table_name='ledger_entries')
    op.drop_index('ux_ledger_entries_grant_payment', table_name='ledger_entries')
    op.drop_index('ux_ledger_entries_grant_order', table_name='ledger_entries')
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_entries_order_id')
        batch_op.drop_constraint('uq_ledger_entries_gateway_entry_money_event_id', type_='unique')
        batch_op.create_unique_constraint('uq_ledger_entries_order_id', ['order_id'])
        batch_op.create_unique_constraint('uq_ledger_entries_gateway_gateway_payment_id',
                                          ['gateway', 'gateway_payment_id'])
        batch_op.drop_column('shortfall')
        batch_op.drop_column('money_event_id')
        batch_op.drop_column('entry')
