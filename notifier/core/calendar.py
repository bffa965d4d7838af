"""Pure calendar logic: what changed between two calendars, and which transitions are due.

Nothing here reads the clock or the store: ``now`` and the stored state are parameters,
so every rule of "emitted once" can be tested exhaustively and fast.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from notifier.core.durations import duration_label, format_duration
from notifier.core.model import Event, Rule, isoformat_z, stable_id

TransitionKind = Literal["reminder", "effective", "expired"]

# Fields whose change is reported in `changes`, in the order users read them.
DIFF_FIELDS = (
    "status",
    "rate",
    "effective",
    "ends",
    "origins",
    "hts",
    "title",
    "imposed_by",
    "basis",
    "source",
    "notes",
)

# A transition delivered later than this after its instant is marked `late: true`.
LATE_AFTER = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Transition:
    rule: Rule
    kind: TransitionKind
    at: datetime
    remind_before: timedelta | None = None

    @property
    def event_type(self) -> str:
        return f"tariff.rule.{self.kind}"

    @property
    def event_id(self) -> str:
        before = format_duration(self.remind_before) if self.remind_before else ""
        return "evt_" + stable_id(self.rule.id, self.kind, self.at.isoformat(), before)


def _fingerprint(rule: Rule) -> str:
    blob = json.dumps(rule.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rule_changes(old: Rule, new: Rule) -> list[dict[str, Any]]:
    """Field-level diff ``[{"field", "from", "to"}]`` in :data:`DIFF_FIELDS` order."""
    before, after = old.to_dict(), new.to_dict()
    return [
        {"field": name, "from": before.get(name), "to": after.get(name)}
        for name in DIFF_FIELDS
        if before.get(name) != after.get(name)
    ]


def _rule_event(kind: str, rule: Rule, *, now: datetime, event_id: str, **extra: Any) -> Event:
    data: dict[str, Any] = {
        "late": False,
        "rule": rule.to_dict(),
        "changes": [],
        "detected_at": isoformat_z(now),
    }
    data.update(extra)
    return Event(
        id=event_id,
        type=f"tariff.rule.{kind}",
        timestamp=now,
        data=data,
        origins=rule.origins,
        hts=rule.hts,
    )


def diff_calendar(old: Mapping[str, Rule], new: Sequence[Rule], *, now: datetime) -> list[Event]:
    """``announced`` / ``changed`` / ``withdrawn`` events between two calendars.

    A rule turning ``revoked`` is a withdrawal (reason ``revoked``), not a change; a rule
    that appears already revoked is not announced. Event ids derive from the rule
    snapshots, so the same edit seen twice (a crash before commit, two instances) yields
    the same id and is emitted once.
    """
    events: list[Event] = []
    current = {rule.id: rule for rule in new}
    for rule in new:
        before = old.get(rule.id)
        if before is None:
            if rule.status != "revoked":
                eid = "evt_" + stable_id(rule.id, "announced", _fingerprint(rule))
                events.append(_rule_event("announced", rule, now=now, event_id=eid))
            continue
        changes = rule_changes(before, rule)
        if not changes:
            continue
        if rule.status == "revoked" and before.status != "revoked":
            eid = "evt_" + stable_id(rule.id, "withdrawn", _fingerprint(rule))
            events.append(
                _rule_event(
                    "withdrawn", rule, now=now, event_id=eid, changes=changes, reason="revoked"
                )
            )
            continue
        eid = "evt_" + stable_id(rule.id, "changed", _fingerprint(before), _fingerprint(rule))
        events.append(_rule_event("changed", rule, now=now, event_id=eid, changes=changes))
    for rule_id, before in old.items():
        if rule_id not in current and before.status != "revoked":
            eid = "evt_" + stable_id(rule_id, "withdrawn", _fingerprint(before), "removed")
            events.append(_rule_event("withdrawn", before, now=now, event_id=eid, reason="removed"))
    return events


def reminder_at(effective: datetime, before: timedelta, zone: ZoneInfo | None) -> datetime:
    """When a reminder ``before`` an instant fires.

    Whole days are calendar days in ``zone`` (``[notifier] timezone``): "7d" before
    00:01 on a Monday is 00:01 local on the Monday before, also across a DST change
    (aware arithmetic within one ZoneInfo is wall-clock arithmetic). Shorter durations
    are exact ("12h" is 12 hours).
    """
    if zone is None or before.total_seconds() % 86400:
        return effective - before
    local = effective.astimezone(zone) - timedelta(days=before.days)
    # Normalise the offset for the new wall-clock time (fold=0 in an ambiguous hour).
    return local.replace(tzinfo=None).replace(tzinfo=zone)


def transitions(
    rule: Rule, *, remind: Iterable[timedelta], zone: ZoneInfo | None = None
) -> list[Transition]:
    """Every dated transition of one rule, in time order. Paused/revoked rules have none."""
    if rule.status != "scheduled":
        return []
    out = [
        Transition(rule, "reminder", reminder_at(rule.effective, before, zone), before)
        for before in sorted(set(remind), reverse=True)
    ]
    out.append(Transition(rule, "effective", rule.effective))
    if rule.ends is not None:
        out.append(Transition(rule, "expired", rule.ends))
    return out


def all_transitions(
    rules: Iterable[Rule], *, remind: Iterable[timedelta], zone: ZoneInfo | None = None
) -> list[Transition]:
    remind = list(remind)
    found = [tr for rule in rules for tr in transitions(rule, remind=remind, zone=zone)]
    return sorted(found, key=lambda tr: (tr.at, tr.rule.id, tr.kind))


def rule_at_transition(transition: Transition, stored: Rule | None) -> Rule:
    """The rule an alert for ``transition`` shows.

    For ``expired``: the rule as it was in force just before it ended. That is the rule
    as the notifier last stored it (``known_rules``, read before this check saves the
    calendar) when the stored rule ended at the same instant: a rule edited after its
    end (a new rate written over an ended rule, noticed by the same late check that
    fires its expiry) must not make the expiry alert claim a rate that never applied;
    the edit itself is the ``changed`` alert. When the stored rule ended at another
    instant (the end itself was edited) or there is none, the current rule is the one
    that ends now. Other transitions show the current rule.
    """
    if (
        transition.kind == "expired"
        and stored is not None
        and stored.id == transition.rule.id
        and stored.ends == transition.at
    ):
        return stored
    return transition.rule


def transition_event(
    transition: Transition,
    *,
    now: datetime,
    catch_up: bool = False,
    detected_at: datetime | None = None,
    stored: Rule | None = None,
) -> Event:
    """The event for a transition.

    ``late`` is true when it passed while no notifier was running (``catch_up``: found by
    the start-up check) or is emitted more than :data:`LATE_AFTER` after its instant;
    a late event also carries ``late_by_s``, how long after its instant it was emitted
    (the alert says "sent 3 hours after it took effect"). ``detected_at``: when the
    notifier first knew the rule (default ``now``). ``stored``: the rule as stored before
    this check (see :func:`rule_at_transition`).
    """
    extra: dict[str, Any] = {
        "transition_at": transition.at.isoformat(),
        "detected_at": isoformat_z(detected_at or now),
    }
    if transition.remind_before is not None:
        # The configured string ("7d"), as the config and the README write it.
        extra["remind_before"] = duration_label(transition.remind_before)
    rule = rule_at_transition(transition, stored)
    event = _rule_event(transition.kind, rule, now=now, event_id=transition.event_id, **extra)
    data = dict(event.data)
    data["late"] = catch_up or now - transition.at > LATE_AFTER
    if data["late"]:
        data["late_by_s"] = max(0, int((now - transition.at).total_seconds()))
    return Event(
        id=event.id,
        type=event.type,
        timestamp=transition.at,
        data=data,
        origins=event.origins,
        hts=event.hts,
    )


def due_transitions(
    rules: Mapping[str, tuple[Rule, datetime]],
    *,
    remind: Iterable[timedelta],
    now: datetime,
    late_limit: timedelta,
    zone: ZoneInfo | None = None,
) -> list[Transition]:
    """Transitions whose instant has come, not older than ``late_limit``.

    ``rules`` maps id -> (rule, known since). A transition before the rule became known
    is never due: on the first start that is the silent baseline; for a rule added later
    its ``announced`` alert already tells the story. The caller drops the ones whose
    event id is already in the store.
    """
    remind = list(remind)
    due: list[Transition] = []
    for rule, known_since in rules.values():
        for transition in transitions(rule, remind=remind, zone=zone):
            if known_since < transition.at <= now and now - transition.at <= late_limit:
                due.append(transition)
    return sorted(due, key=lambda tr: (tr.at, tr.rule.id, tr.kind))


# --- what applies now --------------------------------------------------------------------


def in_force(rule: Rule, at: datetime) -> bool:
    """A scheduled rule between its effective time (inclusive) and its end (exclusive)."""
    return (
        rule.status == "scheduled"
        and rule.effective <= at
        and (rule.ends is None or at < rule.ends)
    )


def _hts_overlap(rule_hts: Sequence[str], wanted: Sequence[str] | None) -> int | None:
    """How specifically a rule's HTS scope meets the wanted codes (prefixes both ways):
    the longest shared prefix length, 0 for an all-goods rule, None for no overlap."""
    if wanted is None:
        return max((len(code) for code in rule_hts if code != "*"), default=0)
    best: int | None = 0 if "*" in rule_hts else None
    for code in rule_hts:
        for want in wanted:
            if code != "*" and (code.startswith(want) or want.startswith(code)):
                best = max(best or 0, min(len(code), len(want)) if want else len(code))
    return best


def rules_in_force(
    rules: Iterable[Rule],
    *,
    at: datetime,
    origins: Sequence[str] | None = None,
    hts: Sequence[str] | None = None,
) -> list[Rule]:
    """The rules in force at ``at`` for goods of any of ``origins`` under any of ``hts``
    (None: any), most specific first: a rule naming the origin before one for every
    origin, a longer HTS prefix before a shorter one, then the most recent first."""
    found: list[tuple[tuple[int, int, float], Rule]] = []
    for rule in rules:
        if not in_force(rule, at):
            continue
        if (
            origins is not None
            and "*" not in rule.origins
            and not any(code in rule.origins for code in origins)
        ):
            continue
        overlap = _hts_overlap(rule.hts, hts)
        if overlap is None:
            continue
        general = 1 if "*" in rule.origins else 0
        found.append(((general, -overlap, -rule.effective.timestamp()), rule))
    return [rule for _, rule in sorted(found, key=lambda pair: (pair[0], pair[1].id))]
