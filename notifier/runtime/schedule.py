"""When the daemon's jobs run: APScheduler 3.x jobs, in memory, rebuilt from the config
and our own state at start and on reload.

The scheduler's job store is never the source of truth for what was emitted (a
DateTrigger missed while the process was down is silently dropped by APScheduler,
PITFALLS.md): the store decides; the scheduler only wakes us at the right instant.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from notifier.core.retry import jitter_for

PollFn = Callable[[str], Awaitable[None]]


class JobSchedule:
    """The daemon's APScheduler jobs: one interval job per source, one date job per
    future calendar instant, and the housekeeping jobs."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.scheduler = AsyncIOScheduler(timezone=UTC)

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)

    def sources(
        self, wanted: Sequence[tuple[str, timedelta]], poll: PollFn, *, prefix: str, first: bool
    ) -> None:
        """Poll each source id on its interval (with jitter); drop the ones gone."""
        jobs = {f"{prefix}:{source_id}": (source_id, every) for source_id, every in wanted}
        for job in self.scheduler.get_jobs():
            if job.id.startswith(f"{prefix}:") and job.id not in jobs:
                job.remove()
        now = self.clock()
        for job_id, (source_id, every) in jobs.items():
            trigger = IntervalTrigger(seconds=every.total_seconds(), jitter=jitter_for(every))
            existing = self.scheduler.get_job(job_id)
            if existing is not None:
                existing.modify(args=[source_id])
                if existing.trigger.interval != trigger.interval:
                    existing.reschedule(trigger)
                continue
            # First polls spread over a few seconds instead of all at once.
            spread = min(every.total_seconds(), 10.0) if first else 1.0
            self.scheduler.add_job(
                poll,
                trigger,
                id=job_id,
                args=[source_id],
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=now + timedelta(seconds=random.uniform(0, spread)),
            )

    def next_run(self, job_id: str) -> datetime | None:
        job = self.scheduler.get_job(job_id)
        return job.next_run_time if job is not None else None

    def postpone(self, job_id: str, delay: timedelta) -> None:
        """Back a failing source off: its next poll ``delay`` from now."""
        job = self.scheduler.get_job(job_id)
        if job is not None:
            job.modify(next_run_time=self.clock() + delay)

    def every(
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

    def instants(self, at: Iterable[datetime], job: Callable[[], Any]) -> None:
        """One date job per future instant (not per transition: 100 rules taking effect
        at the same second are one check)."""
        for existing in self.scheduler.get_jobs():
            if existing.id.startswith("tr:"):
                existing.remove()
        now = self.clock()
        for instant in sorted({moment.astimezone(UTC) for moment in at if moment > now}):
            self.scheduler.add_job(
                job,
                DateTrigger(run_date=instant),
                id=f"tr:{instant.isoformat()}",
                misfire_grace_time=None,
                max_instances=1,
            )
