"""The ledger on SQLite and PostgreSQL: one row per attempt with the hash of what was
sent, written with the attempt, masked, and kept after ``retention`` forgets the delivery
until ``ledger_retention`` has passed."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from notifier.core.model import Delivery, Event
from notifier.errors import StoreError
from notifier.store import AttemptRecord, Store, mask_target
from notifier.store import schema as t

NOW = datetime(2025, 5, 3, 4, 1, tzinfo=UTC)
DAY = timedelta(days=1)
BODY = b'{"type":"tariff.rule.effective","data":{"event_id":"evt_1"}}'
HOOK = "https://hooks.example.com/services/T000/B000/sEcReT?token=abc"


def event(n: int, *, at: datetime = NOW) -> Event:
    return Event(
        id=f"evt_{n}",
        type="tariff.rule.effective",
        timestamp=at,
        data={"rule": {"id": "us-232-auto-parts"}},
        origins=("*",),
        hts=("8708",),
    )


def delivery(ev: Event, target: str = HOOK, *, at: datetime = NOW) -> Delivery:
    channel = "email" if "@" in target and "://" not in target else "webhook"
    return Delivery(
        id=Delivery.make_id(ev.id, "broker", channel, target),
        event_id=ev.id,
        subscriber_id="broker",
        channel=channel,
        target=target,
        status="queued",
        attempts=0,
        next_at=at,
        created_at=at,
    )


def attempt(d: Delivery, *, at: datetime = NOW, n: int = 1, **fields: object) -> AttemptRecord:
    values: dict[str, object] = {
        "delivery_id": d.id,
        "at": at,
        "outcome": "sent",
        "status": "sent",
        "attempts": n,
        "next_at": None,
        "detail": "HTTP 204",
        "sha256": hashlib.sha256(BODY).hexdigest(),
    }
    values.update(fields)
    return AttemptRecord(**values)  # type: ignore[arg-type]


async def emitted(store: Store, ev: Event, *ds: Delivery, at: datetime = NOW) -> None:
    async with store.transaction() as tx:
        await store.emit(tx, ev, ds, now=at)


async def test_an_attempt_writes_a_ledger_row_with_the_hash_of_the_bytes(store: Store) -> None:
    ev = event(1)
    d = delivery(ev)
    await emitted(store, ev, d)
    retry = attempt(d, outcome="retry", status="queued", detail="HTTP 503", next_at=NOW + DAY)
    await store.record_attempts([retry])
    await store.record_attempts([attempt(d, at=NOW + DAY, n=2)])
    rows = await store.ledger()
    assert [(r["attempt"], r["outcome"], r["status"], r["detail"]) for r in rows] == [
        (1, "retry", "queued", "HTTP 503"),
        (2, "sent", "sent", "HTTP 204"),
    ]
    first = rows[0]
    assert first["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert (first["delivery_id"], first["event_id"], first["event_type"]) == (
        d.id,
        ev.id,
        ev.type,
    )
    assert (first["subscriber_id"], first["channel"], first["at"]) == ("broker", "webhook", NOW)
    # The webhook URL's path and query may be its secret: scheme and host only.
    assert first["target"] == "https://hooks.example.com/…"
    assert "sEcReT" not in str(rows)


async def test_the_ledger_keeps_the_target_the_caller_masked(store: Store) -> None:
    ev = event(1)
    email, hook = delivery(ev, "desk@broker.example"), delivery(ev)
    await emitted(store, ev, email, hook)
    await store.record_attempts(
        [attempt(email, detail="250 2.0.0 Ok"), attempt(hook, target_masked="https://hooks/erp")]
    )
    targets = {r["channel"]: r["target"] for r in await store.ledger()}
    assert targets == {"email": "desk@broker.example", "webhook": "https://hooks/erp"}


async def test_a_failed_attempt_record_writes_no_ledger_row(store: Store) -> None:
    ev = event(1)
    d = delivery(ev)
    await emitted(store, ev, d)
    with pytest.raises(StoreError):
        # Same transaction: an attempt of an unknown delivery breaks the foreign key of
        # delivery_attempts, and the ledger row goes with it.
        await store.record_attempts([attempt(d), attempt(delivery(event(9)))])
    assert await store.ledger() == []
    assert await store.attempts_of(d.id) == []


async def test_ledger_reads_since_a_time_in_order_and_in_pages(store: Store) -> None:
    ev = event(1)
    ds = [delivery(ev, f"http://127.0.0.1/{i}") for i in range(7)]
    await emitted(store, ev, *ds)
    # Out of time order, and two at the same instant: ordered by (at, id).
    times = [NOW + timedelta(hours=h) for h in (5, 1, 3, 3, 0, 6, 2)]
    for d, at in zip(ds, times, strict=True):
        await store.record_attempts([attempt(d, at=at)])
    rows = await store.ledger()
    assert [r["at"] for r in rows] == sorted(times)
    assert [r["id"] for r in rows if r["at"] == NOW + timedelta(hours=3)] == sorted(
        r["id"] for r in rows if r["at"] == NOW + timedelta(hours=3)
    )
    since = NOW + timedelta(hours=3)
    wanted = [at for at in sorted(times) if at >= since]
    assert [r["at"] for r in await store.ledger(since=since)] == wanted
    assert len(await store.ledger(limit=2)) == 2
    streamed = [r async for r in store.stream_ledger(page_size=2)]
    assert streamed == rows
    assert [r async for r in store.stream_ledger(since=since, page_size=3)] == [
        r for r in rows if r["at"] >= since
    ]


async def test_retention_forgets_deliveries_but_not_their_ledger(store: Store) -> None:
    old_at = NOW - 100 * DAY
    old, new = event(1, at=old_at), event(2)
    d_old, d_new = delivery(old, at=old_at), delivery(new)
    await emitted(store, old, d_old, at=old_at)
    await emitted(store, new, d_new)
    await store.record_attempts([attempt(d_old, at=old_at), attempt(d_new)])
    pruned = await store.prune(now=NOW, retention=90 * DAY, feed_ids=[])
    assert (pruned.events, pruned.deliveries, pruned.attempts, pruned.ledger) == (1, 1, 1, 0)
    assert [d.id for d, _ in await store.list_deliveries()] == [d_new.id]
    ledger = await store.ledger()
    assert [r["delivery_id"] for r in ledger] == [d_old.id, d_new.id]
    assert ledger[0]["event_type"] == old.type  # still says what it was about


async def test_ledger_rows_older_than_ledger_retention_go(store: Store) -> None:
    times = [NOW - 800 * DAY, NOW - 731 * DAY, NOW - 100 * DAY, NOW]
    for n, at in enumerate(times):
        ev = event(n, at=at)
        d = delivery(ev, at=at)
        await emitted(store, ev, d, at=at)
        await store.record_attempts([attempt(d, at=at)])
    pruned = await store.prune(now=NOW, retention=90 * DAY, feed_ids=[], ledger_retention=730 * DAY)
    assert pruned.ledger == 2 and pruned.events == 3
    assert "2 ledger rows" in str(pruned)
    assert [r["at"] for r in await store.ledger()] == times[2:]
    # Without ledger_retention the ledger is kept however old.
    again = await store.prune(now=NOW + 3000 * DAY, retention=90 * DAY, feed_ids=[])
    assert again.ledger == 0 and len(await store.ledger()) == 2


async def test_ledger_pruning_goes_in_batches(store: Store) -> None:
    from notifier.store.retention import prune

    ev = event(1, at=NOW - 800 * DAY)
    ds = [delivery(ev, f"http://127.0.0.1/{i}", at=ev.timestamp) for i in range(5)]
    await emitted(store, ev, *ds, at=ev.timestamp)
    await store.record_attempts([attempt(d, at=ev.timestamp) for d in ds])
    pruned = await prune(
        store, now=NOW, retention=90 * DAY, feed_ids=[], ledger_retention=DAY, batch=2
    )
    assert pruned.ledger == 5
    async with store.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.ledger)) == 0


@pytest.mark.parametrize(
    ("target", "masked"),
    [
        ("https://hooks.slack.com/services/T0/B0/XyZ", "https://hooks.slack.com/…"),
        ("https://erp.example.com", "https://erp.example.com"),
        ("https://erp.example.com/", "https://erp.example.com"),
        ("http://127.0.0.1:8080/h?sig=1", "http://127.0.0.1:8080/…"),
        ("https://user:pw@erp.example.com/x", "https://erp.example.com/…"),
        ("HTTPS://ERP.example.com/x", "https://erp.example.com/…"),
        ("desk@broker.example", "desk@broker.example"),
    ],
)
def test_mask_target_keeps_scheme_and_host_of_urls(target: str, masked: str) -> None:
    assert mask_target(target) == masked
