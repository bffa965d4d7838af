"""The store's contract, run on SQLite and PostgreSQL alike (like APScheduler's
job-store suite): emit-once, claims, leases, the delivery log, and migrations."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from notifier.core.model import Delivery, Event
from notifier.store import MIGRATIONS, AttemptRecord, Store
from notifier.store import schema as t
from tests.conftest import absolute
from tests.samples import STORE_NOW
from tests.samples import store_event as event

NOW = STORE_NOW


def head_revision() -> str:
    """The newest migration in notifier/store/migrations (0005, the ledger, or later)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None and head >= "0005"
    return head


def deliveries(ev: Event, count: int) -> list[Delivery]:
    return [
        Delivery(
            id=Delivery.make_id(ev.id, f"s{i}", "webhook", f"http://127.0.0.1/{i}"),
            event_id=ev.id,
            subscriber_id=f"s{i}",
            channel="webhook",
            target=f"http://127.0.0.1/{i}",
            status="queued",
            attempts=0,
            next_at=NOW,
            created_at=NOW,
        )
        for i in range(count)
    ]


async def test_emit_is_insert_if_absent(store: Store) -> None:
    ev = event()
    async with store.transaction() as tx:
        assert await store.emit(tx, ev, deliveries(ev, 3), now=NOW) is True
    async with store.transaction() as tx:
        assert await store.emit(tx, ev, deliveries(ev, 3), now=NOW) is False
    assert (await store.counts()) == {"queued": 3}
    assert await store.emitted(["evt_1", "evt_2"]) == {"evt_1"}


async def test_concurrent_claims_never_share_a_delivery(store: Store) -> None:
    ev = event()
    async with store.transaction() as tx:
        await store.emit(tx, ev, deliveries(ev, 60), now=NOW)

    async def claim(worker: str) -> list[str]:
        got: list[str] = []
        while batch := await store.claim_due(
            now=NOW, limit=7, worker=worker, lease=timedelta(minutes=1)
        ):
            got += [d.id for d in batch]
        return got

    results = await asyncio.gather(*(claim(f"w{i}") for i in range(4)))
    claimed = [d for r in results for d in r]
    assert len(claimed) == 60 and len(set(claimed)) == 60


async def test_an_expired_claim_returns_to_the_queue(store: Store) -> None:
    ev = event()
    async with store.transaction() as tx:
        await store.emit(tx, ev, deliveries(ev, 2), now=NOW)
    first = await store.claim_due(now=NOW, limit=10, worker="dead", lease=timedelta(seconds=30))
    assert len(first) == 2
    assert await store.claim_due(now=NOW, limit=10, worker="b", lease=timedelta(seconds=30)) == []
    later = NOW + timedelta(seconds=31)
    again = await store.claim_due(now=later, limit=10, worker="b", lease=timedelta(seconds=30))
    assert {d.id for d in again} == {d.id for d in first}


async def test_attempts_retry_and_requeue_of_dead(store: Store) -> None:
    ev = event()
    [d] = deliveries(ev, 1)
    async with store.transaction() as tx:
        await store.emit(tx, ev, [d], now=NOW)
    await store.record_attempts(
        [
            AttemptRecord(
                delivery_id=d.id,
                at=NOW,
                outcome="retry",
                status="dead",
                attempts=8,
                next_at=None,
                detail="HTTP 500",
            )
        ]
    )
    [(dead, event_type)] = await store.list_deliveries(status="dead")
    assert dead.id == d.id and dead.last_error == "HTTP 500" and event_type == ev.type
    assert await store.requeue([d.id, "dlv_unknown"], now=NOW) == [d.id]
    [(queued, _)] = await store.list_deliveries(status="queued")
    assert queued.attempts == 0
    assert [a["outcome"] for a in await store.attempts_of(d.id)] == ["retry"]


