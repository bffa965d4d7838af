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
import gc
import logging
import random
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from notifier.config import Config, FeedSection, format_duration, load_config
from notifier.core.calendar import all_transitions
from notifier.core.model import Delivery
from notifier.core.retry import feed_backoff, jitter_for, lease_for
from notifier.delivery.unsubscribe import apply_unsubscribe
from notifier.errors import NotifierError
from notifier.runtime.health import HealthServer, store_status
from notifier.runtime.jobs import Jobs, PassReport
from notifier.runtime.memory import limit_malloc_arenas, release_free_memory
from notifier.runtime.metrics import Metrics
from notifier.runtime.runtime import Clock, Notifier, utc_now

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
# Cap on the idle wait of the delivery worker (a safety net; wakes are event-driven).
MAX_IDLE_S = 60.0
# The first wait after a state-store error; doubled per error, up to MAX_IDLE_S.
STORE_RETRY_S = 0.5
# /healthz and /metrics answer from a snapshot refreshed at most this often, so 50
# probes a second cost the store two queries a second, not a hundred.
STATUS_TTL_S = 1.0


def _freeze_heap() -> None:
    """Move the loaded config, subscriber index and caches out of the GC's sight.

    They live as long as the config; with 100,000 subscribers the collector's full passes
    over them cost more than the matching itself (bench/bench_scale.py).
    """
    gc.collect()
    gc.freeze()


