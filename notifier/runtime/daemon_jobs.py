"""The daemon's scheduled work: what APScheduler's jobs run (a source's poll, a calendar
URL's poll, the calendar check at each instant, retention, the memory trim) and how the
schedule follows the config and the calendar. Part of
:class:`notifier.runtime.daemon.Daemon`, as its delivery loop is (``worker.py``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from notifier.config import Config, FeedSection, format_duration
from notifier.core.calendar import all_transitions
from notifier.core.retry import feed_backoff, lease_for
from notifier.errors import NotifierError
from notifier.logs import source_fields
from notifier.runtime.jobs import PassReport
from notifier.runtime.memory import release_free_memory
from notifier.runtime.worker import DeliveryWorker

if TYPE_CHECKING:
    from notifier.runtime.schedule import JobSchedule

log = logging.getLogger("notifier.runtime.daemon")


class ScheduledJobs(DeliveryWorker):
    """Part of :class:`notifier.runtime.daemon.Daemon`: its scheduled jobs."""

    schedule: JobSchedule
    _poll_gate: asyncio.Semaphore
    _failing: dict[str, int]
    _calendar_lock: asyncio.Lock
    _calendar_again: bool
    _polls: set[asyncio.Task[Any]]

    @property
    def config(self) -> Config:
        return self.notifier.runtime.config

    # --- scheduling --------------------------------------------------------------------

    async def _reschedule(self, *, first: bool = False) -> None:
        """Source polls and calendar instants from the current config and calendar."""
        config = self.config
        self.schedule.sources(
            [(f.id, f.every) for f in config.feeds], self._poll_job, prefix="feed", first=first
        )
        self.schedule.sources(
            [(url, config.model.calendar.every) for url in config.model.calendar.urls],
            self._calendar_url_job,
            prefix="calendar-url",
            first=first,
        )
        rules = await self.jobs.current_rules()
        transitions = all_transitions(rules, remind=config.model.calendar.remind, zone=config.zone)
        self.schedule.instants((tr.at for tr in transitions), self._calendar_job)
        if first:
            now = self.clock()
            upcoming = [tr for tr in transitions if tr.at > now and tr.kind != "reminder"][:3]
            for tr in upcoming:
                log.info("next: %s %s at %s", tr.rule.id, tr.kind, tr.at.isoformat())
            if not upcoming:
                log.info("no upcoming calendar transitions")

    # --- jobs --------------------------------------------------------------------------

    async def _poll_job(self, feed_id: str) -> None:
        feed = next((f for f in self.config.feeds if f.id == feed_id), None)
        if feed is None or self.stop_event.is_set():
            return
        task = asyncio.current_task()
        if task is not None:
            self._polls.add(task)
        try:
            async with self._poll_gate:
                report = await self._leased_poll(feed)
        except asyncio.CancelledError:
            return  # shutdown: a poll cut short loses nothing (its transaction never ran)
        finally:
            if task is not None:
                self._polls.discard(task)
        if report is not None:
            self._after_poll(feed, report)

    async def _leased_poll(self, feed: FeedSection) -> PassReport | None:
        try:
            # Several instances on one database: whoever takes the lease polls this
            # interval; the others skip (and take over if the holder dies).
            if not await self.notifier.store.take_feed_lease(
                feed.id,
                holder=self.notifier.worker,
                now=self.clock(),
                duration=lease_for(feed.every),
            ):
                return None
        except NotifierError as exc:
            self._store_unreachable(exc)
            return PassReport(feeds_polled=1, feed_errors={feed.id: f"not recorded: {exc}"})
        report = await self.jobs.poll_source(feed.id)
        self._store_reachable()
        return report

    def _after_poll(self, feed: FeedSection, report: PassReport) -> None:
        error = report.feed_errors.get(feed.id)
        outcome = "error" if error else ("unchanged" if report.feeds_unchanged else "ok")
        self.metrics.observe_poll(feed.id, outcome)
        for event in report.events:
            self.metrics.observe_event(event.type)
        failures = self._failing.get(feed.id, 0) + 1 if error else 0
        was_failing = feed.id in self._failing
        if error:
            if not was_failing and error.startswith("not recorded"):
                log.error(
                    "poll of %s could not be recorded: %s",
                    feed.id,
                    error,
                    extra=source_fields(feed.id, feed.kind),
                )
            self._failing[feed.id] = failures
            self.schedule.postpone(f"feed:{feed.id}", feed_backoff(feed.every, failures))
        else:
            self._failing.pop(feed.id, None)
            if was_failing:
                log.info("source %s recovered", feed.id, extra=source_fields(feed.id, feed.kind))
        self.metrics.set_feed_failing(feed.id, bool(error))

    async def _calendar_url_job(self, url: str) -> None:
        """Poll one calendar URL (under a lease with several instances); its new rules
        are checked at once, and their instants scheduled."""
        if self.stop_event.is_set():
            return
        try:
            if not await self.notifier.store.take_feed_lease(
                url,
                holder=self.notifier.worker,
                now=self.clock(),
                duration=lease_for(self.config.model.calendar.every),
            ):
                return
            async with self._calendar_lock:
                report = await self.jobs.poll_calendar_url(url)
        except NotifierError as exc:
            self._store_unreachable(exc, what=f"calendar {url}")
            return
        self._store_reachable()
        if report.feed_errors:
            failures = self._failing.get(url, 0) + 1
            self._failing[url] = failures
            delay = feed_backoff(self.config.model.calendar.every, failures)
            self.schedule.postpone(f"calendar-url:{url}", delay)
            return
        self._failing.pop(url, None)
        if report.events:
            await self._reschedule()

    async def _calendar_job(self, catch_up: bool = False) -> None:
        """Check the calendar; calls that arrive while a check runs fold into one re-run.

        Checks never run concurrently (they would queue on the store's write lock, and a
        burst of due instants would delay each other); a check that started just before
        an instant is followed by one more, so nothing due is left for the next sweep.
        """
        if self.stop_event.is_set():
            return
        if self._calendar_lock.locked():
            self._calendar_again = True
            return
        async with self._calendar_lock:
            self._calendar_again = True
            while self._calendar_again and not self.stop_event.is_set():
                self._calendar_again = False
                try:
                    report = await self.jobs.check_calendar(catch_up=catch_up)
                except NotifierError as exc:
                    self._store_unreachable(exc, what="calendar check")
                    return
                self._store_reachable()
                for event in report.events:
                    self.metrics.observe_event(event.type)
                    log.info(
                        "event %s %s",
                        event.type,
                        event.data.get("rule", {}).get("id", event.id),
                        extra={"event_type": event.type, "event_id": event.id},
                    )

    async def _retention_job(self) -> None:
        """Forget events, delivery logs and feed entries older than ``retention``."""
        if self.stop_event.is_set():
            return
        try:
            pruned = await self.jobs.retention()
        except NotifierError as exc:
            log.error("retention pass failed (retried within the hour): %s", exc)
            return
        for kind in ("events", "deliveries", "attempts", "entries", "feeds"):
            if count := getattr(pruned, kind):
                self.metrics.pruned.labels(kind).inc(count)
        if pruned.total():
            log.info(
                "retention: forgot %s (older than %s)",
                pruned,
                format_duration(self.config.model.notifier.retention),
            )

    async def _trim_job(self) -> None:
        # On the loop, not in APScheduler's thread pool: a few ms, and no extra thread.
        release_free_memory()
