"""The ``calendar`` command: the dated transitions in a window, as text, JSON or iCalendar.

What it lists: ``reminder``, ``effective`` and ``expired`` transitions of scheduled rules
(paused and revoked rules have none), in time order. ``announced`` is not listed: the
calendar files carry no announcement date, and the moment a rule first appeared in the
state store only says when *this* daemon saw it, not when the action was announced; a
view of the calendar files must not invent dates.

The window is ``[start, start + days)``. ``--from DATE`` is local midnight in
``[notifier] timezone`` and the window ends at local midnight ``days`` later (wall-clock
days, so a DST change inside the window does not shift the end by an hour). Without
``--from`` the window starts now. Times are shown in that zone; JSON also carries UTC.
The text listing ends with each listed rule's source, once per rule.

``--ics`` writes an RFC 5545 calendar with one event per ``effective`` / ``expired``
transition (reminders are what a calendar program's own alarms are for). Event UIDs
derive from the transition's event id, so re-importing the file updates events rather
than duplicating them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar

from notifier.config import Config, format_duration
from notifier.core.calendar import Transition, all_transitions, rules_in_force
from notifier.core.durations import duration_label
from notifier.core.model import isoformat_z

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

PRODID = "-//tariff-notifier//EN"
CALENDAR_NAME = "Tariff transitions"
UID_DOMAIN = "tariff-notifier"
# A one-hour block: a zero-length event is drawn as a hairline (or not at all in some
# week views) and an all-day event would lose the time, which matters for "00:01 ET".
EVENT_LENGTH = timedelta(hours=1)
RATE_COLUMN_MAX = 12


def show_calendar(config: Config, args: argparse.Namespace) -> int:
    """Entry point of ``tariff-notifier calendar``; returns the exit code."""
    if getattr(args, "in_force", False):
        return show_in_force(config, args)
    if args.days <= 0:
        print(f"tariff-notifier: --days must be positive, got {args.days}", file=sys.stderr)
        return EXIT_USAGE
    zone = config.zone
    try:
        start, end = window(args.start, days=args.days, zone=zone, now=datetime.now(UTC))
    except ValueError as exc:
        print(f"tariff-notifier: --from: {exc}", file=sys.stderr)
        return EXIT_USAGE
    remind = config.model.calendar.remind
    found = in_window(all_transitions(config.rules, remind=remind, zone=zone), start=start, end=end)
    if args.ics is not None:
        try:
            written = write_ics(args.ics, found, now=datetime.now(UTC), zone=zone)
        except OSError as exc:
            print(f"tariff-notifier: cannot write {args.ics}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        # Keep stdout clean for --json; the note is for the person at the terminal.
        note_to = sys.stderr if args.json else sys.stdout
        print(f"wrote {written} events to {args.ics}", file=note_to)
    if args.json:
        json.dump([transition_json(tr, zone=zone) for tr in found], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_text(found, start=start, end=end, zone=zone)
    return EXIT_OK


# --- the window ------------------------------------------------------------------------


def window(
    start: str | None, *, days: int, zone: ZoneInfo, now: datetime
) -> tuple[datetime, datetime]:
    """``[start, end)`` as aware datetimes in ``zone``; ``start`` is ``YYYY-MM-DD`` or None."""
    if start is None:
        begin = now.astimezone(zone)
    else:
        try:
            day = date.fromisoformat(start.strip())
        except ValueError:
            raise ValueError(f"expected a date like 2025-04-01, got {start!r}") from None
        begin = datetime(day.year, day.month, day.day, tzinfo=zone)
    # Aware arithmetic within one tzinfo is wall-clock arithmetic: midnight + N days is
    # midnight again, whatever DST did in between.
    return begin, begin + timedelta(days=days)


def in_window(found: Sequence[Transition], *, start: datetime, end: datetime) -> list[Transition]:
    """The transitions with ``start <= at < end``, keeping their (time) order."""
    return [tr for tr in found if start <= tr.at < end]


# --- text and JSON ---------------------------------------------------------------------


def humanize(delta: timedelta) -> str:
    """``timedelta(days=7)`` -> ``"7 days"``; falls back to the config form (``"90m"``)."""
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return format_duration(delta)


def describe_kind(transition: Transition) -> str:
    if transition.kind == "reminder" and transition.remind_before is not None:
        return f"reminder: in {humanize(transition.remind_before)}"
    return transition.kind


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def print_text(
    found: Sequence[Transition], *, start: datetime, end: datetime, zone: ZoneInfo
) -> None:
    span = f"{local_time(start, zone)} and {local_time(end, zone)}"
    if not found:
        print(f"no transitions between {span}")
        return
    print(f"{len(found)} transitions between {span} ({zone.key})")
    kind_width = max(len(describe_kind(tr)) for tr in found)
    id_width = max(len(tr.rule.id) for tr in found)
    # Rates are free text ("11%-50% by country (e.g. EU 20%, …)"): align the short
    # ones, let a long one push its title right rather than every line.
    rate_width = min(max(len(tr.rule.rate) for tr in found), RATE_COLUMN_MAX)
    for tr in found:
        print(
            f"{local_time(tr.at, zone)}  {describe_kind(tr):<{kind_width}}  "
            f"{tr.rule.id:<{id_width}}  {tr.rule.rate:<{rate_width}}  {tr.rule.title}"
        )
    # Each rule's source once, in the order the rules first appear: the table stays one
    # line per transition (greppable) and an analyst can still check every line.
    sources = {tr.rule.id: tr.rule.source for tr in found}
    print("sources:")
    for rule_id, source in sources.items():
        print(f"  {rule_id:<{id_width}}  {source or '(none given)'}")


def transition_json(transition: Transition, *, zone: ZoneInfo) -> dict[str, Any]:
    before = transition.remind_before
    return {
        "at": isoformat_z(transition.at),
        "local": transition.at.astimezone(zone).isoformat(),
        "kind": transition.kind,
        "remind_before": duration_label(before) if before is not None else None,
        "event_id": transition.event_id,
        "rule": transition.rule.to_dict(),
    }


# --- iCalendar (RFC 5545) --------------------------------------------------------------


def _summary(transition: Transition) -> str:
    rule = transition.rule
    if transition.kind == "effective":
        return f"In effect: {rule.title} ({rule.rate})" if rule.rate else f"In effect: {rule.title}"
    return f"Ends: {rule.title}"


def _description(transition: Transition, *, zone: ZoneInfo) -> str:
    rule = transition.rule
    what = "takes effect" if transition.kind == "effective" else "ends"
    lines = [f"{rule.title} {what} {local_time(transition.at, zone)}."]
    if rule.rate:
        lines.append(f"Rate: {rule.rate}")
    if rule.basis:
        lines.append(f"Basis: {rule.basis}")
    if rule.imposed_by:
        lines.append(f"Imposed by: {rule.imposed_by}")
    origins = "any origin" if "*" in rule.origins else ", ".join(rule.origins)
    hts = "all goods" if "*" in rule.hts else ", ".join(rule.hts)
    lines.append(f"Origins: {origins}")
    lines.append(f"HTS: {hts}")
    if rule.notes:
        lines.append(f"Notes: {rule.notes}")
    if rule.source:
        lines.append(f"Source: {rule.source}")
    lines.append(f"Rule: {rule.id}")
    return "\n".join(lines)


def ics_event(transition: Transition, *, now: datetime, zone: ZoneInfo) -> icalendar.Event:
    """One VEVENT for an ``effective`` or ``expired`` transition."""
    start = transition.at.astimezone(UTC)
    event = icalendar.Event()
    event.add("uid", f"{transition.event_id}@{UID_DOMAIN}")
    event.add("dtstamp", now.astimezone(UTC).replace(microsecond=0))
    event.add("dtstart", start)
    event.add("dtend", start + EVENT_LENGTH)
    event.add("summary", _summary(transition))
    event.add("description", _description(transition, zone=zone))
    event.add("categories", ["Tariff", transition.kind])
    # A marker, not a meeting: it must not show the user as busy (RFC 5545 §3.8.2.7).
    event.add("transp", "TRANSPARENT")
    if transition.rule.source:
        event.add("url", transition.rule.source)
    return event


def build_ics(found: Sequence[Transition], *, now: datetime, zone: ZoneInfo) -> icalendar.Calendar:
    """The calendar for ``--ics``: effective and expired transitions only."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", CALENDAR_NAME)
    for transition in found:
        if transition.kind in ("effective", "expired"):
            cal.add_component(ics_event(transition, now=now, zone=zone))
    return cal


