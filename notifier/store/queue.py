"""The outbox: events and their deliveries, claims by workers, and the attempts made.

Events and deliveries are inserted in the caller's transaction (the one that changes the
state they come from). A delivery is claimed with a lease that expires, so a killed
worker's deliveries return to the queue; a finished attempt is recorded with the
delivery's new status, and its ledger row, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.core.model import Delivery, Event
from notifier.store import schema as t
from notifier.store.dialect import DIGEST_LOCK
from notifier.store.engine import READ, WRITE, Connector, guarded, in_chunks, padded
from notifier.store.ledger import ledger_step, write_ledger
from notifier.store.queue_sql import (
    Times,
    claim_deliveries,
    claim_step,
    claimed,
    insert_deliveries,
    record_results,
    result_steps,
)

__all__ = ["AttemptRecord", "QueueQueries"]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One finished attempt and the delivery's state after it.

    ``sha256`` is the hash of the exact bytes sent (the webhook body, the whole email
    message), for the ledger. ``target_masked`` is the target as the ledger may show it
    (no secret); None: an http(s) URL is kept as scheme and host, an address as it is.
    ``event_id``, ``event_type``, ``subscriber_id`` and ``channel`` are the delivery's,
    for its ledger row, when the caller knows them (the outbox does); with ``event_type``
    None they are read from the store.
    """

    delivery_id: str
    at: datetime
    outcome: str
    status: str
    attempts: int
    next_at: datetime | None
    detail: str | None
    sha256: str | None = None
    target_masked: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    subscriber_id: str | None = None
    channel: str | None = None


def delivery_from_row(row: Any) -> Delivery:
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


class QueueQueries(Connector):
    """``events``, ``deliveries`` and ``delivery_attempts``."""

    @guarded(WRITE)
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

    @guarded(WRITE)
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
            self.dialect.insert_ignore(t.events, "id"),
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
        await insert_deliveries(conn, self.dialect, [d for _, ds in fresh for d in ds])
        return [event for event, _ in fresh]

    @guarded(READ)
    async def events_by_id(self, ids: Iterable[str]) -> dict[str, Event]:
        out: dict[str, Event] = {}
        async with self.engine.connect() as conn:
            for chunk in in_chunks(ids):
                rows = await conn.execute(sa.select(t.events).where(t.events.c.id.in_(chunk)))
                out.update({r.id: _event_from_row(r) for r in rows})
        return out

    @guarded(WRITE)
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

        The dialect makes the pick safe against other workers: ``FOR UPDATE SKIP
        LOCKED`` on PostgreSQL, so concurrent instances never take the same row; on
        SQLite the single writer lock serialises claims.
        """
        async with self.transaction() as conn:
            return await self._claim(
                conn, now=now, limit=limit, worker=worker, lease=lease, digest=digest
            )

    async def _claim(
        self,
        conn: AsyncConnection,
        *,
        now: datetime,
        limit: int,
        worker: str,
        lease: timedelta,
        digest: bool = False,
    ) -> list[Delivery]:
        """``claim_due`` inside the caller's transaction."""
        # A digest is one email for a whole group of rows: let one instance at a
        # time claim digests, so a group is never split between two senders.
        if digest and not await self.dialect.try_advisory_lock(conn, DIGEST_LOCK):
            return []
        return await claim_deliveries(
            conn, self.dialect, now=now, limit=limit, worker=worker, lease=lease, digest=digest
        )

    @guarded(READ)
    async def next_due_at(self) -> datetime | None:
        """When the earliest queued delivery (digests included) becomes due."""
        async with self.engine.connect() as conn:
            due: datetime | None = await conn.scalar(
                sa.select(sa.func.min(t.deliveries.c.next_at)).where(
                    t.deliveries.c.status == "queued"
                )
            )
            return due

    @guarded(WRITE)
    async def record_attempts(self, records: Sequence[AttemptRecord]) -> None:
        """Log attempts and move their deliveries to their new status, releasing the
        claims, all in one transaction (a batch of finished attempts costs one commit).
        Each attempt's ledger row is written in the same transaction."""
        if not records:
            return
        async with self.transaction() as conn:
            await self._record(conn, records)

    @guarded(WRITE)
    async def record_and_claim(
        self,
        records: Sequence[AttemptRecord],
        *,
        now: datetime,
        limit: int,
        worker: str,
        lease: timedelta,
    ) -> list[Delivery]:
        """``record_attempts`` and then ``claim_due`` (non-digest) in one transaction:
        a sender's whole store round per wake-up is one commit. ``limit`` 0 claims none."""
        if not records and limit <= 0:
            return []
        if all(r.event_type is not None for r in records):
            # The outbox's rounds: every statement known up front, one driver call.
            time = Times(self.dialect)
            steps = [*result_steps(records, time), ledger_step(records, time)] if records else []
            if limit > 0:
                steps.append(
                    claim_step(
                        self.dialect, now=now, limit=limit, worker=worker, lease=lease, digest=False
                    )
                )
            found = await self.write_steps(steps)
            return claimed(self.dialect, found) if limit > 0 else []
        async with self.transaction() as conn:
            if records:
                await self._record(conn, records)
            if limit <= 0:
                return []
            return await self._claim(conn, now=now, limit=limit, worker=worker, lease=lease)

    async def _record(self, conn: AsyncConnection, records: Sequence[AttemptRecord]) -> None:
        """``record_attempts`` inside the caller's transaction."""
        time = await record_results(conn, self.dialect, records)
        await write_ledger(conn, self.dialect, records, time=time)

    @guarded(WRITE)
    async def release_claims(self, worker: str) -> None:
        """Return this worker's claimed deliveries to the queue (clean shutdown)."""
        async with self.transaction() as conn:
            await conn.execute(
                t.deliveries.update()
                .where(t.deliveries.c.claimed_by == worker)
                .values(claimed_until=None, claimed_by=None)
            )

    @guarded(WRITE)
    async def release_all_claims(self) -> None:
        """Drop every claim (single-instance SQLite start: no other worker can hold one)."""
        async with self.transaction() as conn:
            await conn.execute(
                t.deliveries.update()
                .where(t.deliveries.c.claimed_by.is_not(None))
                .values(claimed_until=None, claimed_by=None)
            )

    @guarded(READ)
    async def counts(self) -> dict[str, int]:
        """Deliveries per status (queue depth, dead letters) for health and metrics."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(t.deliveries.c.status, sa.func.count()).group_by(t.deliveries.c.status)
            )
            return {status: int(n) for status, n in rows}
