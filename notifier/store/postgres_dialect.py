"""PostgreSQL's dialect: a server shared by several instances."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.store.dialect import Dialect

__all__ = ["PostgresDialect"]


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
