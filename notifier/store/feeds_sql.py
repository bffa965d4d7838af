"""A poll's hot statements as driver SQL: the entries seen before, and what a poll saves.

Each changed feed costs a poll a read of the entries it carries and, in the poll's
transaction, its state, its new or changed entries and the refresh of the others. Built
with SQLAlchemy Core, each of those statements was constructed and its parameters
processed in Python per poll (~1 ms of the event loop per statement, which a pass of 200
changed feeds pays ~1,000 times). As in ``store/queue_sql.py``, they are written once
with ``?`` placeholders and run straight on the driver (``Dialect.execute_many`` and
``Dialect.fetch_all``) on values already in the driver's types (``Dialect.db_time``).
The same SQL runs on SQLite and PostgreSQL (``ON CONFLICT … DO UPDATE`` with
``excluded``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.core.model import Entry
from notifier.store.dialect import Dialect
from notifier.store.engine import in_chunks

__all__ = ["poll_failures", "remember_entries", "save_poll", "seen_entries", "touch_entries"]

_SEEN = "SELECT entry_key, content_hash, title, summary FROM seen_entries WHERE feed_id = ?"

_REMEMBER = (
    "INSERT INTO seen_entries (feed_id, entry_key, content_hash, title, summary, "
    "first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (feed_id, entry_key) DO UPDATE SET content_hash = excluded.content_hash, "
    "title = excluded.title, summary = excluded.summary, last_seen_at = excluded.last_seen_at"
)

_TOUCH = (
    "UPDATE seen_entries SET last_seen_at = ? "
    "WHERE feed_id = ? AND last_seen_at < ? AND entry_key IN ({marks})"
)

_FAILURES = "SELECT failures FROM feed_state WHERE feed_id = ?"

#: A poll's outcome: (column, value) pairs, the feed's id last.
_SAVE = "UPDATE feed_state SET {columns} WHERE feed_id = ?"
_CREATE = "INSERT INTO feed_state ({columns}) VALUES ({marks}) ON CONFLICT (feed_id) DO NOTHING"


def _marks(count: int) -> str:
    return ", ".join("?" * count)


async def seen_entries(
    conn: AsyncConnection, dialect: Dialect, feed_id: str, keys: Iterable[str] | None
) -> dict[str, tuple[str, str, str]]:
    """Entry key -> (content hash, title, summary) of the feed's entries ``keys`` (all
    of them when None)."""
    found: dict[str, tuple[str, str, str]] = {}
    if keys is None:
        batches: list[tuple[str, list[Any]]] = [(_SEEN, [feed_id])]
    else:
        batches = [
            (f"{_SEEN} AND entry_key IN ({_marks(len(chunk))})", [feed_id, *chunk])
            for chunk in in_chunks(keys)
        ]
    for sql, params in batches:
        for key, content_hash, title, summary in await dialect.fetch_all(conn, sql, params):
            found[key] = (content_hash, title, summary)
    return found


async def remember_entries(
    conn: AsyncConnection, dialect: Dialect, feed_id: str, entries: Iterable[Entry], now: datetime
) -> None:
    """Upsert each entry's content hash, title and summary (its first-seen time stays)."""
    at = dialect.db_time(now)
    rows = [
        (feed_id, entry.key, entry.content_hash, entry.title, entry.summary, at, at)
        for entry in {e.key: e for e in entries}.values()
    ]
    if rows:
        await dialect.execute_many(conn, _REMEMBER, rows)


async def touch_entries(
    conn: AsyncConnection,
    dialect: Dialect,
    feed_id: str,
    keys: Iterable[str],
    *,
    now: datetime,
    refresh: timedelta,
) -> None:
    """``last_seen_at = now`` for the entries ``keys`` last marked before ``now -
    refresh``."""
    at, before = dialect.db_time(now), dialect.db_time(now - refresh)
    for chunk in in_chunks(keys):
        sql = _TOUCH.format(marks=_marks(len(chunk)))
        await dialect.execute_many(conn, sql, [(at, feed_id, before, *chunk)])


async def poll_failures(conn: AsyncConnection, dialect: Dialect, feed_id: str) -> int | None:
    """The feed's consecutive failures so far; None for a feed never polled."""
    rows = await dialect.fetch_all(conn, _FAILURES, [feed_id])
    return int(rows[0][0]) if rows else None


async def save_poll(
    conn: AsyncConnection,
    dialect: Dialect,
    feed_id: str,
    values: Sequence[tuple[str, Any]],
    *,
    known: bool,
) -> None:
    """Write a poll's ``(column, value)`` pairs into the feed's state row (datetimes
    converted here); ``known``: whether the row exists."""
    names = [name for name, _ in values]
    row = [dialect.db_time(v) if isinstance(v, datetime) else v for _, v in values]
    if known:
        columns = ", ".join(f"{name} = ?" for name in names)
        await dialect.execute_many(conn, _SAVE.format(columns=columns), [(*row, feed_id)])
    else:
        columns = ", ".join(["feed_id", *names])
        sql = _CREATE.format(columns=columns, marks=_marks(len(names) + 1))
        await dialect.execute_many(conn, sql, [(feed_id, *row)])
