"""Retention: indexes for finding what is old (events by age, feed entries by last sight).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_created", "events", ["created_at"])
    op.create_index("ix_seen_entries_last_seen", "seen_entries", ["feed_id", "last_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_seen_entries_last_seen", table_name="seen_entries")
    op.drop_index("ix_events_created", table_name="events")
