"""Shared fixtures: real peers on 127.0.0.1 and a config writer."""

from __future__ import annotations

import base64
import contextlib
import os
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from notifier.store import Store
from tests.peers.daemon import Daemon
from tests.peers.feeds import FeedServer
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import WebhookPeer


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@dataclass
class FakeClock:
    """An injectable clock: tests move time instead of waiting for it."""

    now: datetime = datetime(2025, 4, 17, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpPeer]:
    async with SmtpPeer() as peer:
        yield peer


@pytest.fixture
async def hooks() -> AsyncIterator[WebhookPeer]:
    async with WebhookPeer() as peer:
        yield peer


@pytest.fixture
async def feeds() -> AsyncIterator[FeedServer]:
    server = await FeedServer().start()
    yield server
    await server.stop()


WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write notifier.toml (+ a calendar file) into tmp_path; returns the config path."""

    def write(body: str, *, calendar: str = "", name: str = "notifier.toml") -> Path:
        (tmp_path / "calendar").mkdir(exist_ok=True)
        (tmp_path / "calendar" / "rules.toml").write_text(textwrap.dedent(calendar))
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return path

    return write


@pytest.fixture
async def daemons() -> AsyncIterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        await daemon.kill()


PG_URL_ENV = "NOTIFIER_TEST_PG_URL"


def _pg_admin_url() -> str | None:
    return os.environ.get(PG_URL_ENV) or None


@pytest.fixture(params=["sqlite", "postgresql"])
async def state_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The state store URL for a test, once per backend.

    SQLite: a file under the config's folder. PostgreSQL: a fresh database on the
    server named by NOTIFIER_TEST_PG_URL (created and dropped around the test); without
    that variable the PostgreSQL half is skipped, saying why.
    """
    if request.param == "sqlite":
        yield "sqlite:///state/n.db"
        return
    admin = _pg_admin_url()
    if admin is None:
        pytest.skip(
            f"PostgreSQL tests need {PG_URL_ENV} (e.g. postgresql://postgres@127.0.0.1/test)"
        )
    async with pg_database(admin) as url:
        yield url


def absolute(state_url: str, tmp_path: Path) -> str:
    """``state_url`` as a URL that does not depend on a config file's folder."""
    return state_url if state_url.startswith("postgresql") else f"sqlite:///{tmp_path}/s.db"


@pytest.fixture
async def store(tmp_path: Path, state_url: str) -> AsyncIterator[Store]:
    """An opened (migrated) state store, once per backend."""
    opened = await Store.open(absolute(state_url, tmp_path))
    yield opened
    await opened.close()


@contextlib.asynccontextmanager
async def pg_database(admin_url: str) -> AsyncIterator[str]:
    """A throw-away PostgreSQL database on the server of ``admin_url``."""
    import asyncpg

    name = "tn_" + os.urandom(6).hex()
    dsn = admin_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = sa.engine.make_url(dsn).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
