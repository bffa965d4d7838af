"""The ledger: one row per delivery attempt with the SHA-256 of what was sent, kept for
``ledger_retention`` (it outlives the deliveries that ``retention`` forgets).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from notifier.store.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64)),
        sa.Column("event_type", sa.String(64)),
        sa.Column("subscriber_id", sa.String(200)),
        sa.Column("channel", sa.String(16)),
        sa.Column("target", sa.Text),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("sha256", sa.String(64)),
    )
    op.create_index("ix_ledger_at", "ledger", ["at"])
    op.create_index("ix_ledger_delivery", "ledger", ["delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_ledger_delivery", table_name="ledger")
    op.drop_index("ix_ledger_at", table_name="ledger")
    op.drop_table("ledger")
