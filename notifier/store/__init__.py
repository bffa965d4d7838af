"""The state store: one seam for SQLite and PostgreSQL.

Queries are named methods, grouped by table family (``feeds.py``, ``calendar.py``,
``queue.py``, ``deliveries.py``, ``subscriptions.py``, ``ledger.py``, ``held.py``) over
one connector (``engine.py``);
what differs between the backends lives in ``dialect.py`` and nowhere else; the state URL
is read in ``url.py``. Write transactions are explicit (``async with store.transaction()
as tx``) so that a state change, the events it produces and their deliveries commit
together (transactional outbox) or not at all. Every database error leaves the store as
``StoreError`` (``notifier.errors``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from notifier.errors import StoreError
from notifier.store.calendar import CalendarQueries
from notifier.store.deliveries import DeliveryLogQueries
from notifier.store.dialect import MIGRATION_LOCK, database_errors, dialect_for
from notifier.store.engine import READ, WRITE, guarded, in_chunks, padded, short, translate
from notifier.store.feeds import FeedQueries, FeedState, UnchangedPoll
from notifier.store.held import HeldChange, HeldQueries
from notifier.store.instance import InstanceLock, instance_lock
from notifier.store.ledger import LedgerQueries, mask_target
from notifier.store.queue import AttemptRecord, QueueQueries
from notifier.store.retention import Pruned, prune
from notifier.store.subscriptions import SubscriptionQueries
from notifier.store.url import StateUrl, parse_state_url

__all__ = [
    "AttemptRecord",
    "FeedState",
    "HeldChange",
    "InstanceLock",
    "Pruned",
    "StateUrl",
    "Store",
    "UnchangedPoll",
    "in_chunks",
    "instance_lock",
    "mask_target",
    "padded",
    "parse_state_url",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Store(
    FeedQueries,
    CalendarQueries,
    QueueQueries,
    DeliveryLogQueries,
    SubscriptionQueries,
    LedgerQueries,
    HeldQueries,
):
    """Async access to the state database."""

    # --- lifecycle ---------------------------------------------------------------------

    @classmethod
    async def open(cls, url: str, *, create: bool = True) -> Store:
        """Open (and on first start create) the store at a state URL.

        An existing SQLite file is checked first (``PRAGMA quick_check``): a damaged one
        is a ``StoreDamaged`` that names the file, before anything reads or writes it.
        """
        state = parse_state_url(url)
        dialect = dialect_for(state)
        dialect.prepare()
        existed = state.exists()
        engine = create_async_engine(state.driver_url(), **dialect.engine_options())
        dialect.configure_engine(engine)
        store = cls(engine, url=url, dialect=dialect)
        try:
            if existed:
                async with engine.connect() as conn:
                    await dialect.verify(conn)
            if create:
                # A store already at the head needs no Alembic (its import and its
                # revision map cost ~0.2 s of every start, `once` from cron included).
                if not existed or not await store._at_head():
                    await store._migrate_unguarded("head")
                async with store.transaction() as conn:
                    await store._init_meta(conn)
        except StoreError:
            await engine.dispose()
            raise
        except database_errors() as exc:
            await engine.dispose()
            doing = f"cannot open state store {state.masked}"
            raise translate(exc, dialect=dialect, doing=doing) from None
        except Exception as exc:
            from alembic.util import CommandError

            if not isinstance(exc, CommandError):
                raise
            # e.g. a revision from a newer tariff-notifier
            await engine.dispose()
            raise StoreError(f"cannot migrate {state.masked}: {short(exc)}") from None
        return store

    async def _at_head(self) -> bool:
        """Whether the schema is at ``SCHEMA_HEAD``, read without Alembic."""
        async with self.engine.connect() as conn:
            return await _version_of(conn) == SCHEMA_HEAD

    @guarded(WRITE)
    async def close(self) -> None:
        await self.engine.dispose()

    @guarded(WRITE)
    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic (a new database starts at 0001).

        On PostgreSQL an advisory lock serialises instances that start together.
        """
        await self._migrate_unguarded(revision)

    async def _migrate_unguarded(self, revision: str) -> None:
        async with self.engine.connect() as conn:
            await conn.run_sync(self._run_migrations, revision)
            await conn.commit()

    @guarded(READ)
    async def schema_revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    def _run_migrations(self, connection: sa.Connection, revision: str) -> None:
        from alembic import command

        self.dialect.advisory_lock_sync(connection, MIGRATION_LOCK)
        command.upgrade(_alembic_config(connection), revision)

    # --- retention ---------------------------------------------------------------------

    @guarded(WRITE)
    async def prune(
        self,
        *,
        now: datetime,
        retention: timedelta,
        feed_ids: Iterable[str],
        ledger_retention: timedelta | None = None,
    ) -> Pruned:
        """Forget old events, delivery logs and feed entries, and ledger rows older than
        ``ledger_retention`` (None: keep them) (notifier/store/retention.py)."""
        return await prune(
            self,
            now=now,
            retention=retention,
            feed_ids=set(feed_ids),
            ledger_retention=ledger_retention,
        )


#: The newest migration in ``migrations/versions`` (a test checks it against Alembic's
#: head, so a new migration cannot be forgotten here).
SCHEMA_HEAD = "0006"


async def _version_of(conn: AsyncConnection) -> str | None:
    """The revision Alembic recorded, or None (no ``alembic_version`` table yet)."""

    def read(sync: sa.Connection) -> str | None:
        if not sa.inspect(sync).has_table("alembic_version"):
            return None
        return sync.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    return await conn.run_sync(read)


def _alembic_config(connection: sa.Connection) -> Any:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _current_revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
