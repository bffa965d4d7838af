"""The state store: one seam for SQLite and PostgreSQL.

Queries are named methods; write transactions are explicit (``async with
store.transaction() as tx``) so that a state change, the events it produces and their
deliveries commit together (transactional outbox) or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from notifier.core.model import Delivery, Entry, Event, Rule
from notifier.errors import StoreError
from notifier.store import schema as t
from notifier.store.retention import ENTRY_REFRESH, Pruned, prune

__all__ = ["AttemptRecord", "FeedState", "Pruned", "Store", "UnchangedPoll"]

SCHEMA_VERSION = "1"
DIGEST_LOCK = 0x7461726966  # pg advisory lock key for digest claims ("tarif")
MIGRATION_LOCK = 0x74617269  # pg advisory lock key for schema migrations
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


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


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One finished attempt and the delivery's state after it."""

    delivery_id: str
    at: datetime
    outcome: str
    status: str
    attempts: int
    next_at: datetime | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class UnchangedPoll:
    """A successful poll that found nothing new (304, or the same body)."""

    feed_id: str
    at: datetime
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    polled_by: str | None


def async_url(url: str) -> str:
    """Map a user-facing SQLAlchemy URL to its asyncio driver."""
    if url.startswith("sqlite:///") or url == "sqlite://":
        return "sqlite+aiosqlite" + url[len("sqlite") :]
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///") :])
    return None


def _delivery_from_row(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        event_id=row.event_id,
        subscriber_id=row.subscriber_id,
        channel=row.channel,
        target=row.target,
        status=row.status,
        attempts=row.attempts,
        next_at=row.next_at,
        created_at=row.created_at,
        last_error=row.last_error,
        sent_at=row.sent_at,
        digest_at=row.digest_at,
    )


def _event_from_row(row: Any) -> Event:
    return Event(
        id=row.id,
        type=row.type,
        timestamp=row.timestamp,
        data=row.data,
        origins=tuple(row.origins),
        hts=tuple(row.hts),
        text=row.text,
    )


