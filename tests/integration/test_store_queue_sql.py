"""The queue's driver statements (``store/queue_sql.py``) against the SQLAlchemy-written
rows around them, on SQLite and PostgreSQL: the same instants, the same order, the same
claims, whichever path wrote a row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifier.core.model import Delivery, Event
from notifier.store import AttemptRecord, Store
from tests.samples import STORE_NOW
from tests.samples import store_event as event

NOW = STORE_NOW
LEASE = timedelta(minutes=1)


def delivery(ev: Event, n: int, *, next_at: datetime) -> Delivery:
    target = f"http://127.0.0.1/{n}"
    return Delivery(
        id=Delivery.make_id(ev.id, f"s{n}", "webhook", target),
        event_id=ev.id,
        subscriber_id=f"s{n}",
        channel="webhook",
        target=target,
        status="queued",
        attempts=0,
        next_at=next_at,
        created_at=NOW,
    )


async def emitted(store: Store, ev: Event, ds: list[Delivery]) -> None:
    async with store.transaction() as tx:
        await store.emit(tx, ev, ds, now=NOW)


async def test_a_claim_takes_the_earliest_due_first_and_nothing_not_yet_due(store: Store) -> None:
    ev = event()
    # Whole seconds and fractions mixed: stored times must compare as the instants do.
    offsets_s = [3.0, 0.0, 0.000001, 2.5, 60.0, 1.0]
    ds = [delivery(ev, i, next_at=NOW + timedelta(seconds=s)) for i, s in enumerate(offsets_s)]
    await emitted(store, ev, ds)

    at = NOW + timedelta(seconds=3)  # exactly the latest due one's time: it is due
    first = await store.claim_due(now=at, limit=3, worker="w", lease=LEASE)
    rest = await store.claim_due(now=at, limit=10, worker="w", lease=LEASE)

    by_time = sorted(ds[:4] + ds[5:], key=lambda d: d.next_at or NOW)
    assert [d.id for d in first] == [d.id for d in by_time[:3]]
    assert [d.id for d in rest] == [d.id for d in by_time[3:]]
    assert ds[4].id not in {d.id for d in first + rest}  # a minute away


async def test_claimed_rows_read_back_as_sqlalchemy_reads_them(store: Store) -> None:
    ev = event()
    when = NOW + timedelta(microseconds=250)
    ds = [delivery(ev, 1, next_at=when), delivery(ev, 2, next_at=NOW)]
    await emitted(store, ev, ds)
    claimed = {d.id: d for d in await store.claim_due(now=when, limit=5, worker="w", lease=LEASE)}
    listed = {d.id: d for d, _ in await store.list_deliveries(status="queued")}
    assert claimed == listed  # every field, the times aware UTC on both paths
    assert claimed[ds[0].id].next_at == when and claimed[ds[0].id].next_at.tzinfo is UTC
    assert claimed[ds[1].id].created_at == NOW


async def test_a_row_requeued_through_sqlalchemy_is_claimed_by_the_driver_path(
    store: Store,
) -> None:
    ev = event()
    [d] = [delivery(ev, 1, next_at=NOW)]
    await emitted(store, ev, [d])
    [claimed] = await store.claim_due(now=NOW, limit=1, worker="w", lease=LEASE)
    dead = AttemptRecord(
        delivery_id=d.id,
        at=NOW,
        outcome="retry",
        status="dead",
        attempts=8,
        next_at=None,
        detail="HTTP 500",
    )
    await store.record_attempts([dead])
    later = NOW + timedelta(hours=1, microseconds=7)
    assert await store.requeue([d.id], now=later) == [d.id]  # SQLAlchemy writes next_at

    assert (
        await store.claim_due(
            now=later - timedelta(microseconds=1), limit=1, worker="w", lease=LEASE
        )
        == []
    )
    [again] = await store.claim_due(now=later, limit=1, worker="w", lease=LEASE)
    assert (again.id, again.attempts, again.next_at) == (claimed.id, 0, later)


async def test_a_recorded_attempt_moves_the_delivery_and_writes_its_rows(store: Store) -> None:
    ev = event()
    ds = [delivery(ev, 1, next_at=NOW), delivery(ev, 2, next_at=NOW)]
    await emitted(store, ev, ds)
    await store.claim_due(now=NOW, limit=2, worker="w", lease=LEASE)
    sent_at = NOW + timedelta(seconds=1, microseconds=5)
    retry_at = NOW + timedelta(minutes=5)
    records = [
        AttemptRecord(
            delivery_id=ds[0].id,
            at=sent_at,
            outcome="sent",
            status="sent",
            attempts=1,
            next_at=None,
            detail="HTTP 204",
            sha256="a" * 64,
            target_masked="http://127.0.0.1/1",
            event_id=ev.id,
            event_type=ev.type,
            subscriber_id="s1",
            channel="webhook",
        ),
        AttemptRecord(
            delivery_id=ds[1].id,
            at=sent_at,
            outcome="retry",
            status="queued",
            attempts=1,
            next_at=retry_at,
            detail="HTTP 503",
            sha256="b" * 64,
        ),
    ]
    claimed = await store.record_and_claim(records, now=retry_at, limit=5, worker="w2", lease=LEASE)

    # Recorded first, in the same transaction: the retry is due again at its time.
    assert [(d.id, d.attempts, d.next_at) for d in claimed] == [(ds[1].id, 1, retry_at)]
    [(sent, _)] = await store.list_deliveries(status="sent")
    assert (sent.id, sent.sent_at, sent.last_error) == (ds[0].id, sent_at, None)
    assert [a["outcome"] for a in await store.attempts_of(ds[1].id)] == ["retry"]
    ledger = {r["delivery_id"]: r for r in await store.ledger()}
    given, read = ledger[ds[0].id], ledger[ds[1].id]  # metadata given, and read back
    for row, sha in ((given, "a" * 64), (read, "b" * 64)):
        assert (row["event_id"], row["event_type"], row["channel"]) == (ev.id, ev.type, "webhook")
        assert (row["at"], row["sha256"]) == (sent_at, sha)
    assert (given["subscriber_id"], read["subscriber_id"]) == ("s1", "s2")
    assert read["target"] == "http://127.0.0.1/…"  # masked by the store when not given


# --- the outbox's store round in one call ------------------------------------------------


def _records(ev: Event, ds: list[Delivery], at: datetime) -> list[AttemptRecord]:
    """One of each outcome a fan-out records (details with quotes, a line break, a
    backslash and a non-ASCII letter, and none)."""
    shapes = [
        ("sent", "sent", None, "HTTP 204"),
        ("retry", "queued", at + timedelta(minutes=5, microseconds=3), 'HTTP 503: "busy" \\ ü'),
        ("retry", "dead", None, "connection failed: [Errno 111]\nrefused"),
        ("gone", "failed", None, None),
    ]
    return [
        AttemptRecord(
            delivery_id=d.id,
            at=at,
            outcome=outcome,
            status=status,
            attempts=d.attempts + 1,
            next_at=next_at,
            detail=detail,
            sha256=f"{n:x}" * 64,
            target_masked="http://127.0.0.1/…",
            event_id=ev.id,
            event_type=ev.type,
            subscriber_id=d.subscriber_id,
            channel=d.channel,
        )
        for n, (d, (outcome, status, next_at, detail)) in enumerate(zip(ds, shapes, strict=True))
    ]


_IDS = ("id", "delivery_id", "event_id")


async def _rounds(store: Store, ev: Event) -> tuple[list[Delivery], list[Delivery], list[Any]]:
    """Four deliveries claimed by a round, recorded by the next (which claims the
    retry when it is due), and what the store then holds of them."""
    ds = [delivery(ev, n, next_at=NOW) for n in range(4)]
    await emitted(store, ev, ds)
    first = await store.record_and_claim([], now=NOW, limit=10, worker="w", lease=LEASE)
    at = NOW + timedelta(seconds=1, microseconds=250)
    records = _records(ev, sorted(first, key=lambda d: d.subscriber_id), at)
    again = await store.record_and_claim(
        records, now=at + timedelta(minutes=6), limit=10, worker="w2", lease=LEASE
    )
    rows: list[Any] = []
    listed = {d.id: d for d, _ in await store.list_deliveries()}
    for d in sorted(ds, key=lambda d: d.subscriber_id):
        rows.append(listed[d.id])
        attempts = await store.attempts_of(d.id)
        rows.append([(a["attempt"], a["at"], a["outcome"], a["detail"]) for a in attempts])
    ledger = sorted(
        (r for r in await store.ledger() if r["event_id"] == ev.id),
        key=lambda r: r["subscriber_id"],
    )
    rows.extend({k: v for k, v in r.items() if k not in _IDS} for r in ledger)
    return first, again, rows


async def test_the_outboxs_round_in_one_driver_call_writes_what_the_statements_do(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifier.store import sqlite_dialect as dialects

    calls: list[int] = []
    one_call = dialects._sqlite_transaction

    def counted(database: Any, steps: Any) -> Any:
        calls.append(len(steps))
        return one_call(database, steps)

    monkeypatch.setattr(dialects, "_sqlite_transaction", counted)
    fast = await _rounds(store, event(1))
    if store.dialect.name == "sqlite":
        # Both rounds went to SQLite's thread as one job (results, attempts, ledger, claim).
        assert calls == [1, 4]
    else:
        assert calls == []  # PostgreSQL runs the steps in a SQLAlchemy transaction

    monkeypatch.setattr(type(store.dialect), "run_transaction", _not_in_one_call)
    slow = await _rounds(store, event(2))

    def same_shape(deliveries: list[Delivery]) -> list[tuple[Any, ...]]:
        # Rows due at the same instant come in any order.
        return sorted((d.subscriber_id, d.attempts, d.next_at, d.status) for d in deliveries)

    assert same_shape(fast[0]) == same_shape(slow[0])
    assert same_shape(fast[1]) == same_shape(slow[1]) and len(fast[1]) == 1  # the retry
    strip = [_without_ids(row) for row in fast[2]], [_without_ids(row) for row in slow[2]]
    assert strip[0] == strip[1]


async def _not_in_one_call(self: Any, conn: Any, steps: Any) -> None:
    return None


def _without_ids(row: Any) -> Any:
    if isinstance(row, Delivery):
        return (
            row.subscriber_id,
            row.status,
            row.attempts,
            row.next_at,
            row.last_error,
            row.sent_at,
        )
    return row
