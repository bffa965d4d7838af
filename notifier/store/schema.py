"""Table definitions: the schema at the head migration (``migrations/versions``).

A change here needs a new migration beside it; ``tests/integration/test_migrations.py``
checks that the migrated schema and these definitions agree.

Times are stored as timezone-aware UTC (``UTCDateTime``) on both backends. JSON columns
hold the event payload data and rule snapshots exactly as they are sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out (SQLite forgets the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

feed_state = sa.Table(
    "feed_state",
    metadata,
    sa.Column("feed_id", sa.String(200), primary_key=True),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("body_hash", sa.String(64)),
    sa.Column("last_poll_at", UTCDateTime),
    sa.Column("last_ok_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("polled_by", sa.String(64)),
)

feed_leases = sa.Table(
    "feed_leases",
    metadata,
    # With several instances: who polls a feed this interval. Expires on its own, so a
    # killed holder's feeds are taken over at the next interval.
    sa.Column("feed_id", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("until", UTCDateTime, nullable=False),
)

seen_entries = sa.Table(
    "seen_entries",
    metadata,
    sa.Column("feed_id", sa.String(200), primary_key=True),
    sa.Column("entry_key", sa.String(2000), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    # Kept so a `feed.entry.updated` alert can show what the title/summary was before.
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("summary", sa.Text, nullable=False, server_default=""),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Index("ix_seen_entries_last_seen", "feed_id", "last_seen_at"),
)

rules = sa.Table(
    "rules",
    metadata,
    sa.Column("rule_id", sa.String(200), primary_key=True),
    sa.Column("data", sa.JSON, nullable=False),
    # When the rule entered the stored calendar: transitions before it are not alerted
    # (the baseline or the `announced` alert already covers them).
    sa.Column("known_since", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("timestamp", UTCDateTime, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("origins", sa.JSON, nullable=False),
    sa.Column("hts", sa.JSON, nullable=False),
    sa.Column("text", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_events_created", "created_at"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.String(64), sa.ForeignKey("events.id"), nullable=False),
    sa.Column("subscriber_id", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    # Set for digest subscribers: the delivery waits for its digest instead of going alone.
    sa.Column("digest_at", UTCDateTime),
    # A claim by one worker; expires so a killed worker's deliveries return to the queue.
    sa.Column("claimed_until", UTCDateTime),
    sa.Column("claimed_by", sa.String(64)),
    sa.Index("ix_deliveries_due", "status", "next_at"),
    sa.Index("ix_deliveries_event", "event_id"),
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(64), sa.ForeignKey("deliveries.id"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text),
    sa.Index("ix_attempts_delivery", "delivery_id"),
)

gone_endpoints = sa.Table(
    "gone_endpoints",
    metadata,
    # 410 Gone stops deliveries to (subscriber, url) until the config changes.
    sa.Column("subscriber_id", sa.String(200), primary_key=True),
    sa.Column("url", sa.String(2000), primary_key=True),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

unsubscribes = sa.Table(
    "unsubscribes",
    metadata,
    # RFC 8058 one-click unsubscribe: this address of this subscriber gets nothing more.
    sa.Column("subscriber_id", sa.String(200), primary_key=True),
    sa.Column("target", sa.String(2000), primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
)

ledger = sa.Table(
    "ledger",
    metadata,
    # One row per delivery attempt, kept for `ledger_retention` (not `retention`): no
    # foreign keys, since it outlives the deliveries and events it tells about.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(64), nullable=False),
    sa.Column("event_id", sa.String(64)),
    sa.Column("event_type", sa.String(64)),
    sa.Column("subscriber_id", sa.String(200)),
    sa.Column("channel", sa.String(16)),
    # Masked: an http(s) target as scheme and host unless the caller gave a safe form.
    sa.Column("target", sa.Text),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text),  # the peer's answer ("HTTP 204", "250 2.0.0 Ok")
    sa.Column("sha256", sa.String(64)),  # of the exact bytes sent; None if nothing was
    sa.Index("ix_ledger_at", "at"),
    sa.Index("ix_ledger_delivery", "delivery_id"),
)

held_changes = sa.Table(
    "held_changes",
    metadata,
    # A poll that would have emitted more than `max_changes` events (CONTRACT "Trust"):
    # its events and the new state wait here for `sources release` or `sources discard`.
    sa.Column("source_id", sa.String(200), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("detected_at", UTCDateTime, nullable=False),
    sa.Column("would_emit", sa.JSON, nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("state", sa.JSON, nullable=False),
)