class Store:
    """Async access to the state database."""

    def __init__(self, engine: AsyncEngine, *, url: str) -> None:
        self.engine = engine
        self.url = url
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()

    # --- lifecycle ---------------------------------------------------------------------

    @classmethod
    async def open(cls, url: str, *, create: bool = True) -> Store:
        """Open (and on first start create) the store at a SQLAlchemy URL."""
        path = _sqlite_path(url)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create state folder {path.parent}: {exc}") from None
            if path.parent.exists() and not os.access(path.parent, os.W_OK):
                raise StoreError(f"state folder {path.parent} is not writable")
        engine = create_async_engine(async_url(url), pool_pre_ping=path is None)
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)
        store = cls(engine, url=url)
        try:
            if create:
                await store.migrate()
                async with store.transaction() as conn:
                    await store._init_meta(conn)
        except (OperationalError, DBAPIError, OSError) as exc:
            await engine.dispose()
            raise StoreError(f"cannot open state store: {_short(exc)}") from None
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic (a new database starts at 0001).

        On PostgreSQL an advisory lock serialises instances that start together.
        """
        async with self.engine.connect() as conn:
            await conn.run_sync(_run_migrations, revision)
            await conn.commit()

    async def schema_revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite: one writer, no upgrade races).

        SQLite has one writer: in this process, writers queue on an asyncio lock instead
        of on SQLite's busy timeout, which a burst of concurrent polls would outlast.
        """
        lock = self._write_lock if self.is_sqlite else contextlib.nullcontext()
        try:
            async with lock, self.engine.connect() as conn:
                await conn.execution_options(notifier_write=True)
                async with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise StoreError(f"state store write failed: {_short(exc)}") from None

    async def _init_meta(self, conn: AsyncConnection) -> None:
        existing = await conn.scalar(sa.select(t.meta.c.value).where(t.meta.c.key == "schema"))
        if existing is None:
            await conn.execute(
                self._insert_ignore(t.meta, "key"),
                [
                    {"key": "schema", "value": SCHEMA_VERSION},
                    {"key": "unsubscribe_secret", "value": secrets.token_urlsafe(32)},
                ],
            )

    # --- meta --------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.scalar(sa.select(t.meta.c.value).where(t.meta.c.key == key))

    async def set_meta(self, conn: AsyncConnection, key: str, value: str) -> None:
        created = await conn.execute(
            self._insert_ignore(t.meta, "key").values(key=key, value=value)
        )
        if created.rowcount == 0:
            await conn.execute(t.meta.update().where(t.meta.c.key == key).values(value=value))

    # --- feeds -------------------------------------------------------------------------

    async def feed_state(self, feed_id: str) -> FeedState | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(t.feed_state).where(t.feed_state.c.feed_id == feed_id))
            ).first()
        return FeedState(**row._mapping) if row is not None else None

    async def feed_states(self) -> dict[str, FeedState]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.feed_state))).all()
        return {r.feed_id: FeedState(**r._mapping) for r in rows}

    async def seen_entries(
        self, feed_id: str, keys: Iterable[str] | None = None
    ) -> dict[str, tuple[str, str, str]]:
        """Entry key -> (content hash, title, summary) of what was seen in a feed: of the
        entries ``keys`` when given (a poll needs only those, however long the feed's
        history), else of all of them."""
        c = t.seen_entries.c
        query = sa.select(c.entry_key, c.content_hash, c.title, c.summary).where(
            c.feed_id == feed_id
        )
        queries = (
            [query]
            if keys is None
            else [query.where(c.entry_key.in_(chunk)) for chunk in in_chunks(keys)]
        )
        found: dict[str, tuple[str, str, str]] = {}
        async with self.engine.connect() as conn:
            for chunk_query in queries:
                for r in await conn.execute(chunk_query):
                    found[r.entry_key] = (r.content_hash, r.title, r.summary)
        return found

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
        current = (
            await conn.execute(sa.select(t.feed_state).where(t.feed_state.c.feed_id == feed_id))
        ).first()
        values: dict[str, Any] = {"last_poll_at": now, "polled_by": polled_by}
        if error is None:
            values.update(last_ok_at=now, last_error=None, failures=0)
            if etag is not None or last_modified is not None or body_hash is not None:
                values.update(etag=etag, last_modified=last_modified, body_hash=body_hash)
        else:
            values.update(last_error=error, failures=(current.failures if current else 0) + 1)
        if current is None:
            await conn.execute(
                self._insert_ignore(t.feed_state, "feed_id").values(feed_id=feed_id, **values)
            )
        else:
            await conn.execute(
                t.feed_state.update().where(t.feed_state.c.feed_id == feed_id).values(**values)
            )
        return int(values.get("failures", 0))

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

    async def remember_entries(
        self, conn: AsyncConnection, feed_id: str, entries: Iterable[Entry], *, now: datetime
    ) -> None:
        """Upsert the content hash (and title/summary) of each new or changed entry."""
        rows = [
            {
                "feed_id": feed_id,
                "entry_key": entry.key,
                "content_hash": entry.content_hash,
                "title": entry.title,
                "summary": entry.summary,
                "first_seen_at": now,
                "last_seen_at": now,
            }
            for entry in {e.key: e for e in entries}.values()
        ]
        if not rows:
            return
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = sqlite if self.is_sqlite else postgresql
        insert = dialect.insert(t.seen_entries)
        upsert = insert.on_conflict_do_update(
            index_elements=["feed_id", "entry_key"],
            set_={
                "content_hash": insert.excluded.content_hash,
                "title": insert.excluded.title,
                "summary": insert.excluded.summary,
                "last_seen_at": insert.excluded.last_seen_at,
            },
        )
        await conn.execute(upsert, rows)

    async def touch_entries(
        self, conn: AsyncConnection, feed_id: str, keys: Iterable[str], *, now: datetime
    ) -> None:
        """Mark entries as still in their feed (at most once per ``ENTRY_REFRESH``), so
        retention never forgets an entry its feed still carries."""
        c = t.seen_entries.c
        for chunk in in_chunks(keys):
            await conn.execute(
                t.seen_entries.update()
                .where(
                    (c.feed_id == feed_id)
                    & c.entry_key.in_(chunk)
                    & (c.last_seen_at < now - ENTRY_REFRESH)
                )
                .values(last_seen_at=now)
            )

    async def prune(
        self, *, now: datetime, retention: timedelta, feed_ids: Iterable[str]
    ) -> Pruned:
        """Forget old events, delivery logs and feed entries (notifier/store/retention.py)."""
        return await prune(self, now=now, retention=retention, feed_ids=set(feed_ids))

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
                self._insert_ignore(t.feed_leases, "feed_id").values(
                    feed_id=feed_id, holder=holder, until=now + duration
                )
            )
            return bool(created.rowcount == 1)

    async def feed_lease_holders(self) -> dict[str, str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(t.feed_leases))
            return {r.feed_id: r.holder for r in rows}

    # --- calendar ----------------------------------------------------------------------

    async def known_rules(self) -> dict[str, tuple[Rule, datetime]]:
        """The last stored calendar: rule id -> (rule, known since)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(t.rules))
            return {r.rule_id: (Rule.from_dict(r.data), r.known_since) for r in rows}

    async def save_rules(
        self, conn: AsyncConnection, current: Sequence[Rule], *, now: datetime
    ) -> None:
        """Make the stored calendar equal ``current``, keeping each rule's ``known_since``."""
        known = {
            r.rule_id: r.data
            for r in await conn.execute(sa.select(t.rules.c.rule_id, t.rules.c.data))
        }
        wanted = {rule.id: rule for rule in current}
        gone = set(known) - set(wanted)
        if gone:
            await conn.execute(t.rules.delete().where(t.rules.c.rule_id.in_(gone)))
        for rule_id, rule in wanted.items():
            data = rule.to_dict()
            if rule_id not in known:
                await conn.execute(
                    self._insert_ignore(t.rules, "rule_id").values(
                        rule_id=rule_id, data=data, known_since=now, updated_at=now
                    )
                )
            elif known[rule_id] != data:
                await conn.execute(
                    t.rules.update()
                    .where(t.rules.c.rule_id == rule_id)
                    .values(data=data, updated_at=now)
                )

    # --- events and the outbox ---------------------------------------------------------

    async def emitted(self, event_ids: Iterable[str]) -> set[str]:
        found: set[str] = set()
        async with self.engine.connect() as conn:
            for chunk in in_chunks(event_ids):
                rows = await conn.execute(sa.select(t.events.c.id).where(t.events.c.id.in_(chunk)))
                found.update(r.id for r in rows)
        return found

    async def emit(
        self,
        conn: AsyncConnection,
        event: Event,
        deliveries: Sequence[Delivery],
        *,
        now: datetime,
    ) -> bool:
        """Insert an event and its deliveries unless the event exists. True if inserted."""
        return bool(await self.emit_many(conn, [(event, deliveries)], now=now))

    async def emit_many(
        self,
        conn: AsyncConnection,
        planned: Sequence[tuple[Event, Sequence[Delivery]]],
        *,
        now: datetime,
    ) -> list[Event]:
        """Insert the events not stored yet, with their deliveries; returns those events.

        Insert-if-absent on the event id (``ON CONFLICT DO NOTHING``), and the same on
        the deliveries' derived ids: two instances that see the same change at once emit
        it once, and neither transaction fails. A few statements per batch, however many
        events (a feed with 20 new entries is one round trip for its events, one for its
        deliveries).
        """
        if not planned:
            return []
        wanted = padded(list(dict.fromkeys(event.id for event, _ in planned)))
        existing = {
            row.id
            for row in await conn.execute(sa.select(t.events.c.id).where(t.events.c.id.in_(wanted)))
        }
        fresh = [(e, ds) for e, ds in planned if e.id not in existing]
        if not fresh:
            return []
        await conn.execute(
            self._insert_ignore(t.events, "id"),
            [
                {
                    "id": event.id,
                    "type": event.type,
                    "timestamp": event.timestamp,
                    "data": dict(event.data),
                    "origins": list(event.origins),
                    "hts": list(event.hts),
                    "text": event.text,
                    "created_at": now,
                }
                for event, _ in fresh
            ],
        )
        rows = [
            {
                "id": d.id,
                "event_id": d.event_id,
                "subscriber_id": d.subscriber_id,
                "channel": d.channel,
                "target": d.target,
                "status": d.status,
                "attempts": d.attempts,
                "next_at": d.next_at,
                "created_at": d.created_at,
                "updated_at": d.created_at,
                "digest_at": d.digest_at,
            }
            for _, deliveries in fresh
            for d in deliveries
        ]
        if rows:
            await conn.execute(self._insert_ignore(t.deliveries, "id"), rows)
        return [event for event, _ in fresh]

    def _insert_ignore(self, table: sa.Table, *keys: str) -> Any:
        """``INSERT … ON CONFLICT (keys) DO NOTHING`` in this backend's dialect."""
        from sqlalchemy.dialects import postgresql, sqlite

        if self.is_sqlite:
            return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))

    async def events_by_id(self, ids: Iterable[str]) -> dict[str, Event]:
        out: dict[str, Event] = {}
        async with self.engine.connect() as conn:
            for chunk in in_chunks(ids):
                rows = await conn.execute(sa.select(t.events).where(t.events.c.id.in_(chunk)))
                out.update({r.id: _event_from_row(r) for r in rows})
        return out

    async def claim_due(
        self,
        *,
        now: datetime,
        limit: int,
        worker: str,
        lease: timedelta,
        digest: bool = False,
    ) -> list[Delivery]:
        """Claim up to ``limit`` due deliveries for this worker (a lease that expires).

        PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so concurrent instances never take the
        same row. SQLite: the single writer lock serialises claims.
        """
        due = (
            (t.deliveries.c.status == "queued")
            & (t.deliveries.c.next_at <= now)
            & ((t.deliveries.c.claimed_until.is_(None)) | (t.deliveries.c.claimed_until < now))
        )
        due &= (
            t.deliveries.c.digest_at.is_not(None) if digest else t.deliveries.c.digest_at.is_(None)
        )
        pick = sa.select(t.deliveries.c.id).where(due).order_by(t.deliveries.c.next_at).limit(limit)
        if not self.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        async with self.transaction() as conn:
            if digest and not self.is_sqlite:
                # A digest is one email for a whole group of rows: let one instance at a
                # time claim digests, so a group is never split between two senders.
                got = await conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(DIGEST_LOCK)))
                if not got:
                    return []
            ids = [r.id for r in await conn.execute(pick)]
            if not ids:
                return []
            await conn.execute(
                t.deliveries.update()
                .where(t.deliveries.c.id.in_(padded(ids)))
                .values(claimed_until=now + lease, claimed_by=worker)
            )
            rows = await conn.execute(
                sa.select(t.deliveries).where(t.deliveries.c.id.in_(padded(ids)))
            )
            return sorted((_delivery_from_row(r) for r in rows), key=lambda d: ids.index(d.id))

    async def next_due_at(self) -> datetime | None:
        """When the earliest queued delivery (digests included) becomes due."""
        async with self.engine.connect() as conn:
            due: datetime | None = await conn.scalar(
                sa.select(sa.func.min(t.deliveries.c.next_at)).where(
                    t.deliveries.c.status == "queued"
                )
            )
            return due

    async def record_attempts(self, records: Sequence[AttemptRecord]) -> None:
        """Log attempts and move their deliveries to their new status, releasing the
        claims, all in one transaction (a batch of finished attempts costs one commit)."""
        if not records:
            return
        c = t.deliveries.c
        update = (
            t.deliveries.update()
            .where(c.id == sa.bindparam("b_id"))
            .values(
                status=sa.bindparam("b_status"),
                attempts=sa.bindparam("b_attempts"),
                next_at=sa.bindparam("b_next_at"),
                updated_at=sa.bindparam("b_now"),
                last_error=sa.bindparam("b_error"),
                sent_at=sa.bindparam("b_sent_at"),
                claimed_until=None,
                claimed_by=None,
            )
        )
        async with self.transaction() as conn:
            await conn.execute(
                update,
                [
                    {
                        "b_id": r.delivery_id,
                        "b_status": r.status,
                        "b_attempts": r.attempts,
                        "b_next_at": r.next_at,
                        "b_now": r.at,
                        "b_error": r.detail if r.outcome != "sent" else None,
                        "b_sent_at": r.at if r.outcome == "sent" else None,
                    }
                    for r in records
                ],
            )
            await conn.execute(
                t.delivery_attempts.insert(),
                [
                    {
                        "delivery_id": r.delivery_id,
                        "attempt": r.attempts,
                        "at": r.at,
                        "outcome": r.outcome,
                        "detail": r.detail,
                    }
                    for r in records
                ],
            )

    async def release_claims(self, worker: str) -> None:
        """Return this worker's claimed deliveries to the queue (clean shutdown)."""
        async with self.transaction() as conn:
            await conn.execute(
                t.deliveries.update()
                .where(t.deliveries.c.claimed_by == worker)
                .values(claimed_until=None, claimed_by=None)
            )

    async def release_all_claims(self) -> None:
        """Drop every claim (single-instance SQLite start: no other worker can hold one)."""
        async with self.transaction() as conn:
            await conn.execute(
                t.deliveries.update()
                .where(t.deliveries.c.claimed_by.is_not(None))
                .values(claimed_until=None, claimed_by=None)
            )

    async def list_deliveries(
        self, *, status: str | None = None, limit: int = 1000
    ) -> list[tuple[Delivery, str]]:
        """The delivery log, newest first, with each delivery's event type."""
        query = (
            sa.select(t.deliveries, t.events.c.type.label("event_type"))
            .join(t.events, t.events.c.id == t.deliveries.c.event_id)
            .order_by(t.deliveries.c.created_at.desc(), t.deliveries.c.id)
            .limit(limit)
        )
        if status:
            query = query.where(t.deliveries.c.status == status)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [(_delivery_from_row(r), r.event_type) for r in rows]

    async def requeue(self, delivery_ids: Sequence[str], *, now: datetime) -> list[str]:
        """Re-queue dead (or failed) deliveries; returns the ids that were re-queued."""
        async with self.transaction() as conn:
            rows = await conn.execute(
                sa.select(t.deliveries.c.id).where(
                    t.deliveries.c.id.in_(list(delivery_ids))
                    & t.deliveries.c.status.in_(["dead", "failed"])
                )
            )
            ids = [r.id for r in rows]
            if ids:
                await conn.execute(
                    t.deliveries.update()
                    .where(t.deliveries.c.id.in_(ids))
                    .values(status="queued", attempts=0, next_at=now, updated_at=now)
                )
            return ids

    async def counts(self) -> dict[str, int]:
        """Deliveries per status (queue depth, dead letters) for health and metrics."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(t.deliveries.c.status, sa.func.count()).group_by(t.deliveries.c.status)
            )
            return {status: int(n) for status, n in rows}

    async def attempts_of(self, delivery_id: str) -> list[Mapping[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(t.delivery_attempts)
                .where(t.delivery_attempts.c.delivery_id == delivery_id)
                .order_by(t.delivery_attempts.c.id)
            )
            return [dict(r._mapping) for r in rows]

    async def mark_gone(
        self, subscriber_id: str, url: str, *, config_hash: str, now: datetime
    ) -> None:
        async with self.transaction() as tx:
            await tx.execute(
                t.gone_endpoints.delete().where(
                    (t.gone_endpoints.c.subscriber_id == subscriber_id)
                    & (t.gone_endpoints.c.url == url)
                )
            )
            await tx.execute(
                t.gone_endpoints.insert().values(
                    subscriber_id=subscriber_id, url=url, config_hash=config_hash, at=now
                )
            )

    async def unsubscribe(self, subscriber_id: str, target: str, *, now: datetime) -> int:
        """Record an unsubscribe and fail what is still queued for it; returns that count."""
        c = t.deliveries.c
        async with self.transaction() as tx:
            await tx.execute(
                self._insert_ignore(t.unsubscribes, "subscriber_id", "target").values(
                    subscriber_id=subscriber_id, target=target, at=now
                )
            )
            done = await tx.execute(
                t.deliveries.update()
                .where(
                    (c.subscriber_id == subscriber_id)
                    & (c.target == target)
                    & (c.status == "queued")
                )
                .values(status="failed", last_error="unsubscribed", next_at=None, updated_at=now)
            )
            return int(done.rowcount or 0)

    async def blocked_targets(self, config_hashes: Mapping[str, str]) -> set[tuple[str, str]]:
        """(subscriber, target) pairs that get nothing: unsubscribed, or gone (410) under
        the subscriber's current config (``config_hashes``: subscriber id -> hash of its
        config entry). 410 stops deliveries "until the config changes" (CONTRACT.md)."""
        async with self.engine.connect() as conn:
            rows = list(await conn.execute(sa.select(t.unsubscribes)))
            gone = list(await conn.execute(sa.select(t.gone_endpoints)))
        return {(r.subscriber_id, r.target) for r in rows} | {
            (r.subscriber_id, r.url)
            for r in gone
            if config_hashes.get(r.subscriber_id) == r.config_hash
        }


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _run_migrations(connection: Any, revision: str) -> None:
    from alembic import command

    if connection.dialect.name == "postgresql":
        connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
    command.upgrade(_alembic_config(connection), revision)


def _current_revision(connection: Any) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def in_chunks(values: Iterable[Any], size: int = 500) -> Iterator[list[Any]]:
    """Distinct ``values`` in padded chunks of at most ``size`` (before padding), for
    ``IN (…)`` lists that stay within every driver's limit on parameters."""
    items = list(dict.fromkeys(values))
    for start in range(0, len(items), size):
        yield padded(items[start : start + size])


def padded(values: Sequence[Any]) -> list[Any]:
    """``values`` padded to a power of two with its last value, for ``IN (…)``.

    Each length of an IN list is a statement of its own (``IN (?, ?, ?)``), and the
    drivers cache prepared statements per connection (sqlite3 keeps 128, asyncpg 100):
    lists of every length from 1 to 500 would fill those caches with near-copies (about
    2 MiB per SQLite connection) and push out the statements that repeat. Padded, a
    query has at most ten shapes. A repeated value changes nothing in an IN list.
    """
    items = list(values)
    if not items:
        return items
    size = 1 << (len(items) - 1).bit_length()
    return items + [items[-1]] * (size - len(items))


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for write transactions.

    pysqlite's own transaction handling starts transactions lazily with a plain BEGIN,
    and a read that upgrades to a write ignores ``busy_timeout`` (SQLite docs, "BEGIN");
    so we take over transaction control (SQLAlchemy's documented aiosqlite recipe).
    """

    @sa_event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa_event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Reads stay deferred (WAL readers never block); writes take the lock up front.
        write = conn.get_execution_options().get("notifier_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__
