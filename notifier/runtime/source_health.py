"""A source's health as events: ``source.failing`` once when a source crosses
``alert_after`` failures or ``stale_after`` without success, ``source.recovered`` once when
it polls again (CONTRACT "Trust"); one log line per change of state."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from notifier.core.decide import HealthView, decide_health, episode_of
from notifier.core.health import health_event, health_event_id
from notifier.core.model import Event
from notifier.logs import source_fields
from notifier.runtime.jobbase import HealthSource, JobBase, PassReport
from notifier.runtime.runtime import Runtime
from notifier.store import FeedState
from notifier.store.feeds import health_view

log = logging.getLogger("notifier.runtime.polls")


def about(feed: HealthSource) -> dict[str, str]:
    """The structured fields of a log line about this source (JSON logs carry them)."""
    return source_fields(feed.id, feed.kind)


class SourceHealthJobs(JobBase):
    """Recording a failed poll and the health events of a source."""

    async def _record_failure(
        self,
        rt: Runtime,
        feed: HealthSource,
        state: FeedState | None,
        error: str,
        report: PassReport,
    ) -> None:
        report.feed_errors[feed.id] = error
        if not self.write:
            log.warning("source %s failed: %s", feed.id, error, extra=about(feed))
            return
        now = self.notifier.clock()
        before = health_view(state)
        after = replace(before, failures=before.failures + 1, last_error=error)
        events = await self._failing_events(feed, before, after, now=now)
        failures = 0

        async def write(tx: Any) -> None:
            nonlocal failures
            failures = await self.store.record_poll(
                tx, feed.id, now=now, error=error, polled_by=self.notifier.worker
            )

        await self._commit(await self._plan(rt, events, now=now), report, now=now, write=write)
        # Log once per state change, not on every failing poll of a dead source.
        if failures == 1:
            log.warning("source %s failed: %s", feed.id, error, extra=about(feed))
        else:
            log.debug(
                "source %s still failing (%d in a row): %s",
                feed.id,
                failures,
                error,
                extra=about(feed),
            )

    async def _failing_events(
        self, feed: HealthSource, before: HealthView, after: HealthView, *, now: datetime
    ) -> list[Event]:
        episode = episode_of(feed.id, after.last_ok_at)
        announced = await self._announced(feed.id, episode)
        decision = decide_health(
            feed.id,
            before,
            after,
            now=now,
            alert_after=feed.alert_after,
            stale_after=feed.stale_limit,
            failing_announced=announced,
        )
        if decision.event != "failing":
            return []
        return [health_event("failing", feed.id, feed.kind, decision.episode, after, now=now)]

    async def _recovery_events(
        self, feed: HealthSource, state: FeedState | None, *, now: datetime
    ) -> list[Event]:
        before = health_view(state)
        if before.failures == 0:
            return []
        episode = episode_of(feed.id, before.last_ok_at)
        if not await self._announced(feed.id, episode):
            return []
        return [health_event("recovered", feed.id, feed.kind, episode, before, now=now)]

    async def _announced(self, source_id: str, episode: str) -> bool:
        if not self.write:
            return False
        event_id = health_event_id("failing", source_id, episode)
        return bool(await self.store.emitted([event_id]))
