"""The composition root: one immutable :class:`Runtime` per loaded config, and the
long-lived resources (:class:`Notifier`) that outlive a reload.

A runtime is everything a config makes (subscribers and their index, renderer, tagger,
channels, outbox, the secrets to mask, the health address, the clock), built once by
:func:`build_runtime`. A reload builds a new one and swaps one reference: nothing is ever
half-reloaded, and work already in flight finishes on the runtime it started with (its
channels close when that work is done).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from notifier.config import Config
from notifier.core.matching import SubscriberIndex
from notifier.delivery.outbox import Channels, Outbox, build_channels
from notifier.delivery.render import Renderer
from notifier.errors import FetchError, StoreError
from notifier.logs import register_secrets
from notifier.sources.pool import ParsePool
from notifier.sources.tagging import Tagger, default_gazetteer_path
from notifier.store import Store

log = logging.getLogger("notifier.runtime")

Clock = Callable[[], datetime]

# Polls in flight at once (each is mostly waiting on the network).
POLL_CONCURRENCY = 32
# A source whose parse takes longer than this is a failed poll (feedparser's lenient
# parser has slow paths on hostile input; the pool worker is killed at the deadline).
PARSE_TIMEOUT_S = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def worker_name() -> str:
    """One name per process: it holds feed leases and delivery claims."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


def build_renderer(config: Config) -> Renderer:
    templates = config.model.notifier.templates
    override = config.resolve(templates) if templates else None
    stamp = (
        max((f.stat().st_mtime_ns for f in override.rglob("*") if f.is_file()), default=0)
        if override and override.is_dir()
        else 0
    )
    cache = config.state_dir / "cache" / "templates"
    return _cached_renderer(override, config.model.notifier.timezone, stamp, cache)


@functools.lru_cache(maxsize=4)
def _cached_renderer(override: Path | None, zone: str, stamp: int, cache: Path) -> Renderer:
    """Templates compile once per override folder state (a reload with edits recompiles),
    and their compiled code is kept in the state folder for the next process."""
    return Renderer(override_dir=override, timezone=ZoneInfo(zone), bytecode_dir=cache)


def build_tagger(config: Config) -> Tagger:
    paths = (default_gazetteer_path(), *(config.resolve(p) for p in config.model.tagging.gazetteer))
    stamps = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in paths)
    return _cached_tagger(paths, stamps, config.state_dir / "cache" / "tagger")


@functools.lru_cache(maxsize=4)
def _cached_tagger(paths: tuple[Path, ...], stamps: tuple[int, ...], cache: Path) -> Tagger:
    """Compiling the word lists costs ~0.3 s: once per set of files and their mtimes, and
    their compiled code is kept in the state folder for the next process (as the parse
    workers keep theirs: ``tagging/compiled.py``; best-effort)."""
    return Tagger.from_files(*paths, cache_dir=cache)


def config_secrets(config: Config) -> tuple[str, ...]:
    """Every value that must never reach a log line, an alert or command output."""
    smtp = config.model.smtp
    return tuple(
        value
        for value in (
            smtp.password if smtp else None,
            smtp.username if smtp and smtp.username and "${" not in smtp.username else None,
            config.model.notifier.unsubscribe_secret,
            *(s.secret for s in config.subscribers),
            *(s.webhook for s in config.subscribers if s.format == "slack"),
            *config.env_values,
        )
        if value
    )


@dataclass(frozen=True, eq=False)
class Runtime:
    """What one config makes, built once (see the module docstring)."""

    config: Config
    index: SubscriberIndex
    renderer: Renderer
    tagger: Tagger
    channels: Channels
    outbox: Outbox
    clock: Clock
    health: str | None
    # Set when a newer runtime replaced this one (or on shutdown): drains on it stop
    # claiming, finish what is in flight, and its channels close.
    retired: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def zone(self) -> ZoneInfo:
        return self.config.zone


async def build_runtime(
    config: Config,
    *,
    store: Store,
    clock: Clock,
    worker: str,
    health: str | None = None,
    channels: Channels | None = None,
) -> Runtime:
    """Build everything one config needs; raises (ConfigError…) without side effects on
    the running notifier, so a rejected reload leaves the old runtime untouched."""
    renderer = build_renderer(config)
    renderer.check()
    tagger = build_tagger(config)
    register_secrets(*config_secrets(config))
    chosen = channels or build_channels(config)
    await chosen.open()
    outbox = Outbox(config, store, renderer=renderer, channels=chosen, clock=clock, worker=worker)
    return Runtime(
        config=config,
        index=SubscriberIndex(config.subscribers),
        renderer=renderer,
        tagger=tagger,
        channels=chosen,
        outbox=outbox,
        clock=clock,
        health=health if health is not None else config.model.notifier.health,
    )


