"""The queue's hot statements: a fan-out's inserts, claims and results as driver SQL.

A fan-out writes several rows per delivery (its row with the event, its new status, its
attempt, its ledger row) and reads its claimed row back. Through SQLAlchemy Core each
parameter of each row is processed in Python (bind processors, datetime conversions,
the compiled statement's parameter construction), which was most of the store's cost
per delivery. These statements are written once, with ``?`` placeholders that the
dialect renders in its driver's style, and run straight on the driver (one
``executemany`` per statement and batch: ``Dialect.execute_many``) on rows already in
the driver's types (``Dialect.db_time``), in the transaction SQLAlchemy runs; every
driver error still leaves the store as ``StoreError`` like any other query's.

The same SQL runs on SQLite (3.35+, for ``RETURNING``) and PostgreSQL; the one
difference, how a claim locks its rows, is the dialect's ``claim_lock``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.core.model import Delivery
from notifier.store.dialect import Dialect, Step

if TYPE_CHECKING:
    from notifier.store.queue import AttemptRecord

__all__ = [
    "Times",
    "claim_deliveries",
    "claim_step",
    "claimed",
    "insert_deliveries",
    "record_results",
    "result_steps",
]

_COLUMNS = (
    "id, event_id, subscriber_id, channel, target, status, attempts, next_at, created_at, "
    "last_error, sent_at, digest_at"
)

_INSERT = (
    "INSERT INTO deliveries (id, event_id, subscriber_id, channel, target, status, "
    "attempts, next_at, created_at, updated_at, digest_at, last_error) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)

# Due: queued, its time come, not claimed (or the claim expired); digests apart.
_CLAIM = (
    "UPDATE deliveries SET claimed_until = ?, claimed_by = ? WHERE id IN ("
    "SELECT id FROM deliveries WHERE status = 'queued' AND next_at <= ? "
    "AND (claimed_until IS NULL OR claimed_until < ?) AND digest_at IS {digest} "
    "ORDER BY next_at LIMIT ?{lock}) "
    f"RETURNING {_COLUMNS}"
)

_RESULT = (
    "UPDATE deliveries SET status = ?, attempts = ?, next_at = ?, updated_at = ?, "
    "last_error = ?, sent_at = ?, claimed_until = NULL, claimed_by = NULL WHERE id = ?"
)

_ATTEMPT = (
    "INSERT INTO delivery_attempts (delivery_id, attempt, at, outcome, detail) "
    "VALUES (?, ?, ?, ?, ?)"
)


class Times:
    """``Dialect.db_time`` for the few distinct instants of a batch, each converted once
    (a batch's deliveries share their ``created_at``, its results their ``at``)."""

    __slots__ = ("_convert", "_seen")

    def __init__(self, dialect: Dialect) -> None:
        self._convert = dialect.db_time
        self._seen: dict[datetime, Any] = {}

    def __call__(self, moment: datetime | None) -> Any:
        if moment is None:
            return None
        value = self._seen.get(moment)
        if value is None:
            value = self._seen[moment] = self._convert(moment)
        return value


async def insert_deliveries(
    conn: AsyncConnection, dialect: Dialect, deliveries: Sequence[Delivery]
) -> None:
    """Insert-if-absent of delivery rows (their ids are derived: a repeat is the same row)."""
    if not deliveries:
        return
    time = Times(dialect)
    rows = [
        (
            d.id,
            d.event_id,
            d.subscriber_id,
            d.channel,
            d.target,
            d.status,
            d.attempts,
            time(d.next_at),
            time(d.created_at),
            time(d.created_at),
            time(d.digest_at),
            # Set for a delivery planned as failed (a gone endpoint: planning).
            d.last_error,
        )
        for d in deliveries
    ]
    await dialect.execute_many(conn, _INSERT, rows)


async def claim_deliveries(
    conn: AsyncConnection,
    dialect: Dialect,
    *,
    now: datetime,
    limit: int,
    worker: str,
    lease: timedelta,
    digest: bool,
) -> list[Delivery]:
    """Claim up to ``limit`` due deliveries (earliest due first), in one statement.

    The rows are picked and leased by one ``UPDATE … RETURNING``: on PostgreSQL the
    pick skips rows another instance's claim has locked, on SQLite the single writer
    serialises claims.
    """
    step = claim_step(dialect, now=now, limit=limit, worker=worker, lease=lease, digest=digest)
    return claimed(dialect, await dialect.fetch_all(conn, step.sql, step.rows[0]))


def claim_step(
    dialect: Dialect, *, now: datetime, limit: int, worker: str, lease: timedelta, digest: bool
) -> Step:
    """The claim of ``claim_deliveries`` as a step of a store round (``claimed`` reads
    its rows)."""
    sql = _CLAIM.format(digest="NOT NULL" if digest else "NULL", lock=dialect.claim_lock)
    at = dialect.db_time(now)
    return Step(sql, [(dialect.db_time(now + lease), worker, at, at, limit)], fetch=True)


def claimed(dialect: Dialect, found: Sequence[Any]) -> list[Delivery]:
    """The deliveries of a claim's rows, earliest due first."""
    rows: list[Any] = sorted(found, key=lambda row: row[7])  # RETURNING keeps no order
    # A fan-out's rows share their instants: each distinct stored value is read once.
    seen: dict[Any, datetime | None] = {None: None}

    def py_time(value: Any) -> datetime | None:
        if value in seen:
            return seen[value]
        moment = seen[value] = dialect.py_time(value)
        return moment

    return [_delivery(row, py_time) for row in rows]


def _delivery(row: Any, py_time: Callable[[Any], datetime | None]) -> Delivery:
    created_at = py_time(row[8])
    assert created_at is not None  # NOT NULL
    return Delivery(
        id=row[0],
        event_id=row[1],
        subscriber_id=row[2],
        channel=row[3],
        target=row[4],
        status=row[5],
        attempts=row[6],
        next_at=py_time(row[7]),
        created_at=created_at,
        last_error=row[9],
        sent_at=py_time(row[10]),
        digest_at=py_time(row[11]),
    )


async def record_results(
    conn: AsyncConnection, dialect: Dialect, records: Sequence[AttemptRecord]
) -> Times:
    """Each record's new delivery status (its claim released) and its attempt row.
    Returns the batch's time conversions, for the ledger rows written beside them."""
    time = Times(dialect)
    if not records:
        return time
    for step in result_steps(records, time):
        await dialect.execute_many(conn, step.sql, step.rows)
    return time


def result_steps(records: Sequence[AttemptRecord], time: Times) -> list[Step]:
    """``record_results`` as steps of a store round: the statuses, then the attempts."""
    statuses = []
    attempts = []
    for r in records:
        at = time(r.at)
        sent = r.outcome == "sent"
        statuses.append(
            (
                r.status,
                r.attempts,
                time(r.next_at),
                at,
                None if sent else r.detail,
                at if sent else None,
                r.delivery_id,
            )
        )
        attempts.append((r.delivery_id, r.attempts, at, r.outcome, r.detail))
    return [Step(_RESULT, statuses), Step(_ATTEMPT, attempts)]
