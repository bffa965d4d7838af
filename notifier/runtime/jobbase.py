"""What every job shares: planning the deliveries of its events and writing its plan in
one transaction (the transactional outbox), or only reporting it for a dry run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from notifier.core.model import Delivery, Event
from notifier.core.planning import plan_deliveries
from notifier.runtime.runtime import Notifier, Runtime
from notifier.store import UnchangedPoll

# Unsubscribes and 410-gone endpoints are re-read at most this often (and at once after
# an unsubscribe or a 410: the outbox and the unsubscribe handler drop the cache).
BLOCKED_TTL_S = 10.0

Planned = list[tuple[Event, list[Delivery]]]


class HealthSource(Protocol):
    """What source health needs to know of a source (a feed of any kind, a calendar URL)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def alert_after(self) -> int: ...
    @property
    def stale_limit(self) -> timedelta: ...


@dataclass(frozen=True, slots=True)
class CalendarUrlSource:
    """A calendar URL as a source: its id is the URL."""

    id: str
    every: timedelta
    kind: str = "calendar-url"
    alert_after: int = 3

    @property
    def stale_limit(self) -> timedelta:
        return max(self.every * 4, timedelta(days=1))


@dataclass
class PassReport:
    """What a job did: for the CLI's summary, the daemon's metrics and tests."""

    events: list[Event] = field(default_factory=list)
    deliveries: int = 0
    feed_errors: dict[str, str] = field(default_factory=dict)
    feeds_polled: int = 0
    feeds_unchanged: int = 0
    baselined: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)

    def merge(self, other: PassReport) -> None:
        self.events += other.events
        self.deliveries += other.deliveries
        self.feed_errors.update(other.feed_errors)
        self.feeds_polled += other.feeds_polled
        self.feeds_unchanged += other.feeds_unchanged
        self.baselined += other.baselined
        self.held += other.held


class JobBase:
    """The job functions' common part over one :class:`Notifier` (its current runtime)."""

    def __init__(self, notifier: Notifier, *, write: bool = True) -> None:
        self.notifier = notifier
        self.write = write
        self._blocked: tuple[float, set[tuple[str, str]]] | None = None
        self._unchanged: dict[str, UnchangedPoll] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    @property
    def store(self) -> Any:
        return self.notifier.store

    # --- planning deliveries -----------------------------------------------------------

    def forget_blocked(self) -> None:
        """Re-read unsubscribes and gone endpoints at the next plan."""
        self._blocked = None

    async def _blocked_targets(self, rt: Runtime) -> set[tuple[str, str]]:
        loop_now = asyncio.get_running_loop().time()
        if self._blocked is None or loop_now - self._blocked[0] > BLOCKED_TTL_S:
            hashes = {s.id: s.config_hash for s in rt.config.subscribers}
            self._blocked = (loop_now, await self.store.blocked_targets(hashes))
        return self._blocked[1]

    async def _plan(self, rt: Runtime, events: Sequence[Event], *, now: datetime) -> Planned:
        if not events:
            return []
        blocked = await self._blocked_targets(rt) if self.write else set()
        zone = rt.zone
        return [
            (e, plan_deliveries(e, rt.index.match(e), now=now, zone=zone, blocked=blocked))
            for e in events
        ]

    async def _commit(
        self, planned: Planned, report: PassReport, *, now: datetime, write: Any = None
    ) -> None:
        """Write a job's plan in one transaction (or, for a dry run, only report it)."""
        if not self.write:
            for event, deliveries in planned:
                report.events.append(event)
                report.deliveries += len(deliveries)
            return
        async with self.store.transaction() as tx:
            if write is not None:
                await write(tx)
            inserted = await self.store.emit_many(tx, planned, now=now)
        counts = {event.id: len(deliveries) for event, deliveries in planned}
        report.events += inserted
        report.deliveries += sum(counts[event.id] for event in inserted)
        if inserted:
            self.notifier.runtime.outbox.notify()
            self.notifier.wake.set()


def calendar_url_key(source_id: str) -> str:
    """The meta key of a calendar URL's last good rules."""
    return f"calendar-url:{source_id}"


def json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
