"""What differs between SQLite and PostgreSQL, and nothing else.

The queries (``feeds.py``, ``calendar.py``, ``queue.py``, ...) are the same code on both
backends; where a backend needs its own SQL or its own locking they ask the store's
``Dialect``: insert-if-absent and upsert, how a claim locks its rows, advisory locks,
engine setup, and which errors mean "damaged" or "unreachable".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.errors import StoreDamaged, StoreError
from notifier.store.url import StateUrl

__all__ = [
    "DIGEST_LOCK",
    "MIGRATION_LOCK",
    "RETENTION_LOCK",
    "Dialect",
    "PostgresDialect",
    "SqliteDialect",
    "Step",
    "dialect_for",
]

# Advisory lock keys (PostgreSQL); on SQLite there is one writer and they always succeed.
DIGEST_LOCK = 0x7461726966  # digest claims ("tarif")
MIGRATION_LOCK = 0x74617269  # schema migrations
RETENTION_LOCK = 0x7265746E  # retention ("retn")

# SQLite result codes (primary, the low byte of the extended code): sqlite.org/rescode.html
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_DAMAGE_TEXTS = ("database disk image is malformed", "file is not a database")


class Step(NamedTuple):
    """One statement of a write transaction run by :meth:`Dialect.run_steps`: ``sql``
    (``?`` placeholders) once per row of ``rows``, or with ``fetch`` once with
    ``rows[0]`` as its parameters, its rows kept."""

    sql: str
    rows: Sequence[Sequence[Any]]
    fetch: bool = False


class Dialect:
    """One backend's differences. A store holds exactly one (``dialect_for(url)``)."""

    name: str
    #: SQLite: one process per state file (``instance_lock``); PostgreSQL: several.
    single_instance: bool

    def __init__(self, state: StateUrl) -> None:
        self.state = state

    # --- the engine -----------------------------------------------------------------------

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments for ``create_async_engine``."""
        return {}

    def configure_engine(self, engine: AsyncEngine) -> None:
        """Connection setup for a new engine (pragmas, transaction control)."""

    def prepare(self) -> None:
        """Make the database openable before the engine is created (the SQLite folder)."""

    async def verify(self, conn: AsyncConnection) -> None:
        """Raise ``StoreDamaged`` when the database is damaged (checked at open)."""

    # --- SQL --------------------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        raise NotImplementedError

    def insert_ignore(self, table: sa.Table, *keys: str) -> Any:
        """``INSERT … ON CONFLICT (keys) DO NOTHING``: a row that exists stays as it is."""
        return self._insert(table).on_conflict_do_nothing(index_elements=list(keys))

    def upsert(self, table: sa.Table, keys: Sequence[str], update: Sequence[str]) -> Any:
        """``INSERT … ON CONFLICT (keys) DO UPDATE``: a row that exists gets the ``update``
        columns of the new one (the others, e.g. a first-seen time, stay)."""
        insert = self._insert(table)
        return insert.on_conflict_do_update(
            index_elements=list(keys), set_={name: insert.excluded[name] for name in update}
        )

    def claimable(self, select: sa.Select[Any]) -> sa.Select[Any]:
        """``select`` made safe for claiming queue rows against other workers."""
        return select

    # --- driver SQL (the queue's hot statements, ``store/queue_sql.py``) --------------------
    #
    # Written once with ``?`` placeholders and run with ``exec_driver_sql`` on rows already
    # in the driver's types: SQLAlchemy then processes no parameter and no result value in
    # Python (its per-row bind processing was most of the store's cost per delivery).

    #: Appended to the sub-select that picks queue rows to claim.
    claim_lock = ""

    def sql(self, text: str) -> str:
        """``text`` in the driver's parameter style (``?`` as written: qmark)."""
        return text

    async def execute_many(
        self, conn: AsyncConnection, text: str, rows: Sequence[Sequence[Any]]
    ) -> None:
        """``text`` (``?`` placeholders) once per row, in ``conn``'s transaction."""
        await conn.exec_driver_sql(self.sql(text), list(rows))

    async def fetch_all(
        self, conn: AsyncConnection, text: str, params: Sequence[Any]
    ) -> list[Sequence[Any]]:
        """The rows of one statement (``?`` placeholders), in ``conn``'s transaction."""
        return list((await conn.exec_driver_sql(self.sql(text), tuple(params))).all())

    async def run_steps(self, conn: AsyncConnection, steps: Sequence[Step]) -> list[Any]:
        """``steps`` in ``conn``'s transaction, in order; the rows of the last ``fetch``."""
        found: list[Any] = []
        for step in steps:
            if step.fetch:
                found = await self.fetch_all(conn, step.sql, step.rows[0])
            elif step.rows:
                await self.execute_many(conn, step.sql, step.rows)
        return found

    async def run_transaction(
        self, conn: AsyncConnection, steps: Sequence[Step]
    ) -> list[Any] | None:
        """``steps`` as one write transaction of their own on ``conn`` (not begun), in one
        call to the driver; None when this driver cannot (the caller begins one)."""
        return None

    def db_time(self, moment: datetime | None) -> Any:
        """An aware datetime as the driver stores it (as ``schema.UTCDateTime`` does)."""
        return moment

    def py_time(self, value: Any) -> datetime | None:
        """A stored time as read by the driver, as an aware UTC datetime."""
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    # --- locks ------------------------------------------------------------------------------

    def write_lock(self) -> AbstractAsyncContextManager[Any]:
        """Held around every write transaction of this process."""
        return contextlib.nullcontext()

    async def try_advisory_lock(self, conn: AsyncConnection, key: int) -> bool:
        """A lock for the rest of ``conn``'s transaction, unless another instance holds it."""
        return True

    def advisory_lock_sync(self, connection: sa.Connection, key: int) -> None:
        """Wait for a lock for the rest of the (sync) transaction: migrations."""

    # --- errors -----------------------------------------------------------------------------

    def damage(self, exc: BaseException) -> str | None:
        """The reason when ``exc`` says the database itself is damaged, else None."""
        return None

    def damaged(self, reason: str) -> StoreDamaged:
        """The error for a damaged database."""
        return StoreDamaged(f"state database {self.state.masked} is damaged ({reason})")

    def unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the database cannot be reached (vs a failed statement)."""
        return isinstance(exc, PoolTimeout)


class SqliteDialect(Dialect):
    """A file (or memory) database with one writer: WAL, a busy timeout, ``BEGIN
    IMMEDIATE`` for writes, and writers of this process queued on an asyncio lock."""

    name = "sqlite"
    single_instance = True

    def __init__(self, state: StateUrl) -> None:
        super().__init__(state)
        # SQLite has one writer: in this process, writers queue here instead of on
        # SQLite's busy timeout, which a burst of concurrent polls would outlast.
        self._writer = asyncio.Lock()

    @property
    def path(self) -> Path | None:
        """The state file (None in memory)."""
        return self.state.path

    def prepare(self) -> None:
        path = self.path
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create state folder {path.parent}: {exc}") from None
        if path.parent.exists() and not os.access(path.parent, os.W_OK):
            raise StoreError(f"state folder {path.parent} is not writable")

    def configure_engine(self, engine: AsyncEngine) -> None:
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

    async def verify(self, conn: AsyncConnection) -> None:
        """``PRAGMA quick_check`` of an existing file: a damaged page found now is one
        clear error at start, not a failure in whichever query first reads it (about
        2 ms per MB of state)."""
        if self.path is None or not self.path.exists():
            return
        rows = (await conn.exec_driver_sql("PRAGMA quick_check")).scalars().all()
        await conn.rollback()
        if rows != ["ok"]:
            raise self.damaged(str(rows[0]) if rows else "no answer to an integrity check")

    def damaged(self, reason: str) -> StoreDamaged:
        """The error for a damaged state file: it names the file and the way out."""
        if self.path is None:
            return super().damaged(reason)
        return StoreDamaged(
            f"state file {self.path} is damaged ({reason}): restore it from a backup, or "
            "move it aside to start over with a fresh baseline"
        )

    def _insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def db_time(self, moment: datetime | None) -> Any:
        # SQLAlchemy's SQLite DATETIME text, naive UTC with all six fractional digits:
        # the queue compares these strings (``next_at <= ?``), so the form must not vary.
        if moment is None:
            return None
        if moment.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

    def py_time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    # aiosqlite runs each call in its connection's thread: through SQLAlchemy's adapter a
    # statement is three hand-offs to that thread (cursor, execute, close or fetch), each
    # waiting for the GIL while the event loop is busy sending. Straight to the driver
    # connection it is one, in the same transaction (the connection SQLAlchemy began it
    # on); its sqlite3 errors leave as StoreError like any other (``database_errors``).

    async def execute_many(
        self, conn: AsyncConnection, text: str, rows: Sequence[Sequence[Any]]
    ) -> None:
        await _driver(await conn.get_raw_connection()).executemany(text, rows)

    async def fetch_all(
        self, conn: AsyncConnection, text: str, params: Sequence[Any]
    ) -> list[Sequence[Any]]:
        return list(await _driver(await conn.get_raw_connection()).execute_fetchall(text, params))

    async def run_transaction(
        self, conn: AsyncConnection, steps: Sequence[Step]
    ) -> list[Any] | None:
        # A fan-out's store round (results, attempts, ledger rows, the next claim) as one
        # job for aiosqlite's thread: BEGIN IMMEDIATE, the statements, COMMIT. Statement
        # by statement it was ~8 hand-offs, each waiting for a turn of the busy loop, and
        # the store's share of a round cost ~8 ms of CPU per 100 deliveries against ~4.4
        # ms so (a quiet loop, SQLAlchemy's transaction machinery included). aiosqlite has
        # no public call for this; without its ``_execute`` the caller runs the steps one
        # by one (tests/integration/test_store_queue_sql.py checks that this path is the
        # one taken, and that both write the same rows).
        driver = _driver(await conn.get_raw_connection())
        submit = getattr(driver, "_execute", None)
        database = getattr(driver, "_connection", None)
        if submit is None or not isinstance(database, sqlite3.Connection):
            return None
        found: list[Any] = await submit(_sqlite_transaction, database, steps)
        return found

    def write_lock(self) -> AbstractAsyncContextManager[Any]:
        return self._writer

    def damage(self, exc: BaseException) -> str | None:
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        if not isinstance(orig, sqlite3.DatabaseError):
            return None
        text = (str(orig).splitlines() or [""])[0]
        code = getattr(orig, "sqlite_errorcode", 0) & 0xFF
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or text in _DAMAGE_TEXTS:
            return text or type(orig).__name__
        return None


class PostgresDialect(Dialect):
    """A server shared by several instances: claims with ``FOR UPDATE SKIP LOCKED``, and
    advisory locks so that one instance at a time claims digests, prunes, or migrates."""

    name = "postgresql"
    single_instance = False

    def engine_options(self) -> dict[str, Any]:
        # A server restart leaves dead connections in the pool: test them on checkout.
        return {"pool_pre_ping": True}

    def _insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def claimable(self, select: sa.Select[Any]) -> sa.Select[Any]:
        return select.with_for_update(skip_locked=True)

    claim_lock = " FOR UPDATE SKIP LOCKED"

    def sql(self, text: str) -> str:
        # asyncpg numbers its parameters ($1, $2, ...); the statements hold no literal "?".
        return _numbered(text)

    def db_time(self, moment: datetime | None) -> Any:
        if moment is not None and moment.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return moment

    async def try_advisory_lock(self, conn: AsyncConnection, key: int) -> bool:
        return bool(await conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(key))))

    def advisory_lock_sync(self, connection: sa.Connection, key: int) -> None:
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))

    def unavailable(self, exc: BaseException) -> bool:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        # SQLAlchemy wraps the driver's error (``orig``), which wraps asyncpg's own.
        for cause in _causes(exc):
            if isinstance(cause, PoolTimeout | OSError):
                return True  # asyncpg raises a refused connection raw
            if type(cause).__name__ in ("InterfaceError", "ConnectionDoesNotExistError"):
                return True  # asyncpg's, or SQLAlchemy's adapted copy of it
            if str(getattr(cause, "sqlstate", "") or "").startswith(_UNREACHABLE_STATES):
                return True
        return False


# SQLSTATEs that mean "no usable server": connection exceptions, shutdown and start-up,
# no such database, too many connections (PostgreSQL docs, appendix A).
_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03", "3D000", "53300")


def _sqlite_transaction(database: sqlite3.Connection, steps: Sequence[Step]) -> list[Any]:
    """``steps`` in one ``BEGIN IMMEDIATE`` transaction (in aiosqlite's thread; the
    connection is in autocommit mode, ``configure_engine``)."""
    database.execute("BEGIN IMMEDIATE")
    try:
        found: list[Any] = []
        for step in steps:
            if step.fetch:
                found = database.execute(step.sql, step.rows[0]).fetchall()
            elif step.rows:
                database.executemany(step.sql, step.rows)
        database.execute("COMMIT")
    except BaseException:
        if database.in_transaction:  # SQLite may have rolled back already (disk full)
            database.execute("ROLLBACK")
        raise
    return found


def _driver(raw: Any) -> Any:
    """The driver's own connection (aiosqlite's) under SQLAlchemy's pooled one."""
    driver = raw.driver_connection
    if driver is None:
        raise StoreError("state store connection is closed")
    return driver


