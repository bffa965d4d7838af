"""Sources to the outbox: poll a feed or check the calendar, diff, match, and commit the
new state together with the events and their deliveries (transactional outbox).

urlwatch saves the new snapshot before it sends, so an SMTP outage turns a change into
the baseline and the alert is lost (PITFALLS.md). Here the snapshot, the event and its
deliveries commit in one transaction: after a crash either all of them exist or none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

import aiohttp

from notifier.config import Config, FeedSection
from notifier.core.calendar import diff_calendar, due_transitions, transition_event
from notifier.core.entries import diff_entries
from notifier.core.matching import SubscriberIndex
from notifier.core.model import Entry, Event, stable_id
from notifier.core.planning import plan_deliveries
from notifier.errors import FetchError, NotifierError
from notifier.sources.http import FetchResult, fetch_feed
from notifier.sources.pool import ParsePool
from notifier.sources.rss import parse_feed
from notifier.store import FeedState, Store, UnchangedPoll
from notifier.tagging import Tagger

log = logging.getLogger("notifier.runtime.jobs")

Clock = Callable[[], datetime]

# Unsubscribes and 410-gone endpoints are re-read at most this often.
BLOCKED_TTL_S = 10.0

# Unchanged polls are recorded in batches of this size, or after this long.
UNCHANGED_BATCH = 200
UNCHANGED_FLUSH_S = 0.25

# A feed whose parse takes longer than this is a failed poll (feedparser's lenient
# parser has slow paths on hostile input; the pool worker finishes on its own).
PARSE_TIMEOUT_S = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PassReport:
    """What one pass did: for the CLI's summary and for tests."""

    events: list[Event] = field(default_factory=list)
    deliveries: int = 0
    feed_errors: dict[str, str] = field(default_factory=dict)
    feeds_polled: int = 0
    feeds_unchanged: int = 0
    baselined: list[str] = field(default_factory=list)

    def merge(self, other: PassReport) -> None:
        self.events += other.events
        self.deliveries += other.deliveries
        self.feed_errors.update(other.feed_errors)
        self.feeds_polled += other.feeds_polled
        self.feeds_unchanged += other.feeds_unchanged
        self.baselined += other.baselined


def entry_event(
    feed: FeedSection,
    entry: Entry,
    *,
    kind: str,
    tagger: Tagger,
    now: datetime,
    changes: list[dict[str, Any]],
) -> Event:
    """A ``feed.entry.new|updated`` event; its id is feed + entry key + content hash."""
    text = f"{entry.title}\n{entry.summary}"
    reference = datetime.fromisoformat(entry.published) if entry.published else now
    tags = tagger.tag(text, reference=reference)
    return Event(
        id="evt_" + stable_id(feed.id, entry.key, entry.content_hash),
        type=f"feed.entry.{kind}",
        timestamp=now,
        data={
            "feed": feed.id,
            "feed_title": feed.title,
            "entry": entry.to_dict(),
            "tags": tags.to_dict(),
            "changes": changes,
        },
        origins=tags.origins,
        hts=tags.hts,
        text=text,
    )


