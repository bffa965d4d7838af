"""Retention: what the store forgets, so a daemon that runs for years stays the same size.

- **Events** older than ``retention``, once none of their deliveries is still queued,
  go with their deliveries and attempts (the delivery log keeps ``retention`` of history).
  A calendar transition is remembered as sent by its event; ``retention`` is longer than
  ``late_limit`` (config.py checks it), so a forgotten one is too old to be sent again.
- **Feed entries** that left their feed more than ``retention`` before the feed's newest
  entry. Entries still in a feed are touched when the feed changes (``ENTRY_REFRESH``),
  so a quiet feed never loses them and never re-alerts them.
- **Feeds** no longer configured and not polled for ``retention``: their entries, state
  and lease. Added back later, a feed starts again from a silent baseline.
- **Ledger rows** (``ledger.py``) are not touched by any of that: they go only when older
  than ``ledger_retention`` (none given: kept), so the record of what was sent to whom
  outlives the deliveries.

Deletes go in batches, one short transaction each, so polls and deliveries that need the
writer (SQLite has one) wait for a batch, not for the whole pass. On PostgreSQL each batch
first takes an advisory lock: when several instances prune at once, one does the work and
the others stop, instead of queueing on (or deadlocking over) the same rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from notifier.store import schema as t
from notifier.store.dialect import RETENTION_LOCK

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from notifier.store import Store

__all__ = ["ENTRY_REFRESH", "Pruned", "prune"]

# How stale an entry's `last_seen_at` may get while it is still in its feed.
ENTRY_REFRESH = timedelta(days=1)
BATCH = 500


@dataclass(slots=True)
class Pruned:
    events: int = 0
    deliveries: int = 0
    attempts: int = 0
    entries: int = 0
    feeds: int = 0
    ledger: int = 0

    def total(self) -> int:
        return (
            self.events + self.deliveries + self.attempts + self.entries + self.feeds + self.ledger
        )

    def __str__(self) -> str:
        text = (
            f"{self.events} events, {self.deliveries} deliveries, {self.attempts} attempts, "
            f"{self.entries} feed entries, {self.feeds} removed feeds"
        )
        return text + (f", {self.ledger} ledger rows" if self.ledger else "")


async def prune(
    store: Store,
    *,
    now: datetime,
    retention: timedelta,
    feed_ids: Collection[str],
    ledger_retention: timedelta | None = None,
    batch: int = BATCH,
) -> Pruned:
    """Forget what is older than ``retention``, and ledger rows older than
    ``ledger_retention`` (see the module docstring)."""
    pruned = Pruned()
    await _prune_events(store, now - retention, batch, pruned)
    await _prune_entries(store, retention, batch, pruned)
    await _prune_feeds(store, now - retention, set(feed_ids), pruned)
    if ledger_retention is not None:
        await _prune_ledger(store, now - ledger_retention, batch, pruned)
    return pruned


async def _ours(store: Store, tx: AsyncConnection) -> bool:
    """Whether this transaction may prune (no other instance is pruning right now)."""
    return await store.dialect.try_advisory_lock(tx, RETENTION_LOCK)


async def _prune_events(store: Store, cutoff: datetime, batch: int, pruned: Pruned) -> None:
    ev, dl, at = t.events.c, t.deliveries.c, t.delivery_attempts.c
    still_queued = sa.exists().where((dl.event_id == ev.id) & (dl.status == "queued"))
    while True:
        async with store.transaction() as tx:
            if not await _ours(store, tx):
                return
            ids = list(
                (
                    await tx.execute(
                        sa.select(ev.id)
                        .where((ev.created_at < cutoff) & ~still_queued)
                        .order_by(ev.created_at)
                        .limit(batch)
                    )
                ).scalars()
            )
            if not ids:
                return
            of_events = sa.select(dl.id).where(dl.event_id.in_(ids)).scalar_subquery()
            result = await tx.execute(
                t.delivery_attempts.delete().where(at.delivery_id.in_(of_events))
            )
            pruned.attempts += result.rowcount
            result = await tx.execute(t.deliveries.delete().where(dl.event_id.in_(ids)))
            pruned.deliveries += result.rowcount
            result = await tx.execute(t.events.delete().where(ev.id.in_(ids)))
            pruned.events += result.rowcount
        await asyncio.sleep(0)  # let the writers waiting for the lock in between


async def _prune_entries(store: Store, retention: timedelta, batch: int, pruned: Pruned) -> None:
    c = t.seen_entries.c
    async with store.engine.connect() as conn:
        newest = (
            await conn.execute(
                sa.select(c.feed_id, sa.func.max(c.last_seen_at)).group_by(c.feed_id)
            )
        ).all()
    for feed_id, latest in newest:
        old = (c.feed_id == feed_id) & (c.last_seen_at < latest - retention)
        while True:
            # Found on a read connection: a feed with nothing to forget takes no write lock.
            async with store.engine.connect() as conn:
                keys = list(
                    (await conn.execute(sa.select(c.entry_key).where(old).limit(batch))).scalars()
                )
            if not keys:
                break
            async with store.transaction() as tx:
                if not await _ours(store, tx):
                    return
                # `old` again: an entry its feed showed again since the read is kept.
                result = await tx.execute(
                    t.seen_entries.delete().where(old & c.entry_key.in_(keys))
                )
                pruned.entries += result.rowcount
            if len(keys) < batch:
                break
            await asyncio.sleep(0)


async def _prune_feeds(
    store: Store, cutoff: datetime, configured: set[str], pruned: Pruned
) -> None:
    fs, se = t.feed_state.c, t.seen_entries.c
    async with store.engine.connect() as conn:
        known = set((await conn.execute(sa.select(se.feed_id).distinct())).scalars()) | set(
            (await conn.execute(sa.select(fs.feed_id))).scalars()
        )
        recent = set(
            (await conn.execute(sa.select(fs.feed_id).where(fs.last_poll_at >= cutoff))).scalars()
        )
    for feed_id in sorted(known - configured - recent):
        async with store.transaction() as tx:
            if not await _ours(store, tx):
                return
            await tx.execute(t.seen_entries.delete().where(se.feed_id == feed_id))
            await tx.execute(t.feed_leases.delete().where(t.feed_leases.c.feed_id == feed_id))
            await tx.execute(t.feed_state.delete().where(fs.feed_id == feed_id))
        pruned.feeds += 1


async def _prune_ledger(store: Store, cutoff: datetime, batch: int, pruned: Pruned) -> None:
    c = t.ledger.c
    while True:
        async with store.transaction() as tx:
            if not await _ours(store, tx):
                return
            ids = list(
                (
                    await tx.execute(
                        sa.select(c.id).where(c.at < cutoff).order_by(c.at).limit(batch)
                    )
                ).scalars()
            )
            if not ids:
                return
            result = await tx.execute(t.ledger.delete().where(c.id.in_(ids)))
            pruned.ledger += result.rowcount
        if len(ids) < batch:
            return
        await asyncio.sleep(0)