class Notifier:
    """The resources that outlive a reload (store, HTTP session, parse pool, the
    instance's worker name, the wake-up signal) and the current :class:`Runtime`.

    ``async with Notifier(config) as notifier:`` opens them; ``notifier.runtime`` is the
    runtime to use now; :meth:`swap` replaces it.
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = utc_now,
        store_url: str | None = None,
        parse_in_processes: bool | None = None,
        channels: Channels | None = None,
        health: str | None = None,
        beside_daemon: bool = False,
        create: bool = True,
    ) -> None:
        self._config = config
        self.clock = clock
        self.store_url = store_url or config.state_url
        # A command run beside a running daemon (send-test, sources release, a dry run):
        # no single-instance lock and no claim release, since the daemon owns those.
        self.beside_daemon = beside_daemon
        self.create = create
        self.worker = worker_name()
        self.health_override = health
        use_processes = (
            parse_in_processes if parse_in_processes is not None else len(config.feeds) >= 4
        )
        # feedparser is CPU-bound: parse in other processes, one per core.
        self._pool = ParsePool() if use_processes else None
        self._channels = channels
        self._instance_lock: Any = None
        # One wake-up signal: new events were committed, or a delivery was re-queued.
        self.wake = asyncio.Event()
        self.store: Store
        self.session: aiohttp.ClientSession
        self.runtime: Runtime
        self._retiring: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Notifier:
        from notifier.store import instance_lock

        if not self.beside_daemon:
            self._instance_lock = instance_lock(self.store_url)
        try:
            self.store = await Store.open(self.store_url, create=self.create)
        except BaseException:
            self._release_lock()
            raise
        try:
            if self.store.dialect.single_instance and not self.beside_daemon:
                # SQLite is single-instance: claims left by a killed process are ours.
                await self.store.release_all_claims()
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=POLL_CONCURRENCY * 2)
            )
            self.runtime = await build_runtime(
                self._config,
                store=self.store,
                clock=self.clock,
                worker=self.worker,
                health=self.health_override,
                channels=self._channels,
            )
        except BaseException:
            await self.store.close()
            self._release_lock()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.runtime.retired.set()
            await asyncio.gather(*self._retiring, return_exceptions=True)
            await self.runtime.channels.close()
            await self.session.close()
        finally:
            await self.store.close()
            self._release_lock()
            if self._pool is not None:
                self._pool.shutdown()

    def _release_lock(self) -> None:
        if self._instance_lock is not None:
            self._instance_lock.close()
            self._instance_lock = None

    @property
    def config(self) -> Config:
        return self.runtime.config

    async def swap(self, config: Config, *, in_flight: Callable[[], Any] | None = None) -> Runtime:
        """Build a runtime for ``config`` and make it current; the old one retires.

        Raises whatever building raises, leaving the current runtime in place.
        """
        new = await build_runtime(
            config,
            store=self.store,
            clock=self.clock,
            worker=self.worker,
            health=self.health_override,
        )
        old, self.runtime = self.runtime, new
        old.retired.set()
        task = asyncio.get_running_loop().create_task(self._close_when_idle(old, in_flight))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return new

    async def _close_when_idle(self, old: Runtime, in_flight: Callable[[], Any] | None) -> None:
        """Close a retired runtime's channels once the work started on it is done."""
        if in_flight is not None:
            await in_flight()
        await old.channels.close()

    async def parse(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a pure parser off the event loop, within the parse deadline."""
        call = functools.partial(fn, *args, **kwargs)
        if self._pool is not None:
            return await self._pool.run(call, timeout_s=PARSE_TIMEOUT_S)
        # Small setups (and tests): a thread keeps the loop free; it cannot be killed,
        # but the poll still fails at the deadline.
        try:
            async with asyncio.timeout(PARSE_TIMEOUT_S):
                return await asyncio.to_thread(call)
        except TimeoutError:
            raise FetchError(f"parsing took longer than {PARSE_TIMEOUT_S:g} s") from None


__all__ = [
    "Clock",
    "Notifier",
    "Runtime",
    "StoreError",
    "build_renderer",
    "build_runtime",
    "build_tagger",
    "config_secrets",
    "utc_now",
    "worker_name",
]
