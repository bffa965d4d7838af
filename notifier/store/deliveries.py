"""The delivery log as operators read and act on it: listing, finding by id prefix,
attempt history, re-queueing, and the digests that wait (queries over ``deliveries``,
``delivery_attempts`` and ``ledger``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from notifier.core.model import Delivery
from notifier.store import schema as t
from notifier.store.dialect import DIGEST_LOCK
from notifier.store.engine import READ, WRITE, Connector, guarded, in_chunks, padded
from notifier.store.queue import delivery_from_row as _delivery_from_row

__all__ = ["DeliveryLogQueries"]


class DeliveryLogQueries(Connector):
    """Reads and operator actions on the delivery log."""

    @guarded(READ)
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

    @guarded(WRITE)
    async def requeue(self, delivery_ids: Sequence[str], *, now: datetime) -> list[str]:
        """Re-queue dead (or failed) deliveries; returns the ids that were re-queued."""
        c = t.deliveries.c
        ids: list[str] = []
        async with self.transaction() as conn:
            for chunk in in_chunks(delivery_ids):
                rows = await conn.execute(
                    sa.select(c.id).where(c.id.in_(chunk) & c.status.in_(["dead", "failed"]))
                )
                ids += [r.id for r in rows]
            for chunk in in_chunks(ids):
                await conn.execute(
                    t.deliveries.update()
                    .where(c.id.in_(chunk))
                    .values(status="queued", attempts=0, next_at=now, updated_at=now)
                )
        return ids

    @guarded(READ)
    async def attempts_of(self, delivery_id: str) -> list[Mapping[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(t.delivery_attempts)
                .where(t.delivery_attempts.c.delivery_id == delivery_id)
                .order_by(t.delivery_attempts.c.id)
            )
            return [dict(r._mapping) for r in rows]

    # --- the operator's view: filters, prefixes, history, digests ---------------------

    @guarded(READ)
    async def find_deliveries(
        self,
        *,
        status: str | None = None,
        subscriber_id: str | None = None,
        event_types: Sequence[str] | None = None,
        event_id: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[tuple[Delivery, str]]:
        """The delivery log, newest first, with each delivery's event type, filtered:
        ``event_types`` (any of), ``event_id`` (an id or a prefix of one), ``since``
        (created at or after)."""
        d, e = t.deliveries.c, t.events.c
        query = sa.select(t.deliveries, e.type.label("event_type")).join(
            t.events, e.id == d.event_id
        )
        if status:
            query = query.where(d.status == status)
        if subscriber_id:
            query = query.where(d.subscriber_id == subscriber_id)
        if event_types is not None:
            query = query.where(e.type.in_(padded(list(event_types)) or [""]))
        if event_id:
            query = query.where(d.event_id.startswith(event_id, autoescape=True))
        if since is not None:
            query = query.where(d.created_at >= since)
        query = query.order_by(d.created_at.desc(), d.id).limit(limit)
        async with self.engine.connect() as conn:
            return [(_delivery_from_row(r), r.event_type) for r in await conn.execute(query)]

    @guarded(READ)
    async def deliveries_by_prefix(self, prefix: str, *, limit: int = 10) -> list[Delivery]:
        """The delivery whose id is ``prefix``, else those whose id starts with it (at most
        ``limit``; more than one means the prefix is ambiguous)."""
        c = t.deliveries.c
        async with self.engine.connect() as conn:
            exact = (await conn.execute(sa.select(t.deliveries).where(c.id == prefix))).first()
            if exact is not None:
                return [_delivery_from_row(exact)]
            rows = await conn.execute(
                sa.select(t.deliveries)
                .where(c.id.startswith(prefix, autoescape=True))
                .order_by(c.id)
                .limit(limit)
            )
            return [_delivery_from_row(r) for r in rows]

    @guarded(READ)
    async def attempt_history(self, delivery_id: str) -> list[dict[str, Any]]:
        """Every attempt of a delivery, oldest first: ``attempt``, ``at``, ``outcome``,
        ``detail`` and, from the ledger, the ``sha256`` of the bytes sent (None when the
        ledger has no row for it)."""
        a, g = t.delivery_attempts.c, t.ledger.c
        query = (
            sa.select(a.attempt, a.at, a.outcome, a.detail, g.sha256)
            .select_from(
                t.delivery_attempts.outerjoin(
                    t.ledger,
                    (g.delivery_id == a.delivery_id) & (g.attempt == a.attempt) & (g.at == a.at),
                )
            )
            .where(a.delivery_id == delivery_id)
            .order_by(a.id)
        )
        async with self.engine.connect() as conn:
            seen: set[tuple[int, datetime]] = set()
            out: list[dict[str, Any]] = []
            for row in await conn.execute(query):
                key = (row.attempt, row.at)
                if key not in seen:  # one line per attempt, whatever the ledger holds
                    seen.add(key)
                    out.append(dict(row._mapping))
            return out

    @guarded(READ)
    async def dead_delivery_ids(self, *, subscriber_id: str | None = None) -> list[str]:
        """The ids of every dead delivery (of one subscriber), oldest first."""
        c = t.deliveries.c
        query = sa.select(c.id).where(c.status == "dead")
        if subscriber_id:
            query = query.where(c.subscriber_id == subscriber_id)
        async with self.engine.connect() as conn:
            return [r.id for r in await conn.execute(query.order_by(c.created_at, c.id))]

    @guarded(READ)
    async def queued_digests(self, *, subscriber_id: str | None = None) -> list[Delivery]:
        """The deliveries waiting for a digest (of one subscriber), by digest time."""
        c = t.deliveries.c
        query = sa.select(t.deliveries).where((c.status == "queued") & c.digest_at.is_not(None))
        if subscriber_id:
            query = query.where(c.subscriber_id == subscriber_id)
        query = query.order_by(c.subscriber_id, c.digest_at, c.created_at, c.id)
        async with self.engine.connect() as conn:
            return [_delivery_from_row(r) for r in await conn.execute(query)]

    @guarded(WRITE)
    async def reschedule_digests(
        self, instants: Mapping[str, datetime | None], *, now: datetime
    ) -> int:
        """Move queued digest deliveries that are not due yet to their subscriber's next
        digest instant (``instants``: subscriber id -> when, from
        ``core.planning.digest_instants``), so a changed ``digest`` time yields one digest.
        A subscriber mapped to None has no digest any more: its waiting emails go now, one
        by one. Subscribers not in ``instants`` are left alone. Returns the rows moved."""
        c = t.deliveries.c
        waiting = (c.status == "queued") & c.digest_at.is_not(None) & (c.digest_at > now)
        moved = 0
        async with self.transaction() as conn:
            pick = sa.select(c.subscriber_id, c.digest_at).where(waiting).distinct()
            groups = list(await conn.execute(pick))
            for row in groups:
                if row.subscriber_id not in instants:
                    continue
                wanted = instants[row.subscriber_id]
                if wanted is not None and wanted == row.digest_at:
                    continue
                values = (
                    {"digest_at": wanted, "next_at": wanted, "updated_at": now}
                    if wanted is not None
                    else {"digest_at": None, "next_at": now, "updated_at": now}
                )
                done = await conn.execute(
                    t.deliveries.update()
                    .where(
                        waiting
                        & (c.subscriber_id == row.subscriber_id)
                        & (c.digest_at == row.digest_at)
                        & (c.claimed_until.is_(None) | (c.claimed_until < now))
                    )
                    .values(**values)
                )
                moved += int(done.rowcount or 0)
        return moved

    @guarded(WRITE)
    async def claim_digests_of(
        self, subscriber_id: str, *, now: datetime, worker: str, lease: timedelta
    ) -> list[Delivery]:
        """Claim every queued digest delivery of one subscriber, due or not (``digests
        send``), under the same lock as the digest drain so a group is never split."""
        c = t.deliveries.c
        free = (
            (c.status == "queued")
            & c.digest_at.is_not(None)
            & (c.subscriber_id == subscriber_id)
            & (c.claimed_until.is_(None) | (c.claimed_until < now))
        )
        pick = self.dialect.claimable(sa.select(c.id).where(free).order_by(c.created_at, c.id))
        async with self.transaction() as conn:
            if not await self.dialect.try_advisory_lock(conn, DIGEST_LOCK):
                return []
            ids = [r.id for r in await conn.execute(pick)]
            claimed: list[Delivery] = []
            for chunk in in_chunks(ids):
                await conn.execute(
                    t.deliveries.update()
                    .where(c.id.in_(chunk))
                    .values(claimed_until=now + lease, claimed_by=worker)
                )
                rows = await conn.execute(sa.select(t.deliveries).where(c.id.in_(chunk)))
                claimed += [_delivery_from_row(r) for r in rows]
            return sorted(claimed, key=lambda d: (d.created_at, d.id))
