"""The calendar jobs: poll each calendar URL, and check the whole calendar (local files
plus the last good rules of every URL) for edits and due transitions.

A calendar URL is a source like any other: its failures count toward ``source.failing``
and a failing or invalid URL keeps its last good rules (it withdraws nothing). A poll that
would withdraw more than a quarter of a URL's rules (an empty or truncated file, say), or
change more than ``max(25%, 20)`` of them, is held for an operator.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from notifier.config import Config, merge_calendars, parse_calendar
from notifier.config.load import stale_review, stale_review_message
from notifier.core.calendar import diff_calendar
from notifier.core.decide import decide_calendar, decide_hold, due_after_save
from notifier.core.health import held_event
from notifier.core.model import Rule
from notifier.errors import ConfigError, FetchError
from notifier.logs import source_fields
from notifier.runtime.jobbase import CalendarUrlSource, PassReport, calendar_url_key, json_text
from notifier.runtime.polls import SourceJobs
from notifier.sources.base import Validators
from notifier.sources.calendar_url import fetch_calendar

log = logging.getLogger("notifier.runtime.calendar")


def _local_file_of(rule_id: str, config: Config) -> str:
    """The local calendar file that holds ``rule_id`` (for an id clash with a URL).

    Only on this error path are the files read again: the loaded config keeps their rules,
    not which file each came from."""
    for file in config.calendar_reviewed:  # every calendar file in use, in load order
        try:
            rules, _ = parse_calendar(Path(file).read_text(encoding="utf-8"), source=file)
        except (OSError, ConfigError):
            continue
        if any(rule.id == rule_id for rule in rules):
            return file
    return "the calendar files"


class CalendarJobs(SourceJobs):
    """Calendar URL polls and the calendar check."""

    async def url_rules(self) -> list[tuple[str, list[Rule]]]:
        """The last good rules of every configured calendar URL (none before its first
        successful poll)."""
        found: list[tuple[str, list[Rule]]] = []
        for url in self.notifier.runtime.config.model.calendar.urls:
            raw = await self.store.get_meta(calendar_url_key(url))
            rules = [Rule.from_dict(r) for r in json.loads(raw)] if raw else []
            found.append((url, rules))
        return found

    @staticmethod
    def _warn_if_stale(url: str, reviewed: date, today: date) -> None:
        """A calendar URL says when it was reviewed, like a file: say so when that was
        more than 90 days ago (each time a new version of it is read)."""
        if stale_review(reviewed, today):
            message = stale_review_message(f"calendar URL {url}", reviewed, today)
            log.warning("%s", message, extra=source_fields(url, "calendar-url"))

    async def current_rules(self) -> list[Rule]:
        """Local calendar files and calendar URLs together (ids unique across them)."""
        config = self.notifier.runtime.config
        calendars: list[tuple[str, Sequence[Rule], str | None]] = [
            ("the calendar files", config.rules, None)
        ]
        calendars += [(url, rules, None) for url, rules in await self.url_rules()]
        return merge_calendars(calendars)

    async def poll_calendar_urls(self) -> PassReport:
        report = PassReport()
        for url in self.notifier.runtime.config.model.calendar.urls:
            report.merge(await self.poll_calendar_url(url))
        return report

    async def poll_calendar_url(self, url: str) -> PassReport:
        """Fetch one calendar URL; accept, hold or reject its rules; then check the
        calendar when they changed."""
        rt = self.notifier.runtime
        source = CalendarUrlSource(id=url, every=rt.config.model.calendar.every)
        report = PassReport(feeds_polled=1)
        state = await self.store.feed_state(url)
        validators = Validators(
            etag=state.etag if state else None,
            last_modified=state.last_modified if state else None,
            body_hash=state.body_hash if state else None,
        )
        try:
            fetched = await fetch_calendar(self.notifier.session, url, validators)
            if fetched.rules is not None:
                self._check_unique(url, fetched.rules, await self.url_rules())
        except FetchError as exc:
            await self._record_failure(rt, source, state, str(exc), report)
            return report
        now = self.notifier.clock()
        if fetched.reviewed is not None:
            self._warn_if_stale(url, fetched.reviewed, now.astimezone(rt.config.zone).date())
        health = await self._recovery_events(source, state, now=now)
        if fetched.rules is None:
            report.feeds_unchanged = 1
            validators_out = (fetched.etag, fetched.last_modified, fetched.body_hash)
            await self._commit(
                await self._plan(rt, health, now=now),
                report,
                now=now,
                write=lambda tx: self._record_ok(tx, url, validators_out),
            )
            return report
        old = dict((await self._stored_url_rules(url)) or {})
        new_rules = list(fetched.rules)
        preview = diff_calendar(old, new_rules, now=now) if old else []
        withdrawn = sum(1 for e in preview if e.type == "tariff.rule.withdrawn")
        limit = max(20, len(old) // 4)
        # More than a quarter: a one-rule URL that serves an empty file withdraws nothing
        # until an operator says so.
        too_many_withdrawn = bool(old) and withdrawn * 4 > len(old)
        hold = decide_hold(preview, baseline=not old, limit=-1 if too_many_withdrawn else limit)
        validators_out = (fetched.etag, fetched.last_modified, fetched.body_hash)
        rules_json = [r.to_dict() for r in new_rules]
        if hold.held:
            report.held.append(url)
            notice = held_event(url, "calendar-url", hold, now=now)
            fresh = False

            async def hold_write(tx: Any) -> None:
                nonlocal fresh
                fresh = await self.store.hold_change(
                    tx,
                    url,
                    fingerprint=hold.fingerprint,
                    detected_at=now,
                    events=preview,
                    would_emit=hold.would_emit,
                    validators=dict(
                        zip(("etag", "last_modified", "body_hash"), validators_out, strict=True)
                    ),
                    rules=rules_json,
                )
                await self.store.record_poll(
                    tx, url, now=now, error=None, polled_by=self.notifier.worker
                )

            await self._commit(
                await self._plan(rt, [notice, *health], now=now), report, now=now, write=hold_write
            )
            if fresh:  # said once, when first held (a later poll finds the same change)
                log.warning("calendar %s: change held for review (%s)", url, dict(hold.would_emit))
            return report

        async def accept(tx: Any) -> None:
            await self.store.set_meta(tx, calendar_url_key(url), json_text(rules_json))
            await self._record_ok(tx, url, validators_out)

        await self._commit(await self._plan(rt, health, now=now), report, now=now, write=accept)
        # A URL's first good version is its baseline, like a feed added later: its
        # rules join the calendar silently (their future transitions fire when due).
        if not old:
            report.baselined.append(url)
        report.merge(await self.check_calendar(silent=not old))
        return report

    async def _stored_url_rules(self, url: str) -> dict[str, Rule] | None:
        raw = await self.store.get_meta(calendar_url_key(url))
        return {r["id"]: Rule.from_dict(r) for r in json.loads(raw)} if raw else None

    def _check_unique(
        self, url: str, rules: Sequence[Rule], others: list[tuple[str, list[Rule]]]
    ) -> None:
        config = self.notifier.runtime.config
        calendars: list[tuple[str, Sequence[Rule], str | None]] = [
            ("the calendar files", config.rules, None)
        ]
        calendars += [(u, r, None) for u, r in others if u != url]
        calendars.append((url, rules, None))
        local = {rule.id for rule in config.rules}
        for index, rule in enumerate(rules):
            if rule.id in local:
                raise FetchError(
                    f"rejected: {url}: rule[{index}].id: duplicate rule id {rule.id!r} "
                    f"(also in {_local_file_of(rule.id, config)})"
                )
        try:
            merge_calendars(calendars)
        except ConfigError as exc:  # the same id in another calendar URL
            raise FetchError(f"rejected: {exc}") from None

    async def _record_ok(self, tx: Any, url: str, validators: tuple[Any, ...]) -> None:
        etag, last_modified, body_hash = validators
        await self.store.record_poll(
            tx,
            url,
            now=self.notifier.clock(),
            error=None,
            etag=etag,
            last_modified=last_modified,
            body_hash=body_hash,
            polled_by=self.notifier.worker,
        )

    # --- the calendar check ------------------------------------------------------------

    async def check_calendar(self, *, catch_up: bool = False, silent: bool = False) -> PassReport:
        """Diff the calendar (files and URLs) against the stored one and fire what is due.

        Reads the store (the stored rules, the baseline mark, which due events exist),
        decides, and writes one transaction. ``catch_up``: the start-up check, so what is
        due passed while no notifier ran and is marked ``late``. ``silent``: take the
        calendar as it is without alerting its edits (``sources discard``).
        """
        rt = self.notifier.runtime
        report = PassReport()
        now = self.notifier.clock()
        rules = await self.current_rules()
        known = await self.store.known_rules()
        baselined = await self.store.get_meta("calendar_baseline_at") is not None
        due = due_after_save(
            known,
            rules,
            now=now,
            remind=rt.config.model.calendar.remind,
            late_limit=rt.config.model.notifier.late_limit,
            zone=rt.zone,
        )
        emitted = await self.store.emitted(tr.event_id for tr in due) if self.write else set()
        plan = decide_calendar(
            known=known,
            rules=rules,
            baselined=baselined and not silent,
            due=due,
            emitted=emitted,
            now=now,
            catch_up=catch_up,
        )
        first = not baselined
        if first:
            report.baselined.append("calendar")
            log.info(
                "first start: %d calendar rules taken as the baseline (no alerts for them; "
                "their future transitions will fire)",
                len(rules),
            )

        async def write(tx: Any) -> None:
            await self.store.save_rules(tx, rules, now=now)
            if first:
                await self.store.set_meta(tx, "calendar_baseline_at", now.isoformat())

        events = list(plan.transitions) if silent else list(plan.events)
        await self._commit(await self._plan(rt, events, now=now), report, now=now, write=write)
        return report


__all__ = ["CalendarJobs"]