class Pipeline:
    """The source side of one notifier: feeds and calendar in, outbox rows out."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        tagger: Tagger,
        session: aiohttp.ClientSession,
        clock: Clock = utc_now,
        parse_pool: ParsePool | None = None,
        dry_run: bool = False,
        worker: str | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.tagger = tagger
        self.session = session
        self.clock = clock
        self.parse_pool = parse_pool
        self.dry_run = dry_run
        self.worker = worker
        self.index = SubscriberIndex(config.subscribers)
        self._unchanged: dict[str, UnchangedPoll] = {}
        self._blocked: tuple[float, set[tuple[str, str]]] | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self._blocked = None
        self.index = SubscriberIndex(config.subscribers)

    async def _plan(self, events: list[Event], *, now: datetime) -> list[tuple[Event, list[Any]]]:
        if not events:
            return []
        blocked = await self._blocked_targets()
        zone = self.config.zone
        return [
            (e, plan_deliveries(e, self.index.match(e), now=now, zone=zone, blocked=blocked))
            for e in events
        ]

    # --- feeds -------------------------------------------------------------------------

    async def poll_feed(
        self, feed: FeedSection, *, state: FeedState | Literal["load"] | None = "load"
    ) -> PassReport:
        """Poll one feed; never raises for the feed's own faults (they are recorded).

        ``state``: the feed's stored state when the caller already read it (a pass over
        every feed reads them all in one query).
        """
        report = PassReport(feeds_polled=1)
        if state == "load":
            state = await self.store.feed_state(feed.id)
        try:
            fetched = await fetch_feed(
                self.session,
                feed.url,
                etag=state.etag if state else None,
                last_modified=state.last_modified if state else None,
                timeout_s=feed.timeout.total_seconds(),
                max_bytes=feed.max_bytes,
            )
            unchanged = fetched.status == 304 or (
                state is not None and fetched.body_hash == state.body_hash
            )
            entries: list[Entry] = []
            if not unchanged:
                entries = await self._parse(feed, fetched)
        except FetchError as exc:
            await self._record_failure(feed, str(exc), report)
            return report
        now = self.clock()
        if unchanged:
            report.feeds_unchanged = 1
            if self.dry_run:
                return report
            values = {
                "etag": fetched.etag or (state.etag if state else None),
                "last_modified": fetched.last_modified or (state.last_modified if state else None),
                "body_hash": state.body_hash
                if state and fetched.status == 304
                else fetched.body_hash,
            }
            if state is not None:
                await self._note_unchanged(feed.id, now=now, **values)
            else:  # a 304 to a request without validators: no row to update yet
                async with self.store.transaction() as tx:
                    await self.store.record_poll(
                        tx, feed.id, now=now, error=None, polled_by=self.worker, **values
                    )
            return report
        # Failed polls leave a state row too: a feed is known from its first success on.
        known = state is not None and state.last_ok_at is not None
        # A known feed: only what this poll carries (not the feed's whole history).
        seen = await self.store.seen_entries(feed.id, (e.key for e in entries) if known else None)
        first_poll = not known and not seen
        events: list[Event] = []
        to_remember = entries
        if first_poll:
            report.baselined.append(feed.id)
            log.info("feed %s: first poll, %d entries taken as the baseline", feed.id, len(entries))
        else:
            hashes = {key: row[0] for key, row in seen.items()}
            changed = diff_entries(hashes, entries)
            to_remember = [entry for _, entry in changed]
            for kind, entry in changed:
                changes = _entry_changes(seen.get(entry.key), entry) if kind == "updated" else []
                events.append(
                    entry_event(
                        feed, entry, kind=kind, tagger=self.tagger, now=now, changes=changes
                    )
                )
        planned = await self._plan(events, now=now)
        await self._commit(
            planned,
            report,
            now=now,
            write=lambda tx: self._save_feed(
                tx, feed, fetched, to_remember, present=entries, now=now
            ),
        )
        return report

    async def _blocked_targets(self) -> set[tuple[str, str]]:
        """Unsubscribed and gone targets, read at most every BLOCKED_TTL_S (they change
        rarely; an unsubscribe also fails what is already queued for the address)."""
        loop_now = asyncio.get_running_loop().time()
        if self._blocked is None or loop_now - self._blocked[0] > BLOCKED_TTL_S:
            hashes = {s.id: s.config_hash for s in self.config.subscribers}
            self._blocked = (loop_now, await self.store.blocked_targets(hashes))
        return self._blocked[1]

    def forget_blocked(self) -> None:
        """Re-read unsubscribes and gone endpoints at the next plan (after an unsubscribe)."""
        self._blocked = None

    async def _note_unchanged(
        self,
        feed_id: str,
        *,
        now: datetime,
        etag: str | None,
        last_modified: str | None,
        body_hash: str | None,
    ) -> None:
        """Unchanged polls are the common case (1,000 feeds answering 304): their
        bookkeeping is written in batches, one transaction per batch, not one per feed.
        Nothing is lost on a crash but a few "last polled" times."""
        self._unchanged[feed_id] = UnchangedPoll(
            feed_id=feed_id,
            at=now,
            etag=etag,
            last_modified=last_modified,
            body_hash=body_hash,
            polled_by=self.worker,
        )
        if len(self._unchanged) >= UNCHANGED_BATCH:
            await self.flush()
        elif self._flush_handle is None:
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

    async def _save_feed(
        self,
        tx: Any,
        feed: FeedSection,
        fetched: Any,
        entries: list[Entry],
        *,
        present: list[Entry],
        now: datetime,
    ) -> None:
        await self.store.remember_entries(tx, feed.id, entries, now=now)
        remembered = {entry.key for entry in entries}
        await self.store.touch_entries(tx, feed.id, {e.key for e in present} - remembered, now=now)
        await self.store.record_poll(
            tx,
            feed.id,
            now=now,
            error=None,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
            body_hash=fetched.body_hash,
        )

    async def _parse(self, feed: FeedSection, fetched: FetchResult) -> list[Entry]:
        assert fetched.body is not None
        parse = partial(parse_feed, content_type=fetched.content_type, base_url=fetched.final_url)
        if self.parse_pool is not None:
            parsed = await self.parse_pool.run(parse, fetched.body, timeout_s=PARSE_TIMEOUT_S)
        else:
            # Small setups (and tests): a thread keeps the loop free; it cannot be killed,
            # but the poll still fails at the deadline.
            try:
                async with asyncio.timeout(PARSE_TIMEOUT_S):
                    parsed = await asyncio.to_thread(parse, fetched.body)
            except TimeoutError:
                raise FetchError(f"parsing took longer than {PARSE_TIMEOUT_S:g} s") from None
        if parsed.warning:
            log.info("feed %s: %s", feed.id, parsed.warning)
        return list(parsed.entries)

    async def _record_failure(self, feed: FeedSection, error: str, report: PassReport) -> None:
        report.feed_errors[feed.id] = error
        if self.dry_run:
            log.warning("feed %s failed: %s", feed.id, error)
            return
        async with self.store.transaction() as tx:
            failures = await self.store.record_poll(
                tx, feed.id, now=self.clock(), error=error, polled_by=self.worker
            )
        # Log once per state change, not on every failing poll of a dead feed.
        if failures == 1:
            log.warning("feed %s failed: %s", feed.id, error)
        else:
            log.debug("feed %s still failing (%d in a row): %s", feed.id, failures, error)

    # --- calendar ----------------------------------------------------------------------

    async def check_calendar(self, *, catch_up: bool = False) -> PassReport:
        """Diff the configured calendar against the stored one and fire due transitions.

        ``catch_up``: this is the start-up check, so whatever is due passed while we were
        down and is marked ``late``.
        """
        report = PassReport()
        now = self.clock()
        known = await self.store.known_rules()
        baseline = await self.store.get_meta("calendar_baseline_at")
        rules = self.config.rules
        events: list[Event] = []
        if baseline is None:
            report.baselined.append("calendar")
            log.info(
                "first start: %d calendar rules taken as the baseline (no alerts for them; "
                "their future transitions will fire)",
                len(rules),
            )
        else:
            events = diff_calendar({k: v[0] for k, v in known.items()}, rules, now=now)

        async def save(tx: Any) -> None:
            await self.store.save_rules(tx, rules, now=now)
            if baseline is None:
                await self.store.set_meta(tx, "calendar_baseline_at", now.isoformat())

        await self._commit(await self._plan(events, now=now), report, now=now, write=save)
        # Transitions come from the calendar as just stored (known_since kept per rule).
        stored = (
            await self.store.known_rules()
            if not self.dry_run
            else {r.id: (r, known[r.id][1] if r.id in known else now) for r in rules}
        )
        due = due_transitions(
            stored,
            remind=self.config.model.calendar.remind,
            now=now,
            late_limit=self.config.model.notifier.late_limit,
        )
        done = await self.store.emitted(tr.event_id for tr in due)
        fresh = [
            transition_event(tr, now=now, catch_up=catch_up)
            for tr in due
            if tr.event_id not in done
        ]
        if fresh:
            await self._commit(await self._plan(fresh, now=now), report, now=now)
        return report

    # --- the outbox write --------------------------------------------------------------

    async def _commit(
        self,
        planned: list[tuple[Event, list[Any]]],
        report: PassReport,
        *,
        now: datetime,
        write: Callable[[Any], Any] | None = None,
    ) -> None:
        if self.dry_run:
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


def _entry_changes(previous: tuple[str, str, str] | None, entry: Entry) -> list[dict[str, Any]]:
    if previous is None:
        return []
    _, title, summary = previous
    changes = []
    if title != entry.title:
        changes.append({"field": "title", "from": title, "to": entry.title})
    if summary != entry.summary:
        changes.append({"field": "summary", "from": summary, "to": entry.summary})
    return changes
