"""The ledger: one row per delivery attempt, kept for ``ledger_retention`` (two years by
default), long after ``retention`` has forgotten the event and its delivery.

It keeps metadata and hashes only: who, which event, which channel and (masked) target,
when, the outcome and the answer, and the SHA-256 of the exact bytes sent, so an operator
can answer "did the broker get the May 3 auto-parts alert, and which version" a year
later (``deliveries export``). Rows are written by ``record_attempts``, in the
transaction that records the attempt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.store import schema as t
from notifier.store.dialect import Step
from notifier.store.engine import READ, Connector, guarded, in_chunks

if TYPE_CHECKING:
    from notifier.store.dialect import Dialect
    from notifier.store.queue import AttemptRecord

__all__ = ["LedgerQueries", "ledger_step", "mask_target", "write_ledger"]

PAGE = 1000


def mask_target(target: str) -> str:
    """A target as the ledger may keep it: an http(s) URL as scheme and host (its path
    and query may hold a secret, a Slack webhook's does), an address as it is."""
    parts = urlsplit(target)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return target
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    port = f":{parts.port}" if parts.port is not None else ""
    rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme.lower()}://{host}{port}{rest}"


_INSERT = (
    "INSERT INTO ledger (delivery_id, event_id, event_type, subscriber_id, channel, target, "
    "attempt, at, outcome, status, detail, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


async def write_ledger(
    conn: AsyncConnection,
    dialect: Dialect,
    records: Sequence[AttemptRecord],
    *,
    time: Callable[[datetime], Any] | None = None,
) -> None:
    """The ledger rows of ``records``, in the caller's transaction (driver SQL, as the
    queue's other hot statements: ``store/queue_sql.py``).

    A record that carries its delivery's metadata (event, type, subscriber, channel: the
    outbox's do) is written as it is; for the others it is read in this transaction (a
    delivery unknown to the store gets none). ``time`` converts instants for the driver
    (``Dialect.db_time`` when None)."""
    if not records:
        return
    about = await _metadata(conn, [r.delivery_id for r in records if r.event_type is None])
    await dialect.execute_many(conn, _INSERT, ledger_rows(records, time or dialect.db_time, about))


def ledger_step(records: Sequence[AttemptRecord], time: Callable[[datetime], Any]) -> Step:
    """The ledger rows of ``records`` that all carry their metadata (``event_type`` set:
    the outbox's; the caller checks, ``QueueQueries.record_and_claim``), as a step of a
    store round."""
    return Step(_INSERT, ledger_rows(records, time, {}))


def ledger_rows(
    records: Sequence[AttemptRecord], to_db: Callable[[datetime], Any], about: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """One ledger row per record; ``about`` holds the metadata read for those without."""
    rows_out = []
    for r in records:
        target = r.target_masked
        if r.event_type is not None:
            meta: tuple[Any, ...] = (r.event_id, r.event_type, r.subscriber_id, r.channel)
        else:
            known = about.get(r.delivery_id)
            meta = (None, None, None, None)
            if known is not None:
                meta = (known.event_id, known.type, known.subscriber_id, known.channel)
                if target is None:
                    target = mask_target(known.target)
        rows_out.append(
            (
                r.delivery_id,
                *meta,
                target,
                r.attempts,
                to_db(r.at),
                r.outcome,
                r.status,
                r.detail,
                r.sha256,
            )
        )
    return rows_out


async def _metadata(conn: AsyncConnection, delivery_ids: Sequence[str]) -> dict[str, Any]:
    """Event id and type, subscriber, channel and target of the deliveries known."""
    d, e = t.deliveries.c, t.events.c
    about: dict[str, Any] = {}
    for chunk in in_chunks(delivery_ids):
        rows = await conn.execute(
            sa.select(d.id, d.event_id, d.subscriber_id, d.channel, d.target, e.type)
            .join(t.events, e.id == d.event_id)
            .where(d.id.in_(chunk))
        )
        about.update({row.id: row for row in rows})
    return about


def _since(query: sa.Select[Any], since: datetime | None) -> sa.Select[Any]:
    return query if since is None else query.where(t.ledger.c.at >= since)


class LedgerQueries(Connector):
    """``ledger``: reads for ``deliveries export``."""

    @guarded(READ)
    async def ledger(
        self, *, since: datetime | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Ledger rows from ``since`` on (all when None), oldest first (by ``at``, then
        ``id``), at most ``limit``."""
        query = _since(sa.select(t.ledger), since).order_by(t.ledger.c.at, t.ledger.c.id)
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def stream_ledger(
        self, *, since: datetime | None = None, page_size: int = PAGE
    ) -> AsyncIterator[dict[str, Any]]:
        """The same rows as ``ledger``, read a page at a time (each page one short read,
        so an export of years of attempts holds neither a connection nor the memory)."""
        after: tuple[datetime, int] | None = None
        while True:
            page = await self._ledger_page(since=since, after=after, page_size=page_size)
            for row in page:
                yield row
            if len(page) < page_size:
                return
            after = (page[-1]["at"], page[-1]["id"])

    @guarded(READ)
    async def _ledger_page(
        self, *, since: datetime | None, after: tuple[datetime, int] | None, page_size: int
    ) -> list[dict[str, Any]]:
        c = t.ledger.c
        query = _since(sa.select(t.ledger), since)
        if after is not None:
            at, row_id = after
            query = query.where((c.at > at) | ((c.at == at) & (c.id > row_id)))
        query = query.order_by(c.at, c.id).limit(page_size)
        async with self.engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]