@functools.cache
def _numbered(text: str) -> str:
    parts = text.split("?")
    out = [parts[0]]
    for number, part in enumerate(parts[1:], start=1):
        out += [f"${number}", part]
    return "".join(out)


def _causes(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found and len(found) < 4:
        found.append(current)
        orig = current.orig if isinstance(current, DBAPIError) else None
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return found


def dialect_for(state: StateUrl) -> Dialect:
    """The dialect of a parsed state URL."""
    if state.dialect == "sqlite":
        return SqliteDialect(state)
    return PostgresDialect(state)


@functools.cache
def database_errors() -> tuple[type[BaseException], ...]:
    """Every exception type that means "the database failed" on either backend.

    ``OSError`` covers asyncpg's raw ``ConnectionRefusedError`` (and ``TimeoutError``);
    the drivers' own errors are listed for the few paths where SQLAlchemy does not wrap
    them (a connect event, a pool checkout).
    """
    return (SQLAlchemyError, OSError, sqlite3.Error, *_asyncpg_errors())


@functools.cache
def _asyncpg_errors() -> tuple[type[BaseException], ...]:
    """asyncpg's base errors; none without asyncpg (it is the optional ``postgres`` extra)."""
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ImportError:
        return ()
    return (asyncpg.PostgresError, asyncpg.InterfaceError)
