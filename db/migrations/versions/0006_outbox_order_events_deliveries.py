"""outbox of order events and their deliveries

Every change a customer or the billing backend cares about is written as an ``order_events`` row in the
same transaction as the change (a transactional outbox); ``event_deliveries`` holds one row per event and
endpoint (pending, delivered, dead), and ``delivery_attempts`` the log of every attempt.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:58:42.234976

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
Time = sa.DateTime(timezone=True)
PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    """The outbox: order events, their deliveries per endpoint, the delivery log."""
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_sequence', sa.Integer(), server_default='0', nullable=False))
    op.create_table('order_events',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('order_id', sa.String(length=40), nullable=False),
    sa.Column('organisation_id', sa.String(length=64), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', Time, nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_events_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_order_events_event_id')),
    sa.UniqueConstraint('order_id', 'sequence', name=op.f('uq_order_events_order_id_sequence'))
    )
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_order_events_organisation_id'), ['organisation_id'], unique=False)

    op.create_table('event_deliveries',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('order_event_id', BigId, nullable=False),
    sa.Column('endpoint', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.String(length=40), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', Time, nullable=True),
    sa.Column('lease_until', Time, nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.Column('created_at', Time, nullable=False),
    sa.Column('delivered_at', Time, nullable=True),
    sa.ForeignKeyConstraint(['order_event_id'], ['order_events.id'],
                            name=op.f('fk_event_deliveries_order_event_id_order_events')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_deliveries')),
    sa.UniqueConstraint('order_event_id', 'endpoint', name=op.f('uq_event_deliveries_order_event_id_endpoint'))
    )
    with op.batch_alter_table('event_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_event_deliveries_due', ['next_attempt_at'], unique=False,
                              postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.create_index('ix_event_deliveries_order', ['endpoint', 'order_id', 'sequence'], unique=False)

    op.create_table('delivery_attempts',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('delivery_id', BigId, nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(length=300), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('created_at', Time, nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['event_deliveries.id'],
                            name=op.f('fk_delivery_attempts_delivery_id_event_deliveries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_attempts'))
    )
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_attempts_delivery_id'), ['delivery_id'], unique=False)



def downgrade() -> None:
    """Drop the outbox (undelivered events are lost)."""
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_attempts_delivery_id'))

    op.drop_table('delivery_attempts')
    with op.batch_alter_table('event_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_event_deliveries_order')
        batch_op.drop_index('ix_event_deliveries_due', postgresql_where=PENDING, sqlite_where=PENDING)

    op.drop_table('event_deliveries')
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_events_organisation_id'))

    op.drop_table('order_events')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('event_sequence')