def write_ics(path: Path, found: Sequence[Transition], *, now: datetime, zone: ZoneInfo) -> int:
    """Write the ``.ics`` file; returns how many events it holds."""
    cal = build_ics(found, now=now, zone=zone)
    path.write_bytes(cal.to_ical())
    return len(cal.walk("VEVENT"))


# --- in force ----------------------------------------------------------------------------


def _instant(value: str | None, *, zone: ZoneInfo, now: datetime) -> datetime:
    """``--at``: a datetime, or a date meaning the end of that local day ("in force on
    May 3" includes what took effect at 00:01 that day); default now."""
    if value is None:
        return now
    text = value.strip()
    try:
        if "T" in text or " " in text:
            moment = datetime.fromisoformat(text)
            return moment if moment.tzinfo else moment.replace(tzinfo=zone)
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected a date like 2026-12-01 or a time like 2026-12-01T09:00, got {value!r}"
        ) from None
    # Everything that takes effect on that day has: 23:59 local.
    return datetime(day.year, day.month, day.day, 23, 59, tzinfo=zone)


def _filters(config: Config, args: argparse.Namespace) -> tuple[list[str] | None, list[str] | None]:
    origins = [args.origin.strip().upper()] if args.origin else None
    hts = [args.hts.replace(".", "").strip()] if args.hts else None
    if args.subscriber:
        sub = next((s for s in config.subscribers if s.id == args.subscriber), None)
        if sub is None:
            known = ", ".join(s.id for s in config.subscribers) or "none"
            raise ValueError(f"no subscriber {args.subscriber!r} (known: {known})")
        origins = origins or (list(sub.origins) if sub.origins else None)
        hts = hts or (list(sub.hts) if sub.hts else None)
    return origins, hts


