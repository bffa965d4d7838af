"""SQLite's dialect: one writer, WAL, ``BEGIN IMMEDIATE`` for writes, and the store
rounds of the outbox run as one job in aiosqlite's thread."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.errors import StoreDamaged, StoreError
from notifier.store.dialect import Dialect, Step
from notifier.store.url import StateUrl

__all__ = ["SqliteDialect"]

# SQLite result codes (primary, the low byte of the extended code): sqlite.org/rescode.html
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_DAMAGE_TEXTS = ("database disk image is malformed", "file is not a database")


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
