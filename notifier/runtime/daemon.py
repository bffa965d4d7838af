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

from notifier.config import Config, load_config
from notifier.delivery.unsubscribe import apply_unsubscribe
from notifier.errors import NotifierError
from notifier.runtime.daemon_jobs import ScheduledJobs
from notifier.runtime.health import HealthService, store_status
from notifier.runtime.jobs import Jobs
from notifier.runtime.loop import run as run_loop
from notifier.runtime.memory import freeze_heap, limit_malloc_arenas
from notifier.runtime.metrics import Metrics
from notifier.runtime.runtime import Clock, Notifier, utc_now
from notifier.runtime.schedule import JobSchedule

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


class Daemon(ScheduledJobs):
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
