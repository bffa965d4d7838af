"""The connector: one engine, its dialect, explicit transactions, and the error wall.

Nothing a driver raises leaves the store as itself: every public coroutine runs under
``guarded`` (and every transaction under the same translation), which turns SQLAlchemy,
asyncpg, sqlite3 and socket errors into ``StoreError`` with one readable line:
``StoreDamaged`` for a damaged SQLite file (naming it), ``StoreUnavailable`` for a
database that cannot be reached.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.errors import StoreError, StoreUnavailable
from notifier.store import schema as t
from notifier.store.dialect import Dialect, Step, database_errors, dialect_for
from notifier.store.url import StateUrl, parse_state_url

__all__ = ["Connector", "guarded", "in_chunks", "padded", "translate"]

SCHEMA_VERSION = "1"
log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound="Connector")


def translate(exc: BaseException, *, dialect: Dialect, doing: str) -> StoreError:
    """The store's own error for a database error met while ``doing`` (a phrase such as
    "state store write failed")."""
    log.debug("%s", doing, exc_info=exc)
    reason = dialect.damage(exc)
    if reason is not None:
        return dialect.damaged(reason)
    if dialect.unavailable(exc):
        return StoreUnavailable(f"state database {dialect.state.masked} unreachable: {short(exc)}")
    return StoreError(f"{doing}: {short(exc)}")


def short(exc: BaseException) -> str:
    """The first line of what the driver said (without SQLAlchemy's SQL and links)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if isinstance(orig, BaseException) else exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def guarded(
    doing: str,
) -> Callable[
    [Callable[Concatenate[C, P], Awaitable[R]]], Callable[Concatenate[C, P], Awaitable[R]]
]:
    """Run a store coroutine with every database error turned into ``StoreError``."""

    def wrap(
        method: Callable[Concatenate[C, P], Awaitable[R]],
    ) -> Callable[Concatenate[C, P], Awaitable[R]]:
        @functools.wraps(method)
        async def run(self: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(self, *args, **kwargs)
            except database_errors() as exc:
                raise translate(exc, dialect=self.dialect, doing=doing) from None

        return run

    return wrap


READ = "state store read failed"
WRITE = "state store write failed"


class Connector:
    """An engine on one state database and its dialect; the base of the query families."""

    def __init__(self, engine: AsyncEngine, *, url: str, dialect: Dialect | None = None) -> None:
        self.engine = engine
        self.url = url
        self.state: StateUrl = parse_state_url(url)
        # The dialect that configured ``engine`` (it holds SQLite's write lock).
        self.dialect: Dialect = dialect or dialect_for(self.state)

    @property
    def is_sqlite(self) -> bool:
        """Kept for older callers; the store itself asks ``dialect`` instead."""
        return self.dialect.name == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite: one writer, no upgrade races).

        On SQLite the writers of this process queue on the dialect's write lock. A
        database error inside the block, or at commit, leaves as ``StoreError``.
        """
        try:
            async with self.dialect.write_lock(), self.engine.connect() as conn:
                await conn.execution_options(notifier_write=True)
                async with conn.begin():
                    yield conn
        except database_errors() as exc:
            raise translate(exc, dialect=self.dialect, doing=WRITE) from None

    async def write_steps(self, steps: Sequence[Step]) -> list[Any]:
        """``steps`` as one write transaction; the rows of the last ``fetch`` step.

        As :meth:`transaction`, but run by the driver in one call where it can
        (``Dialect.run_transaction``): the outbox's store rounds."""
        try:
            async with self.dialect.write_lock(), self.engine.connect() as conn:
                found = await self.dialect.run_transaction(conn, steps)
                if found is not None:
                    return found
                await conn.execution_options(notifier_write=True)
                async with conn.begin():
                    return await self.dialect.run_steps(conn, steps)
        except database_errors() as exc:
            raise translate(exc, dialect=self.dialect, doing=WRITE) from None

    # --- meta --------------------------------------------------------------------------

    @guarded(READ)
    async def get_meta(self, key: str) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.scalar(sa.select(t.meta.c.value).where(t.meta.c.key == key))

    @guarded(WRITE)
    async def set_meta(self, conn: AsyncConnection, key: str, value: str) -> None:
        created = await conn.execute(
            self.dialect.insert_ignore(t.meta, "key").values(key=key, value=value)
        )
        if created.rowcount == 0:
            await conn.execute(t.meta.update().where(t.meta.c.key == key).values(value=value))

    async def _init_meta(self, conn: AsyncConnection) -> None:
        existing = await conn.scalar(sa.select(t.meta.c.value).where(t.meta.c.key == "schema"))
        if existing is None:
            await conn.execute(
                self.dialect.insert_ignore(t.meta, "key"),
                [
                    {"key": "schema", "value": SCHEMA_VERSION},
                    {"key": "unsubscribe_secret", "value": secrets.token_urlsafe(32)},
                ],
            )


def in_chunks(values: Iterable[Any], size: int = 500) -> Iterator[list[Any]]:
    """Distinct ``values`` in padded chunks of at most ``size`` (before padding), for
    ``IN (…)`` lists that stay within every driver's limit on parameters."""
    items = list(dict.fromkeys(values))
    for start in range(0, len(items), size):
        yield padded(items[start : start + size])


def padded(values: Sequence[Any]) -> list[Any]:
    """``values`` padded to a power of two with its last value, for ``IN (…)``.

    Each length of an IN list is a statement of its own (``IN (?, ?, ?)``), and the
    drivers cache prepared statements per connection (sqlite3 keeps 128, asyncpg 100):
    lists of every length from 1 to 500 would fill those caches with near-copies (about
    2 MiB per SQLite connection) and push out the statements that repeat. Padded, a
    query has at most ten shapes. A repeated value changes nothing in an IN list.
    """
    items = list(values)
    if not items:
        return items
    size = 1 << (len(items) - 1).bit_length()
    return items + [items[-1]] * (size - len(items))