def show_in_force(config: Config, args: argparse.Namespace) -> int:
    """``calendar --in-force``: what applies to these goods at that instant."""
    zone = config.zone
    try:
        at = _instant(args.at, zone=zone, now=datetime.now(UTC))
        origins, hts = _filters(config, args)
    except ValueError as exc:
        print(f"tariff-notifier: {exc}", file=sys.stderr)
        return EXIT_USAGE
    found = rules_in_force(config.rules, at=at, origins=origins, hts=hts)
    if args.json:
        json.dump(
            [
                {
                    "rule": rule.to_dict(),
                    "since": isoformat_z(rule.effective),
                    "until": isoformat_z(rule.ends) if rule.ends else None,
                }
                for rule in found
            ],
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return EXIT_OK
    scope = []
    if origins:
        scope.append("origin " + ", ".join(origins))
    if hts:
        scope.append("HTS " + ", ".join(hts))
    what = f" for {' and '.join(scope)}" if scope else ""
    when = local_time(at, zone)
    if not found:
        print(f"no rules in force at {when}{what}")
        return EXIT_OK
    print(f"{len(found)} rules in force at {when}{what}, most specific first")
    for rule in found:
        until = local_time(rule.ends, zone)[:10] if rule.ends else "open"
        origin = "any origin" if "*" in rule.origins else ",".join(rule.origins[:6])
        more = "…" if len(rule.origins) > 6 else ""
        print(f"- {rule.title}")
        print(f"    rate {rule.rate or '(see source)'}; {rule.basis or 'basis not given'}")
        print(
            f"    since {local_time(rule.effective, zone)[:10]}, until {until}; "
            f"{origin}{more}; HTS {', '.join(rule.hts)}"
        )
        if rule.source:
            print(f"    source {rule.source}")
    return EXIT_OK