class Daemon:
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
        self._status_cache: tuple[float, dict[str, Any]] | None = None
        self.last_reload_error: str | None = None
        self.started_at = clock()
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.notifier: Notifier
        self.jobs: Jobs
        self.health: HealthServer | None = None

    @property
    def config(self) -> Config:
        return self.notifier.runtime.config

    # --- scheduling --------------------------------------------------------------------

    def _schedule_feeds(self, *, first: bool) -> None:
        wanted = {f"feed:{f.id}": f for f in self.config.feeds}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("feed:") and job.id not in wanted:
                job.remove()
        now = self.clock()
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
            replace_existing=True,
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
            for tr in all_transitions(
                self.config.rules,
                remind=self.config.model.calendar.remind,
                zone=self.config.zone,
            )
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
            for tr in all_transitions(
                self.config.rules,
                remind=self.config.model.calendar.remind,
                zone=self.config.zone,
            )
            if tr.at > now and tr.kind != "reminder"
        ][:count]
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
                log.error("poll of %s could not be recorded: %s", feed.id, error)
            self._failing[feed.id] = failures
            job = self.scheduler.get_job(f"feed:{feed.id}")
            if job is not None:
                delay = feed_backoff(feed.every, failures)
                job.modify(next_run_time=self.clock() + delay)
        else:
            self._failing.pop(feed.id, None)
            if was_failing:
                log.info("source %s recovered", feed.id)
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
                    report = await self.jobs.check_calendar(catch_up=catch_up)
                except NotifierError as exc:
                    self._store_unreachable(exc, what="calendar check")
                    return
                self._store_reachable()
                for event in report.events:
                    self.metrics.observe_event(event.type)
                    log.info(
                        "event %s %s", event.type, event.data.get("rule", {}).get("id", event.id)
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

    # --- state-store outages: one line per state change --------------------------------

    def _store_unreachable(self, exc: BaseException, *, what: str = "state store") -> None:
        if not self._store_down:
            self._store_down = True
            log.error("state store unreachable (%s): %s; retrying", what, exc)

    def _store_reachable(self) -> None:
        if self._store_down:
            self._store_down = False
            log.info("state store reachable again")

    # --- the delivery worker -----------------------------------------------------------

    def _observe_delivery(self, delivery: Delivery, status: str, latency_s: float) -> None:
        outcome = "retry" if status == "queued" else status
        self.metrics.observe_delivery(delivery.channel, outcome, latency_s)

    async def _delivery_worker(self) -> None:
        """Drain the outbox, then sleep until the next due time, a wake-up or a stop.

        A state-store error never ends the worker: it is logged once, the worker backs
        off (0.5 s, doubling to a minute) and delivery resumes by itself when the store
        answers again, with nothing lost (claims expire, rows stay)."""
        backoff = STORE_RETRY_S
        while not self.stop_event.is_set():
            self.notifier.wake.clear()
            runtime = self.notifier.runtime
            runtime.outbox.on_result = self._observe_delivery
            runtime.outbox.on_gone = lambda _sub, _target: self.jobs.forget_blocked()
            try:
                self._draining = asyncio.ensure_future(self.jobs.drain())
                await self._draining
                counts = await self.notifier.store.counts()
                self.metrics.set_queue(counts.get("queued", 0), counts.get("dead", 0))
                next_due = await self.notifier.store.next_due_at()
                self._store_reachable()
                backoff = STORE_RETRY_S
                wait_s = MAX_IDLE_S
                if next_due is not None:
                    # Due but not claimable (another worker's lease): look again shortly.
                    wait_s = min(max((next_due - self.clock()).total_seconds(), 0.5), MAX_IDLE_S)
            except NotifierError as exc:
                self._store_unreachable(exc, what="delivery")
                wait_s, backoff = backoff, min(backoff * 2, MAX_IDLE_S)
            except Exception:  # a bug must not silently end delivery for good
                log.exception("delivery worker: unexpected error; continuing")
                wait_s = backoff
            finally:
                self._draining = None
            if self.stop_event.is_set():
                return
            await self._sleep(wait_s)

    async def _sleep(self, wait_s: float) -> None:
        waker = asyncio.ensure_future(self.notifier.wake.wait())
        stopper = asyncio.ensure_future(self.stop_event.wait())
        await asyncio.wait({waker, stopper}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        waker.cancel()
        stopper.cancel()

    async def _drain_finished(self) -> None:
        draining = self._draining
        if draining is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(draining)

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
        self.jobs.forget_blocked()
        await self._restart_health()
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
        """The /healthz body, from a snapshot at most ``STATUS_TTL_S`` old."""
        loop_now = time.monotonic()
        if self._status_cache is not None and loop_now - self._status_cache[0] < STATUS_TTL_S:
            status = dict(self._status_cache[1])
        else:
            next_polls = {}
            for feed in self.config.feeds:
                job = self.scheduler.get_job(f"feed:{feed.id}")
                next_polls[feed.id] = job.next_run_time if job else None
            status = await store_status(
                self.notifier.store,
                self.config,
                started_at=self.started_at,
                next_polls=next_polls,
                now=self.clock(),
            )
            self._status_cache = (loop_now, status)
            status = dict(status)
        status["up"] = bool(status.get("up")) and not self.stop_event.is_set()
        if self.health is not None:
            status["health"] = f"{self.health.host}:{self.health.port}"
        if self.last_reload_error:
            status["status"] = "degraded"
            status.setdefault("reasons", [])
            status["reasons"] = [
                *status["reasons"],
                f"last reload rejected: {self.last_reload_error}",
            ]
        return status

    async def _restart_health(self) -> None:
        """Serve health where the current runtime says (a reload may move or drop it)."""
        wanted = self.notifier.runtime.health
        current = self.health
        if current is not None and wanted == current.requested:
            return
        if current is not None:
            await current.stop()
            self.health = None
        if not wanted:
            return
        host, _, port = wanted.rpartition(":")
        server = HealthServer(
            host=host.strip("[]"),
            port=int(port),
            metrics=self.metrics,
            status=self._status,
            unsubscribe=self._unsubscribe,
        )
        server.requested = wanted
        await server.start()
        self.health = server
        log.info("health on http://%s:%d/healthz", server.host, server.port)

    # --- main --------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        async with Notifier(
            self._initial, clock=self.clock, parse_in_processes=True, health=self.health_override
        ) as notifier:
            self.notifier = notifier
            self.jobs = Jobs(notifier)
            _freeze_heap()
            reloads: set[asyncio.Task[bool]] = set()

            def on_hup() -> None:
                task = loop.create_task(self.reload())
                reloads.add(task)
                task.add_done_callback(reloads.discard)

            try:
                await self._restart_health()
                loop.add_signal_handler(signal.SIGHUP, on_hup)
                loop.add_signal_handler(signal.SIGTERM, self.request_stop)
                loop.add_signal_handler(signal.SIGINT, self.request_stop)
                await self._serve()
            finally:
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
                if self.health is not None:
                    await self.health.stop()
                for task in list(reloads):
                    task.cancel()
        log.info("stopped")
        return 0

    async def _serve(self) -> None:
        # Start-up: calendar first (late transitions, edits while we were down).
        self.metrics.set_feeds(f.id for f in self.config.feeds)
        await self._calendar_job(catch_up=True)
        self._log_upcoming()
        self._schedule_feeds(first=True)
        self._schedule_transitions()
        self._every(CALENDAR_SWEEP, self._calendar_job, "calendar-sweep")
        self._every(
            RETENTION_EVERY, self._retention_job, "retention", first=self.clock() + RETENTION_FIRST
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
        return asyncio.run(main())
    return 0
