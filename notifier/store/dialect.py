"""What differs between SQLite and PostgreSQL, and nothing else.

The queries (``feeds.py``, ``calendar.py``, ``queue.py``, ...) are the same code on both
backends; where a backend needs its own SQL or its own locking they ask the store's
``Dialect``: insert-if-absent and upsert, how a claim locks its rows, advisory locks,
engine setup, and which errors mean "damaged" or "unreachable". This module holds what
both share; each backend's own is ``sqlite_dialect.py`` and ``postgres_dialect.py``.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.errors import StoreDamaged
from notifier.store.url import StateUrl

__all__ = [
    "DIGEST_LOCK",
    "MIGRATION_LOCK",
    "RETENTION_LOCK",
    "Dialect",
    "Step",
    "dialect_for",
]

# Advisory lock keys (PostgreSQL); on SQLite there is one writer and they always succeed.
DIGEST_LOCK = 0x7461726966  # digest claims ("tarif")
MIGRATION_LOCK = 0x74617269  # schema migrations
RETENTION_LOCK = 0x7265746E  # retention ("retn")


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


def dialect_for(state: StateUrl) -> Dialect:
    """The dialect of a parsed state URL (``sqlite_dialect``, ``postgres_dialect``)."""
    if state.dialect == "sqlite":
        from notifier.store.sqlite_dialect import SqliteDialect

        return SqliteDialect(state)
    from notifier.store.postgres_dialect import PostgresDialect

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
