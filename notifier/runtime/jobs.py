"""The jobs of a notifier, shared by ``once`` and ``run``: poll a source, check the
calendar, drain the outbox (digests included), retention.

``once`` runs each of them once; ``run`` lets APScheduler trigger the same functions.
Each source job reads the store, decides in a pure function (notifier/core/decide.py)
and writes one transaction: the new snapshot, the events and their deliveries commit
together or not at all (a transactional outbox: urlwatch saves the snapshot before it
sends, so an SMTP outage turns a change into the baseline, PITFALLS.md). A dry run is
"decide, don't write".
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from notifier.core.planning import digest_instants
from notifier.delivery.outbox import DrainReport
from notifier.errors import NotifierError
from notifier.runtime.calendar_jobs import CalendarJobs
from notifier.runtime.jobbase import PassReport, calendar_url_key, json_text
from notifier.store import Pruned

log = logging.getLogger("notifier.runtime.jobs")


@dataclass
class OnceReport:
    sources: PassReport = field(default_factory=PassReport)
    delivery: DrainReport = field(default_factory=DrainReport)
    pruned: Pruned = field(default_factory=Pruned)


class Jobs(CalendarJobs):
    """Every job of a notifier over one :class:`Notifier` (always its current runtime)."""

    async def settle_held(self, source_id: str, *, release: bool) -> PassReport | None:
        """``sources release`` (the held events go out, with their own ids and the
        ``detected_at`` of the poll that found them) or ``sources discard`` (the new state
        becomes the baseline silently). None when the source holds nothing."""
        rt = self.notifier.runtime
        report = PassReport()
        now = self.notifier.clock()
        held = (await self.store.held_changes()).get(source_id)
        if held is None:
            return None
        # A calendar URL's held events are a preview: the calendar check emits the real
        # ones (the same ids) once its rules are the calendar.
        feed_events = release and held.rules is None
        planned = await self._plan(rt, list(held.events), now=now) if feed_events else []

        async def write(tx: Any) -> None:
            taken = await self.store.take_held(tx, source_id)
            if taken is None:  # another instance settled it meanwhile
                return
            await self.store.remember_entries(tx, source_id, taken.remember, now=now)
            await self.store.touch_entries(tx, source_id, taken.touch, now=now)
            if taken.forget:
                await self.store.forget_entries(tx, source_id, taken.forget)
            if taken.rules is not None:
                await self.store.set_meta(tx, calendar_url_key(source_id), json_text(taken.rules))
            validators = taken.validators
            if any(validators.values()):
                await self.store.record_poll(
                    tx,
                    source_id,
                    now=now,
                    error=None,
                    etag=validators.get("etag"),
                    last_modified=validators.get("last_modified"),
                    body_hash=validators.get("body_hash"),
                    polled_by=self.notifier.worker,
                )

        await self._commit(planned, report, now=now, write=write)
        if held.rules is not None:  # a calendar URL: its new rules are the calendar now
            report.merge(await self.check_calendar(silent=not release))
        return report

    # --- delivery and housekeeping -----------------------------------------------------

    async def drain(
        self, *, stop: asyncio.Event | None = None, report: DrainReport | None = None
    ) -> DrainReport:
        """Send what is due on the current runtime (digests included)."""
        rt = self.notifier.runtime
        return await rt.outbox.drain(stop=stop or rt.retired, report=report)

    async def retention(self) -> Pruned:
        rt = self.notifier.runtime
        pruned: Pruned = await self.store.prune(
            now=self.notifier.clock(),
            retention=rt.config.model.notifier.retention,
            feed_ids=[f.id for f in rt.config.feeds],
            ledger_retention=rt.config.model.notifier.ledger_retention,
        )
        return pruned

    async def reschedule_digests(self) -> None:
        """A changed `digest` time moves what already waits for a digest (one digest
        that day, not two); a removed `digest` sends what waited at once."""
        rt, now = self.notifier.runtime, self.notifier.clock()
        instants = digest_instants(rt.config.subscribers, now=now, zone=rt.zone)
        await self.store.reschedule_digests(instants, now=now)

    async def run_once(self) -> OnceReport:
        """One pass: calendar, sources (sending overlaps polling), deliveries, retention."""
        report = OnceReport()
        if self.write:
            await self.reschedule_digests()
            report.sources.merge(await self.poll_calendar_urls())
        report.sources.merge(await self.check_calendar())
        if not self.write:
            report.sources.merge(await self.poll_all())
            return report
        polls = asyncio.create_task(self.poll_all())
        # Deliver what the first sources committed while the others are still fetched and
        # parsed: each commit wakes the drain, which returns when nothing is due.
        while not polls.done():
            await self.drain(report=report.delivery)
            waker = asyncio.ensure_future(self.notifier.wake.wait())
            await asyncio.wait({polls, waker}, return_when=asyncio.FIRST_COMPLETED)
            waker.cancel()
            self.notifier.wake.clear()
        report.sources.merge(polls.result())
        await self.drain(report=report.delivery)
        try:
            report.pruned = await self.retention()
        except NotifierError as exc:  # the next pass tries again
            log.warning("retention pass failed: %s", exc)
        return report


__all__ = ["Jobs", "OnceReport", "PassReport"]
