"""``tariff-notifier run``: the same jobs as ``once``, triggered by APScheduler 3.x.

Jobs live in memory and are rebuilt from our own state at start and on reload: the
scheduler's job store is never the source of truth for what was emitted (a DateTrigger
missed while the process was down is silently dropped by APScheduler, PITFALLS.md).
The store decides; the scheduler only wakes us at the right instant.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from notifier.config import Config, FeedSection, format_duration, load_config
from notifier.core.calendar import all_transitions
from notifier.core.retry import feed_backoff, lease_for
from notifier.delivery.unsubscribe import apply_unsubscribe
from notifier.errors import NotifierError
from notifier.logs import source_fields
from notifier.runtime.health import HealthService, store_status
from notifier.runtime.jobs import Jobs, PassReport
from notifier.runtime.loop import run as run_loop
from notifier.runtime.memory import freeze_heap, limit_malloc_arenas, release_free_memory
from notifier.runtime.metrics import Metrics
from notifier.runtime.runtime import Clock, Notifier, utc_now
from notifier.runtime.schedule import JobSchedule
from notifier.runtime.worker import DeliveryWorker

log = logging.getLogger("notifier.runtime.daemon")

# How long in-flight deliveries may run on SIGTERM before they are left queued; the
# contract allows 10 s to exit, the rest is for closing connections and the store.
SHUTDOWN_GRACE_S = 7.0
# A re-check of the calendar even without a scheduled transition: catches clock jumps.
CALENDAR_SWEEP = timedelta(minutes=5)
# How often retention runs (and its first run, a while after start-up).
RETENTION_EVERY = timedelta(hours=1)
RETENTION_FIRST = timedelta(minutes=2)
# How often free malloc memory goes back to the system (a few ms; runtime/memory.py).
MEMORY_TRIM_EVERY = timedelta(minutes=10)


class Daemon(DeliveryWorker):
    def __init__(
        self,
        config: Config,
        *,
        reload: Callable[[], Config] | None = None,
        clock: Clock = utc_now,
        health: str | None = None,
    ) -> None:
        self._initial = config
        self._reload_config = reload or (lambda: load_config(config.path))
        self.clock = clock
        self.health_override = health
        self.metrics = Metrics()
        self.stop_event = asyncio.Event()
        self._poll_gate = asyncio.Semaphore(32)
        self._failing: dict[str, int] = {}
        self._calendar_lock = asyncio.Lock()
        self._polls: set[asyncio.Task[Any]] = set()
        self._calendar_again = False
        self._draining: asyncio.Task[Any] | None = None
        self._store_down = False
        self.last_reload_error: str | None = None
        self.started_at = clock()
        self.schedule = JobSchedule(clock)
        self.notifier: Notifier
        self.jobs: Jobs
        self.health = HealthService(
            metrics=self.metrics, status=self._status, unsubscribe=self._unsubscribe
        )

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

    # --- reload and stop ---------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read config and calendar and swap in a new runtime; an invalid config is
        logged and the running one kept (and /healthz says so)."""
        try:
            new = await asyncio.to_thread(self._reload_config)
            await self.notifier.swap(new, in_flight=self._drain_finished)
        except NotifierError as exc:
            self.last_reload_error = str(exc)
            self.metrics.observe_reload(ok=False)
            log.error("reload rejected, keeping the running config: %s", exc)
            return False
        self.last_reload_error = None
        self.metrics.observe_reload(ok=True)
        self.metrics.set_config(new)
        self.jobs.forget_blocked()
        try:
            await self.jobs.reschedule_digests()
        except NotifierError as exc:
            self._store_unreachable(exc, what="digest times")
        await self.health.follow(self.notifier.runtime.health)
        self.metrics.set_feeds(f.id for f in new.feeds)
        await self._calendar_job()
        await self._reschedule()
        freeze_heap()
        log.info(
            "reloaded: %d feeds, %d rules, %d subscribers",
            len(new.feeds),
            len(new.rules),
            len(new.subscribers),
        )
        self.notifier.wake.set()
        return True

    async def _unsubscribe(self, subscriber_id: str, token: str) -> str | None:
        target = await apply_unsubscribe(
            self.config, self.notifier.store, subscriber_id, token, now=self.clock()
        )
        self.jobs.forget_blocked()
        return target

    def request_stop(self) -> None:
        if not self.stop_event.is_set():
            log.info("stopping: no new polls; finishing in-flight deliveries")
            self.stop_event.set()
            self.notifier.runtime.retired.set()

    async def _status(self) -> dict[str, Any]:
        """The /healthz body: the store's view (a snapshot at most a second old) plus
        what only this process knows."""
        config = self.config
        next_polls = {f.id: self.schedule.next_run(f"feed:{f.id}") for f in config.feeds}
        status = await self.health.snapshot(
            lambda: store_status(
                self.notifier.store,
                config,
                started_at=self.started_at,
                next_polls=next_polls,
                now=self.clock(),
            )
        )
        status["up"] = bool(status.get("up")) and not self.stop_event.is_set()
        if self.last_reload_error:
            status["status"] = "degraded"
            status["reasons"] = [
                *status.get("reasons", []),
                f"last reload rejected: {self.last_reload_error}",
            ]
        return status

    # --- main --------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        async with Notifier(
            self._initial, clock=self.clock, parse_in_processes=True, health=self.health_override
        ) as notifier:
            self.notifier = notifier
            self.jobs = Jobs(notifier)
            reloads: set[asyncio.Task[bool]] = set()

            def on_hup() -> None:
                task = loop.create_task(self.reload())
                reloads.add(task)
                task.add_done_callback(reloads.discard)

            try:
                await self.health.follow(self.notifier.runtime.health)
                loop.add_signal_handler(signal.SIGHUP, on_hup)
                loop.add_signal_handler(signal.SIGTERM, self.request_stop)
                loop.add_signal_handler(signal.SIGINT, self.request_stop)
                await self._serve()
            finally:
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
                await self.health.stop()
                for task in list(reloads):
                    task.cancel()
        log.info("stopped")
        return 0

    async def _serve(self) -> None:
        # Start-up: calendar first (late transitions, edits while we were down).
        self.metrics.set_feeds(f.id for f in self.config.feeds)
        self.metrics.set_config(self.config)
        try:
            await self.jobs.reschedule_digests()
        except NotifierError as exc:
            self._store_unreachable(exc, what="digest times")
        if self.config.model.calendar.urls:
            # The URLs' last good rules are part of the calendar the start-up check reads.
            async with self._calendar_lock:
                try:
                    await self.jobs.poll_calendar_urls()
                except NotifierError as exc:
                    self._store_unreachable(exc, what="calendar URLs")
        await self._calendar_job(catch_up=True)
        await self._reschedule(first=True)
        self.schedule.every(CALENDAR_SWEEP, self._calendar_job, "calendar-sweep")
        self.schedule.every(
            RETENTION_EVERY, self._retention_job, "retention", first=self.clock() + RETENTION_FIRST
        )
        self.schedule.every(MEMORY_TRIM_EVERY, self._trim_job, "memory-trim")
        self.schedule.start()
        # After the metrics' series of every subscriber exist (set_config), as a reload
        # freezes after its own.
        freeze_heap()
        log.info(
            "running: %d feeds, %d rules, %d subscribers",
            len(self.config.feeds),
            len(self.config.rules),
            len(self.config.subscribers),
        )
        worker = asyncio.create_task(self._delivery_worker())
        await self.stop_event.wait()
        self.metrics.set_down()
        self.schedule.shutdown()
        self.notifier.wake.set()
        try:
            await asyncio.wait_for(worker, timeout=SHUTDOWN_GRACE_S)
        except TimeoutError:
            log.warning("in-flight deliveries did not finish in time; left queued")
        # Polls still running are cut short before the store closes.
        for poll in list(self._polls):
            poll.cancel()
        await asyncio.gather(*self._polls, return_exceptions=True)
        await self.jobs.flush()
        try:
            await self.notifier.store.release_claims(self.notifier.worker)
        except NotifierError as exc:
            log.warning("could not release delivery claims (they expire): %s", exc)


def run_daemon(config: Config, args: argparse.Namespace) -> int:
    path = Path(config.path)
    limit_malloc_arenas()  # before the first thread (runtime/memory.py)
    health = getattr(args, "health", None)

    async def main() -> int:
        daemon = Daemon(
            config, reload=lambda: load_config(path, state_base=config.state_base), health=health
        )
        return await daemon.run()

    with contextlib.suppress(KeyboardInterrupt):
        return run_loop(main())  # uvloop where installed (the `fast` extra)
    return 0
