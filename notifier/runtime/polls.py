"""The source job: poll one source (any kind), decide, write one transaction, and hold a
mass change (``source.held``, settled by ``sources release|discard``). Its health events
(``source.failing``/``recovered``) are in ``source_health``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from notifier.config import FeedSection
from notifier.core.decide import FeedPlan, decide_feed_poll, decide_hold
from notifier.core.health import held_event
from notifier.core.model import Event
from notifier.errors import FetchError, NotifierError
from notifier.runtime.jobbase import PassReport
from notifier.runtime.runtime import Runtime
from notifier.runtime.source_health import SourceHealthJobs, about
from notifier.sources.base import Change, FetchContext, Fetched, SourceKind, Tagger, Validators
from notifier.sources.events import Pretagged, tagged_texts
from notifier.sources.registry import source_kind
from notifier.sources.tagging.remote import TagBatches
from notifier.store import FeedState, UnchangedPoll

log = logging.getLogger("notifier.runtime.polls")


# Unchanged polls are recorded in batches of this size, or after this long.
UNCHANGED_BATCH = 200
UNCHANGED_FLUSH_S = 0.25
# A poll alerting on at least this many entries has them tagged in a parse worker (with
# those of other polls, ``TagBatches``); fewer are tagged here: alone (the daemon's usual
# poll), they would wait for a batch and pay a round trip, ~1 ms, what tagging 8 costs.
TAG_REMOTELY_FROM = 8

_LOAD: Any = object()


class SourceJobs(SourceHealthJobs):
    """Polling sources (see the module docstring)."""

    _tag_batches: TagBatches | None = None  # made on first use, on the running loop

    def _context(self, feed: FeedSection) -> FetchContext:
        async def seen(keys: Iterable[str]) -> Mapping[str, str]:
            found = await self.store.seen_entries(feed.id, list(keys))
            return {key: row[0] for key, row in found.items()}

        return FetchContext(
            session=self.notifier.session,
            parse=self.notifier.parse,
            seen=seen,
            clock=self.notifier.clock,
        )

    async def poll_all(self) -> PassReport:
        """Poll every source once, concurrently within a bound; a fault is its own."""
        rt = self.notifier.runtime
        report = PassReport()
        gate = asyncio.Semaphore(32)
        states = await self.store.feed_states()  # one query, not one per source

        async def one(feed: FeedSection) -> PassReport:
            async with gate:
                return await self.poll_source(feed.id, state=states.get(feed.id))

        for result in await asyncio.gather(*(one(f) for f in rt.config.feeds)):
            report.merge(result)
        await self.flush()
        return report

    async def poll_source(self, feed_id: str, *, state: FeedState | None = _LOAD) -> PassReport:
        """Poll one source; never raises for the source's own faults or the store's (they
        are reported, and the store's are logged once per state change)."""
        rt = self.notifier.runtime
        feed = next((f for f in rt.config.feeds if f.id == feed_id), None)
        report = PassReport(feeds_polled=1)
        if feed is None:
            return report
        try:
            if state is _LOAD:
                state = await self.store.feed_state(feed.id)
            await self._poll(rt, feed, state, report)
        except NotifierError as exc:  # the store failed: a failed poll, not a crash
            report.feed_errors[feed.id] = f"not recorded: {exc}"
        return report

    async def _poll(
        self, rt: Runtime, feed: FeedSection, state: FeedState | None, report: PassReport
    ) -> None:
        kind = source_kind(feed.kind)
        ctx = self._context(feed)
        validators = Validators(
            etag=state.etag if state else None,
            last_modified=state.last_modified if state else None,
            body_hash=state.body_hash if state else None,
        )
        try:
            fetched = await kind.fetch(feed, validators, ctx)
        except FetchError as exc:
            await self._record_failure(rt, feed, state, str(exc), report)
            return
        if fetched.warning:
            log.info("source %s: %s", feed.id, fetched.warning, extra=about(feed))
        now = self.notifier.clock()
        if fetched.unchanged:
            report.feeds_unchanged = 1
            await self._record_unchanged(rt, feed, state, fetched, report, now=now)
            return
        known = state is not None and state.last_ok_at is not None
        keys = None if (kind.reports_removals or not known) else [e.key for e in fetched.entries]
        seen = await self.store.seen_entries(feed.id, keys)
        plan = decide_feed_poll(
            known=known,
            entries=fetched.entries,
            seen=seen,
            partial=fetched.partial,
            reports_removals=kind.reports_removals,
        )
        if not plan.baseline and plan.remember:
            plan = await self._complete(kind, feed, ctx, fetched, seen, plan, known=known)
        # Alerts name the feed by its configured title, else its own <title>.
        named = (
            feed
            if feed.title or not fetched.title
            else feed.model_copy(update={"title": fetched.title})
        )
        events: list[Event] = []
        if plan.baseline:
            report.baselined.append(feed.id)
            log.info(
                "source %s: first poll, %d entries taken as the baseline",
                feed.id,
                len(plan.remember),
                extra=about(feed),
            )
        else:
            tagger = await self._tagger(rt, kind, plan.changes, now=now)
            events = kind.events(named, plan.changes, now=now, tagger=tagger)
        hold = decide_hold(
            events,
            baseline=plan.baseline,
            limit=feed.change_limit(max(len(seen), len(fetched.entries))),
        )
        health = await self._recovery_events(feed, state, now=now)
        if hold.held:
            report.held.append(feed.id)
            await self._hold(rt, feed, fetched, plan, events, hold, report, health=health, now=now)
            return
        await self._commit(
            await self._plan(rt, events + health, now=now),
            report,
            now=now,
            write=lambda tx: self._save(tx, feed, fetched, plan, now=now),
        )

    async def _tagger(
        self, rt: Runtime, kind: SourceKind, changes: Sequence[Change], *, now: datetime
    ) -> Tagger:
        """The runtime's tagger, with what this poll alerts on tagged in a parse worker
        beforehand: this process renders and sends every alert, so it is a pass's
        critical path, while the workers are idle once they have parsed."""
        files = rt.tagger.files
        if not kind.tags_entries or files is None:
            return rt.tagger
        texts = tagged_texts(changes, now=now)
        if len(texts) < TAG_REMOTELY_FROM:
            return rt.tagger
        # The worker keeps its compiled word lists where this process would (a dry run
        # writes nothing, not even a cache).
        cache = rt.tagger.cache_dir or (
            rt.config.state_dir / "cache" / "tagger" if self.write else None
        )
        if self._tag_batches is None:
            self._tag_batches = TagBatches(self.notifier.parse)
        try:
            tags = await self._tag_batches.tag(files, cache, texts)
        except Exception as exc:  # an optimisation only: whatever went wrong, tag here
            log.debug("tagging in a worker failed (%s): tagging here", exc)
            return rt.tagger
        return Pretagged(rt.tagger, dict(zip(texts, tags, strict=True)))

    async def _complete(
        self,
        kind: Any,
        feed: FeedSection,
        ctx: FetchContext,
        fetched: Fetched,
        seen: Mapping[str, tuple[str, str, str]],
        plan: FeedPlan,
        *,
        known: bool,
    ) -> FeedPlan:
        """Let the kind finish what is new or changed (a bulletin's page); what it could
        not finish is left for the next poll, neither alerted nor remembered."""
        completed, failed = await kind.complete(feed, list(plan.remember), ctx)
        if not failed and completed == list(plan.remember):
            return plan
        by_key = {entry.key: entry for entry in completed}
        entries = [by_key.get(entry.key, entry) for entry in fetched.entries]
        return decide_feed_poll(
            known=known,
            entries=entries,
            seen=seen,
            partial=frozenset(fetched.partial) | frozenset(failed),
            reports_removals=kind.reports_removals,
        )

    async def _save(
        self, tx: Any, feed: FeedSection, fetched: Fetched, plan: FeedPlan, *, now: datetime
    ) -> None:
        await self.store.remember_entries(tx, feed.id, plan.remember, now=now)
        await self.store.touch_entries(tx, feed.id, plan.touch, now=now)
        if plan.forget:
            await self.store.forget_entries(tx, feed.id, plan.forget)
        # Entries left for the next poll (a bulletin page that failed): keep the old
        # validators, so the same body is parsed again and they are tried again.
        kept = plan.touch | {entry.key for entry in plan.remember}
        incomplete = any(entry.key not in kept for entry in fetched.entries)
        await self.store.record_poll(
            tx,
            feed.id,
            now=now,
            error=None,
            etag=None if incomplete else fetched.etag,
            last_modified=None if incomplete else fetched.last_modified,
            body_hash=None if incomplete else fetched.body_hash,
            polled_by=self.notifier.worker,
        )

    async def _record_unchanged(
        self,
        rt: Runtime,
        feed: FeedSection,
        state: FeedState | None,
        fetched: Fetched,
        report: PassReport,
        *,
        now: datetime,
    ) -> None:
        if not self.write:
            return
        recovering = state is not None and state.failures > 0
        if state is not None and not recovering:
            # The common case (1,000 feeds answering 304): batched, one transaction per
            # batch. Nothing is lost on a crash but a few "last polled" times.
            self._note_unchanged(
                UnchangedPoll(
                    feed_id=feed.id,
                    at=now,
                    etag=fetched.etag,
                    last_modified=fetched.last_modified,
                    body_hash=fetched.body_hash,
                    polled_by=self.notifier.worker,
                )
            )
            if len(self._unchanged) >= UNCHANGED_BATCH:
                await self.flush()
            return
        events = await self._recovery_events(feed, state, now=now)

        async def write(tx: Any) -> None:
            await self.store.record_poll(
                tx,
                feed.id,
                now=now,
                error=None,
                etag=fetched.etag,
                last_modified=fetched.last_modified,
                body_hash=fetched.body_hash,
                polled_by=self.notifier.worker,
            )

        await self._commit(await self._plan(rt, events, now=now), report, now=now, write=write)

    def _note_unchanged(self, poll: UnchangedPoll) -> None:
        self._unchanged[poll.feed_id] = poll
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(
                UNCHANGED_FLUSH_S, lambda: self._flushes.add(loop.create_task(self.flush()))
            )

    async def flush(self) -> None:
        """Write the batched unchanged-poll records now."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._flushes = {task for task in self._flushes if not task.done()}
        pending, self._unchanged = list(self._unchanged.values()), {}
        if pending:
            try:
                await self.store.record_unchanged_polls(pending)
            except NotifierError as exc:
                log.error("could not record %d unchanged polls: %s", len(pending), exc)

    async def _hold(
        self,
        rt: Runtime,
        feed: FeedSection,
        fetched: Fetched,
        plan: FeedPlan,
        events: list[Event],
        hold: Any,
        report: PassReport,
        *,
        health: list[Event],
        now: datetime,
    ) -> None:
        """Keep the old baseline; store the change for an operator; tell operators once."""
        if not self.write:
            log.warning(
                "source %s: this poll would be held (%s)",
                feed.id,
                dict(hold.would_emit),
                extra=about(feed),
            )
            return
        notice = held_event(feed.id, feed.kind, hold, now=now)
        fresh = False

        async def write(tx: Any) -> None:
            nonlocal fresh
            # Under the write lock: an operator may have released or discarded this very
            # change since this poll read the store; then its entries are stored now and
            # holding it again would leave the source "held" with nothing to settle.
            if not (plan.remember and await self._settled_meanwhile(feed.id, plan)):
                fresh = await self.store.hold_change(
                    tx,
                    feed.id,
                    fingerprint=hold.fingerprint,
                    detected_at=now,
                    events=events,
                    would_emit=hold.would_emit,
                    remember=plan.remember,
                    touch=plan.touch,
                    forget=plan.forget,
                    validators={
                        "etag": fetched.etag,
                        "last_modified": fetched.last_modified,
                        "body_hash": fetched.body_hash,
                    },
                )
            # The poll itself succeeded: health is ok; the baseline (validators) stays.
            await self.store.record_poll(
                tx, feed.id, now=now, error=None, polled_by=self.notifier.worker
            )

        planned = await self._plan(rt, [notice, *health], now=now)
        await self._commit(planned, report, now=now, write=write)
        if not fresh:  # held already (or settled meanwhile): said once, when first held
            log.debug("source %s: the held change is still pending", feed.id, extra=about(feed))
            return
        log.warning(
            "source %s: change held for review (%s); `tariff-notifier sources release %s` "
            "sends it, `sources discard %s` takes it as the baseline",
            feed.id,
            ", ".join(f"{n} {t}" for t, n in hold.would_emit.items()),
            feed.id,
            feed.id,
            extra=about(feed),
        )

    async def _settled_meanwhile(self, feed_id: str, plan: FeedPlan) -> bool:
        """Whether every entry this change would remember is stored as it is now (a
        ``sources release|discard`` committed after this poll read the store)."""
        stored = await self.store.seen_entries(feed_id, [e.key for e in plan.remember])
        return all(stored.get(e.key, ("",))[0] == e.content_hash for e in plan.remember)


__all__ = ["SourceJobs"]
