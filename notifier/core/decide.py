"""Read, decide, write: the decisions of the source jobs, as pure functions.

A job reads what it needs from the store, hands it here with the clock reading, and gets a
plan back: the events to emit and the state to write, which it then writes in one
transaction (or, for a dry run, only prints). Nothing here awaits, reads the clock or
touches the store, so every rule of "emitted once" and "silent baseline" is tested here.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from notifier.core.calendar import Transition, diff_calendar, due_transitions, transition_event
from notifier.core.entries import Change
from notifier.core.model import Entry, Event, Rule, stable_id

# --------------------------------------------------------------------------- feed polls


@dataclass(frozen=True, slots=True)
class FeedPlan:
    """What one changed poll of a source means for the store.

    ``baseline``: the first successful poll of a source; its entries are remembered
    silently. ``changes``: what the kind turns into events. ``remember``: entries to
    upsert (new or changed); ``touch``: keys still carried, to keep from retention;
    ``forget``: keys that left a source whose removals are events (schedule lines).
    """

    baseline: bool
    changes: tuple[Change, ...] = ()
    remember: tuple[Entry, ...] = ()
    touch: frozenset[str] = frozenset()
    forget: frozenset[str] = frozenset()


def decide_feed_poll(
    *,
    known: bool,
    entries: Sequence[Entry],
    seen: Mapping[str, tuple[str, str, str]],
    partial: Container[str] = frozenset(),
    reports_removals: bool = False,
) -> FeedPlan:
    """Diff a changed poll against the store's view of the source.

    ``known``: the source had a successful poll before (a source whose first polls all
    failed is still baselined silently). ``seen``: key -> (hash, title, summary) of the
    stored entries this poll needs (those it carries; every stored key when the kind
    reports removals). ``partial`` keys could not be completed this poll: they are
    neither alerted nor remembered, so the next poll tries them again. When one source
    repeats a key the first entry wins (feeds list newest first).
    """
    unique: dict[str, Entry] = {}
    for entry in entries:
        if entry.key not in partial:
            unique.setdefault(entry.key, entry)
    if not known and not seen:
        return FeedPlan(baseline=True, remember=tuple(unique.values()))
    changes: list[Change] = []
    for key, entry in unique.items():
        previous = seen.get(key)
        if previous is None:
            changes.append(Change("new", entry))
        elif previous[0] != entry.content_hash:
            changes.append(Change("updated", entry, previous))
    forget: frozenset[str] = frozenset()
    if reports_removals:
        carried = {entry.key for entry in entries}
        gone = [key for key in seen if key not in carried]
        forget = frozenset(gone)
        changes.extend(Change("removed", _removed_entry(key, seen[key]), seen[key]) for key in gone)
    remember = tuple(change.entry for change in changes if change.kind != "removed")
    changed_keys = {entry.key for entry in remember}
    return FeedPlan(
        baseline=False,
        changes=tuple(changes),
        remember=remember,
        touch=frozenset(unique) - changed_keys,
        forget=forget,
    )


def _removed_entry(key: str, previous: tuple[str, str, str]) -> Entry:
    content_hash, title, summary = previous
    return Entry(
        key=key, title=title, link="", published=None, summary=summary, content_hash=content_hash
    )


# ------------------------------------------------------------------------- held changes


@dataclass(frozen=True, slots=True)
class HoldDecision:
    """Whether a poll's events go out, or wait for an operator (CONTRACT "Trust")."""

    held: bool
    fingerprint: str = ""
    would_emit: Mapping[str, int] = field(default_factory=dict)
    examples: tuple[str, ...] = ()


def decide_hold(
    events: Sequence[Event], *, baseline: bool, limit: int, example_count: int = 5
) -> HoldDecision:
    """A poll that would emit more than ``limit`` events is held; a baseline never is.

    ``fingerprint`` names the change by the events it would emit, so a later poll that
    finds the same change is recognised and not held (or alerted) twice.
    """
    if baseline or len(events) <= limit:
        return HoldDecision(held=False)
    counts: dict[str, int] = {}
    for event in events:
        counts[event.type] = counts.get(event.type, 0) + 1
    examples = tuple(_example(event) for event in events[:example_count])
    fingerprint = "held_" + stable_id(*sorted(event.id for event in events))
    return HoldDecision(
        held=True,
        fingerprint=fingerprint,
        would_emit=dict(sorted(counts.items())),
        examples=examples,
    )


def _example(event: Event) -> str:
    data = event.data
    for key, label in (("entry", "title"), ("line", "htsno"), ("rule", "id")):
        value = data.get(key)
        if isinstance(value, Mapping) and value.get(label):
            extra = value.get("title") if key == "rule" else None
            return f"{event.type}: {value[label]}" + (f" ({extra})" if extra else "")
    return event.type


