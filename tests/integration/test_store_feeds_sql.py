"""A poll's driver statements (``store/feeds_sql.py``), on SQLite and PostgreSQL: what
they save reads back through SQLAlchemy as the Core statements wrote it."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from notifier.core.model import Entry
from notifier.store import Store
from notifier.store import schema as t
from notifier.store.retention import ENTRY_REFRESH
from tests.samples import STORE_NOW as NOW


def entry(n: int, *, version: str = "a") -> Entry:
    return Entry(
        key=f"https://feeds.example.test/{n}",
        title=f"Notice {n} ({version}) – über",
        link=f"https://feeds.example.test/{n}",
        published=None,
        summary=f"Duties on steel, version {version}",
        content_hash=f"{n}-{version}",
    )


async def seen_at(store: Store) -> dict[str, tuple[object, object]]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.select(t.seen_entries).where(t.seen_entries.c.feed_id == "f"))
        return {r.entry_key: (r.first_seen_at, r.last_seen_at) for r in rows}


async def test_entries_remembered_read_back_and_a_change_keeps_the_first_seen_time(
    store: Store,
) -> None:
    later = NOW + timedelta(hours=1, microseconds=7)
    async with store.transaction() as tx:
        await store.remember_entries(tx, "f", [entry(1), entry(2), entry(1)], now=NOW)
    async with store.transaction() as tx:
        await store.remember_entries(tx, "f", [entry(2, version="b"), entry(3)], now=later)

    assert await store.seen_entries("f") == {
        entry(1).key: ("1-a", entry(1).title, entry(1).summary),
        entry(2).key: ("2-b", entry(2, version="b").title, entry(2, version="b").summary),
        entry(3).key: ("3-a", entry(3).title, entry(3).summary),
    }
    assert set(await store.seen_entries("f", [entry(3).key, "unknown"])) == {entry(3).key}
    assert await store.seen_entries("other") == {}
    times = await seen_at(store)
    assert times[entry(1).key] == (NOW, NOW)
    assert times[entry(2).key] == (NOW, later)  # changed: first seen stays
    # Many keys: the IN lists are chunked; each key is asked once.
    many = [entry(n).key for n in range(1200)]
    assert set(await store.seen_entries("f", many)) == {entry(n).key for n in (1, 2, 3)}


async def test_touch_refreshes_only_entries_last_marked_before_the_refresh(store: Store) -> None:
    old = NOW - ENTRY_REFRESH - timedelta(seconds=1)
    async with store.transaction() as tx:
        await store.remember_entries(tx, "f", [entry(1)], now=old)
        await store.remember_entries(tx, "f", [entry(2)], now=NOW - timedelta(hours=1))
    async with store.transaction() as tx:
        await store.touch_entries(tx, "f", [entry(1).key, entry(2).key], now=NOW)
    times = await seen_at(store)
    assert times[entry(1).key] == (old, NOW)
    assert times[entry(2).key] == (NOW - timedelta(hours=1),) * 2


async def test_poll_outcomes_count_failures_and_keep_validators(store: Store) -> None:
    async with store.transaction() as tx:
        assert await store.record_poll(tx, "f", now=NOW, error="HTTP 503") == 1
    async with store.transaction() as tx:
        assert await store.record_poll(tx, "f", now=NOW, error="HTTP 503") == 2
    state = await store.feed_state("f")
    assert state is not None and state.failures == 2 and state.last_error == "HTTP 503"
    assert state.last_ok_at is None and state.last_poll_at == NOW
    ok_at = NOW + timedelta(minutes=5)
    async with store.transaction() as tx:
        count = await store.record_poll(
            tx, "f", now=ok_at, error=None, etag='"v1"', body_hash="h", polled_by="w1"
        )
    assert count == 0
    state = await store.feed_state("f")
    assert state is not None
    assert (state.failures, state.last_error, state.last_ok_at) == (0, None, ok_at)
    assert (state.etag, state.last_modified, state.body_hash, state.polled_by) == (
        '"v1"',
        None,
        "h",
        "w1",
    )
    async with store.transaction() as tx:  # no validators this time: the old ones stay
        await store.record_poll(tx, "f", now=ok_at, error=None)
    state = await store.feed_state("f")
    assert state is not None and state.etag == '"v1"' and state.body_hash == "h"
    async with store.transaction() as tx:  # a first poll that succeeds creates the row
        assert await store.record_poll(tx, "g", now=NOW, error=None, etag="e") == 0
    state = await store.feed_state("g")
    assert state is not None and state.etag == "e" and state.last_ok_at == NOW
