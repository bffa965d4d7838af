"""Unsubscribes: RFC 8058 one-click unsubscribe of one address of one subscriber.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from notifier.store.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unsubscribes",
        sa.Column("subscriber_id", sa.String(200), primary_key=True),
        sa.Column("target", sa.String(2000), primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("unsubscribes")