async def test_feed_lease_is_exclusive_until_it_expires(store: Store) -> None:
    minute = timedelta(minutes=1)
    assert await store.take_feed_lease("fr", holder="a", now=NOW, duration=minute)
    assert not await store.take_feed_lease("fr", holder="b", now=NOW, duration=minute)
    assert not await store.take_feed_lease("fr", holder="a", now=NOW + minute / 2, duration=minute)
    later = NOW + minute
    assert await store.take_feed_lease("fr", holder="b", now=later, duration=minute)
    assert await store.feed_lease_holders() == {"fr": "b"}


async def test_concurrent_lease_takers_one_wins(store: Store) -> None:
    wins = await asyncio.gather(
        *(
            store.take_feed_lease("x", holder=f"h{i}", now=NOW, duration=timedelta(minutes=1))
            for i in range(5)
        )
    )
    assert sum(wins) == 1


async def test_database_from_the_first_schema_is_upgraded_keeping_its_data(
    tmp_path: Path, state_url: str
) -> None:
    url = absolute(state_url, tmp_path)
    store = await Store.open(url, create=False)
    try:
        await store.migrate("0001")
        assert await store.schema_revision() == "0001"
        async with store.transaction() as tx:
            await tx.execute(t.meta.insert().values(key="schema", value="1"))
            await tx.execute(
                sa.text(
                    "INSERT INTO feed_state (feed_id, failures, etag) VALUES ('fr', 2, '\"v1\"')"
                )
            )
    finally:
        await store.close()
    upgraded = await Store.open(url)
    try:
        assert await upgraded.schema_revision() == head_revision()
        state = (await upgraded.feed_states())["fr"]
        assert (state.failures, state.etag, state.polled_by) == (2, '"v1"', None)
        assert await upgraded.take_feed_lease(
            "fr", holder="a", now=NOW, duration=timedelta(minutes=1)
        )
        async with upgraded.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            indexes = await conn.run_sync(
                lambda c: {ix["name"] for name in tables for ix in sa.inspect(c).get_indexes(name)}
            )
        assert set(t.metadata.tables) <= tables
        wanted = {ix.name for table in t.metadata.tables.values() for ix in table.indexes}
        assert wanted <= indexes, wanted - indexes
    finally:
        await upgraded.close()


async def test_in_lists_of_any_length_take_few_statement_shapes(store: Store) -> None:
    # Drivers cache prepared statements per connection, by SQL text: a list of each
    # length would be a statement of its own (notifier.store.padded).
    ev = event()
    async with store.transaction() as tx:
        await store.emit(tx, ev, deliveries(ev, 1), now=NOW)
    statements: set[str] = set()

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.add(statement)

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        for n in range(1, 101):
            wanted = [f"evt_{i}" for i in range(n)]
            found = {"evt_1"} if n > 1 else set()
            assert await store.emitted(wanted) == found
            assert set(await store.events_by_id(wanted)) == found
    finally:
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    shapes = {s for s in statements if " IN " in s.upper()}
    assert 0 < len(shapes) <= 2 * 8, len(shapes)  # two queries; lengths 1, 2, 4, … 128


def test_the_store_knows_the_newest_migration() -> None:
    from notifier.store import SCHEMA_HEAD

    assert head_revision() == SCHEMA_HEAD  # a new migration must move SCHEMA_HEAD too


def test_a_store_at_the_head_opens_without_alembic(tmp_path: Path) -> None:
    """Every start of `once` pays for Alembic only when there is something to migrate."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'state.db'}"
    script = (
        "import asyncio, sys\n"
        "from notifier.store import Store\n"
        "async def main():\n"
        f"    store = await Store.open({url!r})\n"
        "    print(await store.schema_revision() if 'alembic' in sys.modules else '-')\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
        "print('alembic' in sys.modules)\n"
    )
    run = [sys.executable, "-c", script]
    first = subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
    assert first.stdout.split() == [head_revision(), "True"]  # created: migrated
    again = subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
    assert again.stdout.split() == ["-", "False"]  # at the head: no Alembic at all
