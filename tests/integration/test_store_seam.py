"""The store as one seam: the state URL read in one place, the dialect's SQL, the
single-instance lock, and every database error leaving the store as ``StoreError``.

Run on real SQLite files and a real PostgreSQL server (the ``store`` fixture gives both);
nothing is mocked: an unreachable server is a port with nothing listening, a database
that goes away is dropped.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from notifier.errors import StateUrlError, StoreError, StoreUnavailable
from notifier.store import Store, instance_lock, parse_state_url
from notifier.store import schema as t
from notifier.store.dialect import dialect_for
from notifier.store.postgres_dialect import PostgresDialect
from notifier.store.sqlite_dialect import SqliteDialect
from tests.conftest import PG_URL_ENV, pg_database

NOW = datetime(2025, 5, 3, 4, 1, tzinfo=UTC)
NOBODY_LISTENS = "postgresql://postgres:hunter2@127.0.0.1:1/test"


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    assert "[SQL:" not in text and "sqlalche.me" not in text, text
    return text


# --- the state URL ---------------------------------------------------------------------


def test_a_sqlite_url_names_its_file_and_lock(tmp_path: Path) -> None:
    state = parse_state_url(f"sqlite:///{tmp_path}/state/n.db")
    assert (state.scheme, state.dialect, state.path) == (
        "sqlite",
        "sqlite",
        tmp_path / "state/n.db",
    )
    assert state.lock_path == tmp_path / "state/n.db.lock"
    assert state.masked == f"sqlite:///{tmp_path}/state/n.db"
    assert state.driver_url() == f"sqlite+aiosqlite:///{tmp_path}/state/n.db"
    assert not state.exists()
    (tmp_path / "state").mkdir()
    (tmp_path / "state/n.db").touch()
    assert state.exists()
    assert parse_state_url("sqlite:///state/n.db").path == Path("state/n.db")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_url_has_no_file(url: str) -> None:
    state = parse_state_url(url)
    assert state.in_memory and state.path is None and state.lock_path is None
    assert not state.exists()
    assert state.driver_url() == "sqlite+aiosqlite" + url[len("sqlite") :]


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg"])
def test_a_postgresql_url_is_masked_for_output(scheme: str) -> None:
    state = parse_state_url(f"{scheme}://alerts:s%40cret@db.example:5433/notifier")
    assert state.dialect == "postgresql" and state.path is None and not state.exists()
    assert state.masked == f"{scheme}://alerts:***@db.example:5433/notifier"
    assert str(state) == state.masked
    assert "cret" not in state.masked
    assert state.driver_url() == "postgresql+asyncpg://alerts:s%40cret@db.example:5433/notifier"
    assert not dialect_for(state).single_instance


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://root:pw@db/x",
            'unsupported state URL scheme "mysql": expected sqlite:///PATH or postgresql://…',
        ),
        ("state/n.db", 'state URL "state/n.db" is not a URL'),
        ("postgresql://alerts:pw@db.example", "names no database"),
    ],
)
def test_an_unusable_url_is_a_clear_error_before_anything_opens(url: str, message: str) -> None:
    with pytest.raises(StateUrlError) as caught:
        parse_state_url(url)
    assert message in one_line(caught.value)
    assert isinstance(caught.value, StoreError) and isinstance(caught.value, ValueError)
    assert ":pw@" not in str(caught.value)


async def test_opening_an_unsupported_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match='unsupported state URL scheme "mysql"'):
        await Store.open("mysql://root@127.0.0.1/x")


# --- the dialect -----------------------------------------------------------------------


async def test_the_dialect_follows_the_url(store: Store) -> None:
    expected = SqliteDialect if store.url.startswith("sqlite") else PostgresDialect
    assert type(store.dialect) is expected
    assert store.is_sqlite is (expected is SqliteDialect)
    assert store.dialect.single_instance is (expected is SqliteDialect)


async def test_insert_ignore_keeps_the_row_that_exists(store: Store) -> None:
    insert = store.dialect.insert_ignore(t.meta, "key")
    async with store.transaction() as tx:
        first = await tx.execute(insert.values(key="k", value="first"))
        second = await tx.execute(insert.values(key="k", value="second"))
    assert (first.rowcount, second.rowcount) == (1, 0)
    assert await store.get_meta("k") == "first"


async def test_upsert_updates_only_the_named_columns(store: Store) -> None:
    upsert = store.dialect.upsert(
        t.seen_entries, ("feed_id", "entry_key"), ("content_hash", "last_seen_at")
    )
    row = {
        "feed_id": "fr",
        "entry_key": "e1",
        "content_hash": "h1",
        "title": "Old title",
        "summary": "",
        "first_seen_at": NOW,
        "last_seen_at": NOW,
    }
    later = NOW + timedelta(days=1)
    async with store.transaction() as tx:
        await tx.execute(upsert, [row])
        changed = {"content_hash": "h2", "title": "New", "first_seen_at": later}
        await tx.execute(upsert, [{**row, **changed, "last_seen_at": later}])
    async with store.engine.connect() as conn:
        [stored] = (await conn.execute(sa.select(t.seen_entries))).all()
    assert (stored.content_hash, stored.last_seen_at) == ("h2", later)  # updated
    assert (stored.title, stored.first_seen_at) == ("Old title", NOW)  # kept


async def test_advisory_locks_exclude_other_transactions_on_postgresql(store: Store) -> None:
    async with store.transaction() as first:
        assert await store.dialect.try_advisory_lock(first, 0x5EA4)
        if store.dialect.single_instance:
            return  # SQLite: one writer at a time already; the lock is always granted
        async with store.engine.connect() as other, other.begin():
            assert not await store.dialect.try_advisory_lock(other, 0x5EA4)
    async with store.transaction() as later:  # released with its transaction
        assert await store.dialect.try_advisory_lock(later, 0x5EA4)


# --- the single-instance lock ----------------------------------------------------------


def test_a_second_process_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state/n.db"
    with instance_lock(url) as held:
        assert held.held and held.path == tmp_path / "state/n.db.lock"
        with pytest.raises(StoreError) as caught:
            instance_lock(url)
        message = one_line(caught.value)
        assert message.startswith(f"another tariff-notifier is using {tmp_path}/state/n.db:")
        assert "use PostgreSQL to run several" in message
    with instance_lock(url) as again:  # released on exit
        assert again.held


def test_postgresql_and_memory_take_no_lock() -> None:
    for url in ("postgresql://postgres@127.0.0.1/test", "sqlite://"):
        lock = instance_lock(url)
        assert not lock.held and lock.path is None
        lock.close()  # an alias of release()


def test_a_lock_that_cannot_be_made_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot lock the state store"):
        instance_lock(f"sqlite:///{tmp_path}/file/n.db")  # its folder is a file


# --- database errors leave as StoreError ------------------------------------------------


async def test_an_unreachable_server_is_one_line_on_open() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        await Store.open(NOBODY_LISTENS)
    message = one_line(caught.value)
    assert "postgresql://postgres:***@127.0.0.1:1/test" in message
    assert "hunter2" not in message
    assert not isinstance(caught.value, SQLAlchemyError | OSError)


async def test_reads_and_writes_on_an_unreachable_server_are_store_errors() -> None:
    store = await Store.open(NOBODY_LISTENS, create=False)  # connects on first use
    try:
        for call in (
            store.counts(),
            store.feed_states(),
            store.get_meta("schema"),
            store.release_claims("w"),
            store.claim_due(now=NOW, limit=1, worker="w", lease=timedelta(seconds=5)),
            store.schema_revision(),
            store.prune(now=NOW, retention=timedelta(days=90), feed_ids=[]),
            store.ledger(),
        ):
            with pytest.raises(StoreUnavailable) as caught:
                await call
            assert "unreachable" in one_line(caught.value)
        with pytest.raises(StoreUnavailable):
            async with store.transaction() as tx:
                await store.record_poll(tx, "fr", now=NOW, error=None)
    finally:
        await store.close()


async def test_a_database_that_goes_away_is_a_store_error(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    store = await Store.open(f"sqlite:///{folder}/n.db")
    await store.close()
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()  # SQLite cannot even create a new file now
    try:
        with pytest.raises(StoreError) as caught:
            await store.counts()
        assert "unable to open database file" in one_line(caught.value)
        with pytest.raises(StoreError, match="state store write failed"):
            await store.take_feed_lease("fr", holder="a", now=NOW, duration=timedelta(1))
    finally:
        await store.close()
        # aiosqlite stops the thread of a connection that failed to open without waiting
        # for it: let it finish before the test's event loop closes.
        await asyncio.sleep(0.2)


async def test_a_dropped_postgresql_database_is_a_store_error() -> None:
    admin = os.environ.get(PG_URL_ENV)
    if not admin:
        pytest.skip(f"needs {PG_URL_ENV}")
    async with pg_database(admin) as url:
        store = await Store.open(url)
        await store.counts()
        import asyncpg

        conn = await asyncpg.connect(admin.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            name = sa.engine.make_url(url).database
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await store.counts()
            assert "does not exist" in one_line(caught.value)
            with pytest.raises(StoreUnavailable):
                await store.take_feed_lease("fr", holder="a", now=NOW, duration=timedelta(1))
        finally:
            await store.close()


async def test_a_failed_statement_inside_a_transaction_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError) as caught:
        async with store.transaction() as tx:
            await tx.execute(t.meta.insert().values(key="dup", value="1"))
            await tx.execute(t.meta.insert().values(key="dup", value="2"))
    assert one_line(caught.value).startswith("state store write failed: ")
    assert await store.get_meta("dup") is None  # rolled back


def test_sqlite3_errors_are_database_errors() -> None:
    from notifier.store.dialect import database_errors

    assert issubclass(sqlite3.DatabaseError, database_errors())
    assert issubclass(ConnectionRefusedError, database_errors())
    assert issubclass(SQLAlchemyError, database_errors())
