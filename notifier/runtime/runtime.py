"""The runtime pieces of one notifier, built from a config and torn down together.

``once`` and ``run`` both use an :class:`App`; the daemon only adds scheduling on top.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TextIO
from zoneinfo import ZoneInfo

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from notifier.config import Config
from notifier.delivery.outbox import Channels, DrainReport, Outbox, build_channels, worker_name
from notifier.delivery.render import Renderer
from notifier.errors import NotifierError, StoreError
from notifier.runtime.jobs import PassReport, Pipeline, utc_now
from notifier.sources.pool import ParsePool
from notifier.store import Pruned, Store
from notifier.tagging import Tagger, default_gazetteer_path

log = logging.getLogger("notifier.runtime.runtime")

# Polls in flight at once in a pass (each is mostly waiting on the network).
POLL_CONCURRENCY = 32


def build_renderer(config: Config) -> Renderer:
    templates = config.model.notifier.templates
    override = config.resolve(templates) if templates else None
    stamp = (
        max((f.stat().st_mtime_ns for f in override.rglob("*") if f.is_file()), default=0)
        if override and override.is_dir()
        else 0
    )
    return _cached_renderer(override, config.model.notifier.timezone, stamp)


@functools.lru_cache(maxsize=4)
def _cached_renderer(override: Path | None, zone: str, stamp: int) -> Renderer:
    """Templates compile once per override folder state (a reload with edits recompiles)."""
    return Renderer(override_dir=override, timezone=ZoneInfo(zone))


def build_tagger(config: Config) -> Tagger:
    paths = (default_gazetteer_path(), *(config.resolve(p) for p in config.model.tagging.gazetteer))
    stamps = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in paths)
    return _cached_tagger(paths, stamps)


@functools.lru_cache(maxsize=4)
def _cached_tagger(paths: tuple[Path, ...], stamps: tuple[int, ...]) -> Tagger:
    """Compiling the word lists costs ~0.3 s: once per set of files and their mtimes."""
    return Tagger.from_files(*paths)


@dataclass
class OnceReport:
    sources: PassReport = field(default_factory=PassReport)
    delivery: DrainReport = field(default_factory=DrainReport)
    pruned: Pruned = field(default_factory=Pruned)


class App:
    """Store, HTTP session, channels, renderer, tagger, pipeline and outbox for one config."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = utc_now,
        dry_run: bool = False,
        store_url: str | None = None,
        parse_in_processes: bool | None = None,
        channels: Channels | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.dry_run = dry_run
        self.store_url = store_url or config.state_url
        use_processes = (
            parse_in_processes if parse_in_processes is not None else len(config.feeds) >= 4
        )
        # feedparser is CPU-bound: parse in other processes, one per core.
        self._parse_pool = ParsePool() if use_processes else None
        self._channels = channels
        # One name per process: it holds feed leases and delivery claims.
        self.worker = worker_name()
        self._lock_handle: TextIO | None = None
        self.store: Store
        self.session: aiohttp.ClientSession
        self.pipeline: Pipeline
        self.outbox: Outbox
        self.renderer: Renderer

    def _lock_sqlite(self) -> None:
        """SQLite is single-instance: a second daemon on the same file refuses to start."""
        if self.dry_run or not sqlite_exists_or_new(self.store_url):
            return
        path = Path(self.store_url[len("sqlite:///") :] + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(
                f"another tariff-notifier is using {path.with_suffix('')}: SQLite state is "
                "single-instance; stop the other one, or use PostgreSQL to run several"
            ) from None
        self._lock_handle = handle

    async def __aenter__(self) -> App:
        self._lock_handle = None
        try:
            self._lock_sqlite()
        except OSError as exc:
            raise StoreError(f"cannot lock the state store: {exc}") from None
        self.store = await Store.open(self.store_url)
        try:
            if self.store.is_sqlite and not self.dry_run:
                # SQLite is single-instance: claims left by a killed process are ours.
                await self.store.release_all_claims()
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=POLL_CONCURRENCY * 2)
            )
            self.renderer = build_renderer(self.config)
            self.pipeline = Pipeline(
                self.config,
                self.store,
                tagger=build_tagger(self.config),
                session=self.session,
                clock=self.clock,
                parse_pool=self._parse_pool,
                dry_run=self.dry_run,
                worker=self.worker,
            )
            self.channels = self._channels or build_channels(self.config)
            await self.channels.open()
            self.outbox = Outbox(
                self.config,
                self.store,
                renderer=self.renderer,
                channels=self.channels,
                clock=self.clock,
                worker=self.worker,
            )
        except BaseException:
            await self.store.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.pipeline.flush()
            await self.channels.close()
            await self.session.close()
        finally:
            await self.store.close()
            if self._lock_handle is not None:
                self._lock_handle.close()
            if self._parse_pool is not None:
                self._parse_pool.shutdown()

    async def poll_all(self) -> PassReport:
        """Poll every feed once, concurrently within a bound; one feed's fault is its own."""
        report = PassReport()
        gate = asyncio.Semaphore(POLL_CONCURRENCY)
        states = await self.store.feed_states()  # one query, not one per feed

        async def one(feed_index: int) -> PassReport:
            feed = self.config.feeds[feed_index]
            async with gate:
                try:
                    return await self.pipeline.poll_feed(feed, state=states.get(feed.id))
                except NotifierError as exc:  # the store failed for this feed: report it
                    log.error("feed %s: %s", feed.id, exc)
                    return PassReport(feeds_polled=1, feed_errors={feed.id: str(exc)})

        for result in await asyncio.gather(*(one(i) for i in range(len(self.config.feeds)))):
            report.merge(result)
        await self.pipeline.flush()
        return report

    async def run_once(self) -> OnceReport:
        """One pass: calendar, feeds, then every delivery that is due."""
        report = OnceReport()
        report.sources.merge(await self.pipeline.check_calendar())
        if self.dry_run:
            report.sources.merge(await self.poll_all())
            return report
        polls = asyncio.create_task(self.poll_all())
        # Deliver what the first feeds committed while the others are still fetched and
        # parsed (in other processes): sending overlaps polling instead of following it.
        while not polls.done():
            await self.outbox.drain(report=report.delivery)
            await asyncio.wait({polls}, timeout=0.05)
        report.sources.merge(polls.result())
        await self.outbox.drain(report=report.delivery)
        try:
            report.pruned = await self.store.prune(
                now=self.clock(),
                retention=self.config.model.notifier.retention,
                feed_ids=[f.id for f in self.config.feeds],
            )
        except (NotifierError, SQLAlchemyError) as exc:  # the next pass tries again
            log.warning("retention pass failed: %s", exc)
        return report


def sqlite_exists_or_new(url: str) -> bool:
    """A file-backed SQLite URL (existing or to be created)."""
    return url.startswith("sqlite:///") and ":memory:" not in url


def sqlite_exists(url: str) -> bool:
    return url.startswith("sqlite:///") and Path(url[len("sqlite:///") :]).exists()
