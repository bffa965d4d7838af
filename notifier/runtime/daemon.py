"""``tariff-notifier run``: the long-running service on APScheduler 3.x (asyncio).

Jobs live in memory and are rebuilt from our own state at start and on reload: the
scheduler's job store is never the source of truth for what was emitted (a DateTrigger
missed while the process was down is silently dropped by APScheduler, PITFALLS.md).
The store decides; the scheduler only wakes us at the right instant.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import random
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError

from notifier.config import Config, FeedSection, format_duration, load_config
from notifier.core.calendar import all_transitions
from notifier.core.model import Delivery
from notifier.delivery.unsubscribe import apply_unsubscribe
from notifier.errors import NotifierError
from notifier.runtime.health import HealthServer, store_status
from notifier.runtime.jobs import PassReport, utc_now
from notifier.runtime.memory import limit_malloc_arenas, release_free_memory
from notifier.runtime.metrics import Metrics
from notifier.runtime.runtime import App, build_renderer, build_tagger

log = logging.getLogger("notifier.runtime.daemon")

# How long in-flight deliveries may run on SIGTERM before they are left queued; the
# contract allows 10 s to exit, the rest is for closing connections and the store.
SHUTDOWN_GRACE_S = 7.0
# A re-check of the calendar even without a scheduled transition: catches clock jumps.
CALENDAR_SWEEP = timedelta(minutes=5)
# How often retention runs (and its first run, a while after start-up).
RETENTION_EVERY = timedelta(hours=1)
RETENTION_FIRST = timedelta(minutes=2)
# How often free malloc memory goes back to the system (a few ms; notifier/memory.py).
MEMORY_TRIM_EVERY = timedelta(minutes=10)
# The longest a failing feed waits between polls.
MAX_FEED_BACKOFF = timedelta(hours=6)
# Cap on the idle wait of the delivery worker (a safety net; wakes are event-driven).
MAX_IDLE_S = 60.0


def _freeze_heap() -> None:
    """Move the loaded config, subscriber index and caches out of the GC's sight.

    They live as long as the config; with 100,000 subscribers the collector's full passes
    over them cost more than the matching itself (bench/bench_scale.py).
    """
    gc.collect()
    gc.freeze()


def feed_backoff(every: timedelta, failures: int) -> timedelta:
    """Poll a failing feed less often: every, 2x, 4x… capped at ``MAX_FEED_BACKOFF``."""
    if failures <= 0:
        return every
    longest: timedelta = max(MAX_FEED_BACKOFF, every)
    grown: timedelta = every * (2 ** min(failures - 1, 16))
    return min(grown, longest)


def jitter_for(every: timedelta) -> float:
    """Up to ±10% (at most 5 min) so a thousand feeds do not fire in the same second."""
    return min(every.total_seconds() * 0.1, 300.0)


def lease_for(every: timedelta) -> timedelta:
    """A feed lease shorter than the earliest jittered next poll (90% of ``every``)."""
    return every * 0.8


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        reload: Callable[[], Config] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self._reload_config = reload or (lambda: load_config(config.path))
        self.clock = clock
        self.metrics = Metrics()
        self.stop_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._poll_gate = asyncio.Semaphore(32)
        self._failing: dict[str, int] = {}
        self._calendar_lock = asyncio.Lock()
        self._polls: set[asyncio.Task[Any]] = set()
        self._calendar_again = False
        self.started_at = clock()
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.app: App

    # --- jobs --------------------------------------------------------------------------

    def _schedule_feeds(self, *, first: bool) -> None:
        wanted = {f"feed:{f.id}": f for f in self.config.feeds}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("feed:") and job.id not in wanted:
                job.remove()
        now = datetime.now(UTC)
        for job_id, feed in wanted.items():
            trigger = IntervalTrigger(
                seconds=feed.every.total_seconds(), jitter=jitter_for(feed.every)
            )
            existing = self.scheduler.get_job(job_id)
            if existing is not None:
                existing.modify(args=[feed.id])
                if existing.trigger.interval != trigger.interval:
                    existing.reschedule(trigger)
                continue
            # First polls spread over a few seconds instead of all at once.
            spread = min(feed.every.total_seconds(), 10.0) if first else 1.0
            self.scheduler.add_job(
                self._poll_job,
                trigger,
                id=job_id,
                args=[feed.id],
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=now + timedelta(seconds=random.uniform(0, spread)),
            )

    def _every(
        self,
        interval: timedelta,
        job: Callable[[], Any],
        job_id: str,
        *,
        first: datetime | None = None,
    ) -> None:
        """A housekeeping job: never two at once, a missed run is run once, late or not."""
        self.scheduler.add_job(
            job,
            IntervalTrigger(seconds=interval.total_seconds()),
            id=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            **({"next_run_time": first} if first is not None else {}),
        )

    def _schedule_transitions(self) -> None:
        """One date job per future instant (not per transition: 100 rules taking effect at
        the same second are one check); the store still decides what is emitted."""
        for job in self.scheduler.get_jobs():
            if job.id.startswith("tr:"):
                job.remove()
        now = self.clock()
        instants = {
            tr.at.astimezone(UTC)
            for tr in all_transitions(self.config.rules, remind=self.config.model.calendar.remind)
            if tr.at > now
        }
        for at in sorted(instants):
            self.scheduler.add_job(
                self._calendar_job,
                DateTrigger(run_date=at),
                id=f"tr:{at.isoformat()}",
                misfire_grace_time=None,
                max_instances=1,
            )

    def _log_upcoming(self, count: int = 3) -> None:
        now = self.clock()
        upcoming = [
            tr
            for tr in all_transitions(self.config.rules, remind=self.config.model.calendar.remind)
            if tr.at > now and tr.kind != "reminder"
        ][:count]
        for tr in upcoming:
            log.info("next: %s %s at %s", tr.rule.id, tr.kind, tr.at.isoformat())
        if not upcoming:
            log.info("no upcoming calendar transitions")

    async def _poll_job(self, feed_id: str) -> None:
        feed = next((f for f in self.config.feeds if f.id == feed_id), None)
        if feed is None or self.stop_event.is_set():
            return
        task = asyncio.current_task()
        if task is not None:
            self._polls.add(task)
        try:
            async with self._poll_gate:
                try:
                    # Several instances on one database: whoever takes the lease polls
                    # this interval; the others skip (and take over if the holder dies).
                    if not await self.app.store.take_feed_lease(
                        feed.id,
                        holder=self.app.worker,
                        now=self.clock(),
                        duration=lease_for(feed.every),
                    ):
                        return
                    report = await self.app.pipeline.poll_feed(feed)
                except NotifierError as exc:
                    # The store failed (disk full, database down): a failed poll like
                    # any other, so it backs off and is logged once, not every interval.
                    report = PassReport(
                        feeds_polled=1, feed_errors={feed.id: f"not recorded: {exc}"}
                    )
        except asyncio.CancelledError:
            return  # shutdown: a poll cut short loses nothing (its transaction never ran)
        finally:
            if task is not None:
                self._polls.discard(task)
        self._after_poll(feed, report)
        if report.events:
            self._wake.set()

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
                log.error("poll of %s could not be recorded: %s", feed.id, error)
            self._failing[feed.id] = failures
            job = self.scheduler.get_job(f"feed:{feed.id}")
            if job is not None:
                delay = feed_backoff(feed.every, failures)
                job.modify(next_run_time=datetime.now(UTC) + delay)
        else:
            self._failing.pop(feed.id, None)
            if was_failing:
                log.info("feed %s recovered", feed.id)
        self.metrics.set_feed_failing(feed.id, bool(error))

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
                    report = await self.app.pipeline.check_calendar(catch_up=catch_up)
                except NotifierError as exc:
                    log.error("calendar check failed: %s", exc)
                    return
                for event in report.events:
                    self.metrics.observe_event(event.type)
                    log.info(
                        "event %s %s", event.type, event.data.get("rule", {}).get("id", event.id)
                    )
                if report.events:
                    self._wake.set()

    async def _retention_job(self) -> None:
        """Forget events, delivery logs and feed entries older than ``retention``."""
        if self.stop_event.is_set():
            return
        try:
            pruned = await self.app.store.prune(
                now=self.clock(),
                retention=self.config.model.notifier.retention,
                feed_ids=[f.id for f in self.config.feeds],
            )
        except (NotifierError, SQLAlchemyError) as exc:
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

    # --- the delivery worker -----------------------------------------------------------

    def _observe_delivery(self, delivery: Delivery, status: str, latency_s: float) -> None:
        outcome = "retry" if status == "queued" else status
        self.metrics.observe_delivery(delivery.channel, outcome, latency_s)

    async def _delivery_worker(self) -> None:
        """Drain the outbox, then sleep until the next due time or a wake-up. No polling."""
        while not self.stop_event.is_set():
            self._wake.clear()
            try:
                await self.app.outbox.drain(stop=self.stop_event)
                await self._update_queue_gauges()
                next_due = await self.app.store.next_due_at()
            except NotifierError as exc:
                log.error("delivery worker: %s", exc)
                next_due = None
            if self.stop_event.is_set():
                return
            wait_s = MAX_IDLE_S
            if next_due is not None:
                # Due but not claimable (another worker's lease): look again shortly.
                wait_s = min(max((next_due - self.clock()).total_seconds(), 0.5), MAX_IDLE_S)
            waker = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(self.stop_event.wait())
            await asyncio.wait(
                {waker, stopper}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
            )
            waker.cancel()
            stopper.cancel()

    async def _update_queue_gauges(self) -> None:
        counts = await self.app.store.counts()
        self.metrics.set_queue(counts.get("queued", 0), counts.get("dead", 0))

    # --- reload and stop ---------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read config and calendar; an invalid one is logged and the old one kept."""
        try:
            new = await asyncio.to_thread(self._reload_config)
            renderer = build_renderer(new)
            renderer.check()
            tagger = build_tagger(new)
        except NotifierError as exc:
            log.error("reload rejected, keeping the running config: %s", exc)
            return False
        self.config = new
        self.app.config = new
        self.app.pipeline.reconfigure(new)
        self.app.pipeline.tagger = tagger
        self.app.outbox.reconfigure(new, renderer)
        self._schedule_feeds(first=False)
        self.metrics.set_feeds(f.id for f in new.feeds)
        self._schedule_transitions()
        await self._calendar_job()
        _freeze_heap()
        log.info(
            "reloaded: %d feeds, %d rules, %d subscribers",
            len(new.feeds),
            len(new.rules),
            len(new.subscribers),
        )
        self._wake.set()
        return True

    async def _unsubscribe(self, subscriber_id: str, token: str) -> str | None:
        target = await apply_unsubscribe(
            self.config, self.app.store, subscriber_id, token, now=self.clock()
        )
        self.app.pipeline.forget_blocked()
        return target

    def request_stop(self) -> None:
        if not self.stop_event.is_set():
            log.info("stopping: no new polls; finishing in-flight deliveries")
            self.stop_event.set()

    async def _status(self) -> dict[str, Any]:
        next_polls = {}
        for feed in self.config.feeds:
            job = self.scheduler.get_job(f"feed:{feed.id}")
            next_polls[feed.id] = job.next_run_time if job else None
        status = await store_status(
            self.app.store, self.config.feeds, started_at=self.started_at, next_polls=next_polls
        )
        status["up"] = bool(status.get("up")) and not self.stop_event.is_set()
        return status

    # --- main --------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        async with App(self.config, clock=self.clock, parse_in_processes=True) as app:
            self.app = app
            _freeze_heap()
            app.outbox.on_result = self._observe_delivery
            health = None
            if self.config.model.notifier.health:
                host, _, port = self.config.model.notifier.health.rpartition(":")
                health = HealthServer(
                    host=host.strip("[]"),
                    port=int(port),
                    metrics=self.metrics,
                    status=self._status,
                )
                await health.start()
                log.info("health on http://%s:%d/healthz", host, health.port)
            reloads: set[asyncio.Task[bool]] = set()

            def on_hup() -> None:
                task = loop.create_task(self.reload())
                reloads.add(task)
                task.add_done_callback(reloads.discard)

            loop.add_signal_handler(signal.SIGHUP, on_hup)
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            try:
                # Start-up: calendar first (late transitions, edits while we were down).
                self.metrics.set_feeds(f.id for f in self.config.feeds)
                await self._calendar_job(catch_up=True)
                self._log_upcoming()
                self._schedule_feeds(first=True)
                self._schedule_transitions()
                self._every(CALENDAR_SWEEP, self._calendar_job, "calendar-sweep")
                self._every(
                    RETENTION_EVERY,
                    self._retention_job,
                    "retention",
                    first=datetime.now(UTC) + RETENTION_FIRST,
                )
                self._every(MEMORY_TRIM_EVERY, self._trim_job, "memory-trim")
                self.scheduler.start()
                log.info(
                    "running: %d feeds, %d rules, %d subscribers",
                    len(self.config.feeds),
                    len(self.config.rules),
                    len(self.config.subscribers),
                )
                worker = asyncio.create_task(self._delivery_worker())
                await self.stop_event.wait()
                self.metrics.set_down()
                self.scheduler.shutdown(wait=False)
                self._wake.set()
                try:
                    await asyncio.wait_for(worker, timeout=SHUTDOWN_GRACE_S)
                except TimeoutError:
                    log.warning("in-flight deliveries did not finish in time; left queued")
                # Polls still running are cut short before the store closes.
                for poll in list(self._polls):
                    poll.cancel()
                await asyncio.gather(*self._polls, return_exceptions=True)
                await app.store.release_claims(app.outbox.worker)
            finally:
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
                if health is not None:
                    await health.stop()
                for task in list(reloads):
                    task.cancel()
        log.info("stopped")
        return 0


def run_daemon(config: Config, args: argparse.Namespace) -> int:
    path = Path(config.path)
    limit_malloc_arenas()  # before the first thread (notifier/memory.py)
    daemon_ref: dict[str, Daemon] = {}

    async def main() -> int:
        daemon = Daemon(config, reload=lambda: load_config(path, state_base=config.state_base))
        daemon_ref["d"] = daemon
        return await daemon.run()

    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(main())
    return 0
