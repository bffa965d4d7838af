"""Feed leases: with several instances on one database, one poll per feed per interval.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from notifier.store.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_leases",
        sa.Column("feed_id", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("until", UTCDateTime, nullable=False),
    )
    with op.batch_alter_table("feed_state") as batch:
        batch.add_column(sa.Column("polled_by", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("feed_state") as batch:
        batch.drop_column("polled_by")
    op.drop_table("feed_leases")