# ------------------------------------------------------------------------ source health


@dataclass(frozen=True, slots=True)
class HealthView:
    """What the store knows of a source's recent polls."""

    failures: int
    last_ok_at: datetime | None
    first_seen_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class HealthDecision:
    """The source's state after a poll, and the health event to emit (if any)."""

    state: str  # ok | failing | stale
    event: str | None = None  # "failing" | "recovered"
    episode: str = ""  # names the failing episode: the event id's seed


def episode_of(source_id: str, last_ok_at: datetime | None) -> str:
    """A failing episode is named by the last success before it: one per episode."""
    return stable_id(source_id, "episode", last_ok_at.isoformat() if last_ok_at else "never")


def source_state(
    view: HealthView, *, now: datetime, alert_after: int, stale_after: timedelta
) -> str:
    """``ok``, ``failing`` (``alert_after`` failures in a row) or ``stale`` (no success
    for ``stale_after``, counted from the first poll when there never was one)."""
    if view.failures >= alert_after:
        return "failing"
    since = view.last_ok_at or view.first_seen_at
    if view.failures and since is not None and now - since >= stale_after:
        return "stale"
    return "ok"


def decide_health(
    source_id: str,
    before: HealthView,
    after: HealthView,
    *,
    now: datetime,
    alert_after: int,
    stale_after: timedelta,
    failing_announced: bool,
) -> HealthDecision:
    """``source.failing`` once when a source crosses into failing or stale, and
    ``source.recovered`` once when a source announced as failing polls successfully.

    ``failing_announced``: the current episode's ``source.failing`` is in the store.
    """
    state = source_state(after, now=now, alert_after=alert_after, stale_after=stale_after)
    if state != "ok" and not failing_announced:
        return HealthDecision(state, "failing", episode_of(source_id, after.last_ok_at))
    if state == "ok" and after.failures == 0 and before.failures > 0 and failing_announced:
        return HealthDecision(state, "recovered", episode_of(source_id, before.last_ok_at))
    return HealthDecision(state)


# ----------------------------------------------------------------------------- calendar


@dataclass(frozen=True, slots=True)
class CalendarPlan:
    """The calendar check's events, and whether this check takes the baseline."""

    baseline: bool
    changes: tuple[Event, ...] = ()
    transitions: tuple[Event, ...] = ()

    @property
    def events(self) -> tuple[Event, ...]:
        return (*self.changes, *self.transitions)


def calendar_after_save(
    known: Mapping[str, tuple[Rule, datetime]], rules: Iterable[Rule], *, now: datetime
) -> dict[str, tuple[Rule, datetime]]:
    """The stored calendar as it will be once ``rules`` are saved (known-since kept)."""
    return {rule.id: (rule, known[rule.id][1] if rule.id in known else now) for rule in rules}


def due_after_save(
    known: Mapping[str, tuple[Rule, datetime]],
    rules: Iterable[Rule],
    *,
    now: datetime,
    remind: Iterable[timedelta],
    late_limit: timedelta,
    zone: ZoneInfo | None = None,
) -> list[Transition]:
    """The transitions due once ``rules`` are saved; the job asks the store which of
    their event ids were emitted already, then calls :func:`decide_calendar`."""
    stored = calendar_after_save(known, rules, now=now)
    return due_transitions(stored, remind=remind, now=now, late_limit=late_limit, zone=zone)


def decide_calendar(
    *,
    known: Mapping[str, tuple[Rule, datetime]],
    rules: Sequence[Rule],
    baselined: bool,
    due: Sequence[Transition],
    emitted: Container[str],
    now: datetime,
    catch_up: bool,
) -> CalendarPlan:
    """Calendar edits (announced/changed/withdrawn) and due transitions not yet emitted.

    The first check of an empty store takes the rules as the baseline: no alerts for
    them, and none for transitions already past (they were known only from now)."""
    changes = (
        ()
        if not baselined
        else tuple(diff_calendar({k: v[0] for k, v in known.items()}, rules, now=now))
    )
    stored = calendar_after_save(known, rules, now=now)
    fresh = tuple(
        transition_event(
            tr,
            now=now,
            catch_up=catch_up,
            detected_at=stored[tr.rule.id][1] if tr.rule.id in stored else now,
            # The rule as last stored: an expiry shows the rate that applied, not a
            # later edit seen by the same check.
            stored=known[tr.rule.id][0] if tr.rule.id in known else None,
        )
        for tr in due
        if tr.event_id not in emitted
    )
    return CalendarPlan(baseline=not baselined, changes=changes, transitions=fresh)
