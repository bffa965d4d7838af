"""The pure calendar core: diffs and due transitions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.core.calendar import all_transitions, diff_calendar, due_transitions, transition_event
from notifier.core.model import Rule

PARTS = Rule(
    id="us-232-auto-parts",
    title="Section 232 tariff on automobile parts",
    imposed_by="US",
    origins=("*",),
    hts=("8708",),
    rate="25%",
    effective=datetime.fromisoformat("2025-05-03T00:01:00-04:00"),
    ends=datetime.fromisoformat("2026-01-01T00:00:00-05:00"),
    basis="Section 232",
    source="https://www.federalregister.gov/d/2025-05930",
)
NOW = datetime(2025, 4, 1, tzinfo=UTC)
REMIND = [timedelta(days=7), timedelta(days=1)]


def test_new_rule_is_announced_and_unchanged_rule_is_silent() -> None:
    events = diff_calendar({}, [PARTS], now=NOW)
    assert [e.type for e in events] == ["tariff.rule.announced"]
    assert diff_calendar({PARTS.id: PARTS}, [PARTS], now=NOW) == []


def test_changed_rule_carries_field_level_diff() -> None:
    higher = replace(PARTS, rate="50%", hts=("8708", "8409"))
    [event] = diff_calendar({PARTS.id: PARTS}, [higher], now=NOW)
    assert event.type == "tariff.rule.changed"
    assert {"field": "rate", "from": "25%", "to": "50%"} in event.data["changes"]
    assert {"field": "hts", "from": ["8708"], "to": ["8708", "8409"]} in event.data["changes"]
    assert event.data["rule"]["rate"] == "50%"


def test_removed_or_revoked_rule_is_withdrawn_once() -> None:
    [removed] = diff_calendar({PARTS.id: PARTS}, [], now=NOW)
    assert (removed.type, removed.data["reason"]) == ("tariff.rule.withdrawn", "removed")
    revoked = replace(PARTS, status="revoked")
    [event] = diff_calendar({PARTS.id: PARTS}, [revoked], now=NOW)
    assert (event.type, event.data["reason"]) == ("tariff.rule.withdrawn", "revoked")
    # Already revoked and then deleted: nothing more to say.
    assert diff_calendar({PARTS.id: revoked}, [], now=NOW) == []


def test_same_edit_gives_same_event_id() -> None:
    higher = replace(PARTS, rate="50%")
    first = diff_calendar({PARTS.id: PARTS}, [higher], now=NOW)
    again = diff_calendar({PARTS.id: PARTS}, [higher], now=NOW + timedelta(hours=1))
    assert first[0].id == again[0].id


def test_transitions_in_order_and_none_for_paused() -> None:
    kinds = [(t.kind, t.at) for t in all_transitions([PARTS], remind=REMIND)]
    assert [k for k, _ in kinds] == ["reminder", "reminder", "effective", "expired"]
    assert kinds[0][1] == PARTS.effective - timedelta(days=7)
    assert all_transitions([replace(PARTS, status="paused")], remind=REMIND) == []


def test_due_respects_known_since_and_late_limit() -> None:
    known_since = datetime(2025, 4, 1, tzinfo=UTC)
    now = PARTS.effective + timedelta(seconds=1)
    due = due_transitions(
        {PARTS.id: (PARTS, known_since)}, remind=REMIND, now=now, late_limit=timedelta(days=30)
    )
    assert [t.kind for t in due] == ["reminder", "reminder", "effective"]
    # Known only after the effective instant (first start later): nothing past is due.
    assert (
        due_transitions(
            {PARTS.id: (PARTS, now)}, remind=REMIND, now=now, late_limit=timedelta(days=30)
        )
        == []
    )
    # Long down: only transitions within the late limit.
    far = PARTS.effective + timedelta(days=3)
    due = due_transitions(
        {PARTS.id: (PARTS, known_since)}, remind=REMIND, now=far, late_limit=timedelta(days=5)
    )
    assert [t.kind for t in due] == ["reminder", "effective"]


def test_transition_event_is_late_only_when_delivered_well_after() -> None:
    [*_, effective, _expired] = all_transitions([PARTS], remind=REMIND)
    on_time = transition_event(effective, now=effective.at + timedelta(milliseconds=300))
    late = transition_event(effective, now=effective.at + timedelta(hours=5))
    assert on_time.data["late"] is False and late.data["late"] is True
    assert on_time.id == late.id
    assert on_time.payload()["timestamp"] == "2025-05-03T04:01:00Z"


@settings(max_examples=40, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=-100, max_value=100), min_size=1, max_size=8),
    step=st.integers(min_value=1, max_value=50),
)
def test_every_transition_is_due_exactly_once_over_a_sweep(offsets: list[int], step: int) -> None:
    """Sweeping the clock forward and remembering what fired emits each transition once."""
    rules = {
        f"r{i}": (
            replace(PARTS, id=f"r{i}", effective=PARTS.effective + timedelta(days=o)),
            NOW - timedelta(days=200),
        )
        for i, o in enumerate(offsets)
    }
    emitted: list[str] = []
    now = NOW - timedelta(days=150)
    end = PARTS.effective + timedelta(days=400)
    while now <= end:
        due = due_transitions(rules, remind=REMIND, now=now, late_limit=timedelta(days=365))
        emitted += [t.event_id for t in due if t.event_id not in set(emitted)]
        now += timedelta(days=step)
    expected = {t.event_id for t in all_transitions([r for r, _ in rules.values()], remind=REMIND)}
    assert sorted(emitted) == sorted(expected)
