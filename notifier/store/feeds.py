"""Feeds: poll state, the entries seen in each feed, and feed leases (several instances)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.core.decide import HealthView
from notifier.core.model import Entry
from notifier.store import feeds_sql
from notifier.store import schema as t
from notifier.store.engine import READ, WRITE, Connector, guarded, in_chunks
from notifier.store.retention import ENTRY_REFRESH

__all__ = ["FeedQueries", "FeedState", "UnchangedPoll", "health_view"]


@dataclass(frozen=True, slots=True)
class FeedState:
    feed_id: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    last_poll_at: datetime | None
    last_ok_at: datetime | None
    last_error: str | None
    failures: int
    polled_by: str | None = None


def health_view(state: FeedState | None) -> HealthView:
    """What the source-health decisions read of a feed's stored state (none yet: healthy)."""
    if state is None:
        return HealthView(failures=0, last_ok_at=None, first_seen_at=None, last_error=None)
    return HealthView(
        failures=state.failures,
        last_ok_at=state.last_ok_at,
        first_seen_at=state.last_ok_at,
        last_error=state.last_error,
    )


@dataclass(frozen=True, slots=True)
class UnchangedPoll:
    """A successful poll that found nothing new (304, or the same body)."""

    feed_id: str
    at: datetime
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    polled_by: str | None


class FeedQueries(Connector):
    """``feed_state``, ``seen_entries`` and ``feed_leases``."""

    @guarded(READ)
    async def feed_state(self, feed_id: str) -> FeedState | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(t.feed_state).where(t.feed_state.c.feed_id == feed_id))
            ).first()
        return FeedState(**row._mapping) if row is not None else None

    @guarded(READ)
    async def feed_states(self) -> dict[str, FeedState]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.feed_state))).all()
        return {r.feed_id: FeedState(**r._mapping) for r in rows}

    @guarded(READ)
    async def seen_entries(
        self, feed_id: str, keys: Iterable[str] | None = None
    ) -> dict[str, tuple[str, str, str]]:
        """Entry key -> (content hash, title, summary) of what was seen in a feed: of the
        entries ``keys`` when given (a poll needs only those, however long the feed's
        history), else of all of them."""
        async with self.engine.connect() as conn:
            return await feeds_sql.seen_entries(conn, self.dialect, feed_id, keys)

    @guarded(WRITE)
    async def record_poll(
        self,
        conn: AsyncConnection,
        feed_id: str,
        *,
        now: datetime,
        error: str | None,
        etag: str | None = None,
        last_modified: str | None = None,
        body_hash: str | None = None,
        polled_by: str | None = None,
    ) -> int:
        """Record a poll's outcome; returns the feed's consecutive failure count."""
        failures = await feeds_sql.poll_failures(conn, self.dialect, feed_id)
        values: list[tuple[str, Any]] = [("last_poll_at", now), ("polled_by", polled_by)]
        if error is None:
            count = 0
            values += [("last_ok_at", now), ("last_error", None), ("failures", 0)]
            if etag is not None or last_modified is not None or body_hash is not None:
                values += [("etag", etag), ("last_modified", last_modified)]
                values += [("body_hash", body_hash)]
        else:
            count = (failures or 0) + 1
            values += [("last_error", error), ("failures", count)]
        await feeds_sql.save_poll(conn, self.dialect, feed_id, values, known=failures is not None)
        return count

    @guarded(WRITE)
    async def record_unchanged_polls(self, polls: Sequence[UnchangedPoll]) -> None:
        """Record many unchanged polls of known feeds in one transaction."""
        c = t.feed_state.c
        update = (
            t.feed_state.update()
            .where(c.feed_id == sa.bindparam("b_feed"))
            .values(
                last_poll_at=sa.bindparam("b_at"),
                last_ok_at=sa.bindparam("b_at"),
                last_error=None,
                failures=0,
                etag=sa.bindparam("b_etag"),
                last_modified=sa.bindparam("b_lm"),
                body_hash=sa.bindparam("b_hash"),
                polled_by=sa.bindparam("b_by"),
            )
        )
        async with self.transaction() as conn:
            await conn.execute(
                update,
                [
                    {
                        "b_feed": p.feed_id,
                        "b_at": p.at,
                        "b_etag": p.etag,
                        "b_lm": p.last_modified,
                        "b_hash": p.body_hash,
                        "b_by": p.polled_by,
                    }
                    for p in polls
                ],
            )

    @guarded(WRITE)
    async def remember_entries(
        self, conn: AsyncConnection, feed_id: str, entries: Iterable[Entry], *, now: datetime
    ) -> None:
        """Upsert the content hash (and title/summary) of each new or changed entry."""
        await feeds_sql.remember_entries(conn, self.dialect, feed_id, entries, now)

    @guarded(WRITE)
    async def touch_entries(
        self, conn: AsyncConnection, feed_id: str, keys: Iterable[str], *, now: datetime
    ) -> None:
        """Mark entries as still in their feed (at most once per ``ENTRY_REFRESH``), so
        retention never forgets an entry its feed still carries."""
        await feeds_sql.touch_entries(
            conn, self.dialect, feed_id, keys, now=now, refresh=ENTRY_REFRESH
        )

    async def forget_entries(
        self, conn: AsyncConnection, feed_id: str, keys: Iterable[str]
    ) -> None:
        """Drop entries that left a source whose removals are events (schedule lines)."""
        c = t.seen_entries.c
        for chunk in in_chunks(keys):
            await conn.execute(
                t.seen_entries.delete().where((c.feed_id == feed_id) & c.entry_key.in_(chunk))
            )

    @guarded(WRITE)
    async def take_feed_lease(
        self, feed_id: str, *, holder: str, now: datetime, duration: timedelta
    ) -> bool:
        """Take the right to poll a feed until ``now + duration``.

        True for exactly one instance per lease period. The holder gets no preference
        when it expires: whichever instance comes first polls the next interval, so the
        work spreads over the instances and a dead holder is simply never first again.
        """
        c = t.feed_leases.c
        async with self.transaction() as conn:
            renewed = await conn.execute(
                t.feed_leases.update()
                .where((c.feed_id == feed_id) & (c.until <= now))
                .values(holder=holder, until=now + duration)
            )
            if renewed.rowcount == 1:
                return True
            created = await conn.execute(
                self.dialect.insert_ignore(t.feed_leases, "feed_id").values(
                    feed_id=feed_id, holder=holder, until=now + duration
                )
            )
            return bool(created.rowcount == 1)

    @guarded(READ)
    async def feed_lease_holders(self) -> dict[str, str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(t.feed_leases))
            return {r.feed_id: r.holder for r in rows}
