"""The pure decisions of the source jobs (notifier/core/decide.py) and the retry policy
(notifier/core/retry.py): baselines, diffs, removals, held changes, source health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from notifier.core.decide import (
    HealthView,
    decide_calendar,
    decide_feed_poll,
    decide_health,
    decide_hold,
    due_after_save,
    episode_of,
    source_state,
)
from notifier.core.health import health_event, health_event_id, held_event
from notifier.core.model import Entry, Event, Rule
from notifier.core.retry import MAX_FEED_BACKOFF, feed_backoff, jitter_for, lease_for, next_attempt

NOW = datetime(2025, 5, 3, 12, tzinfo=UTC)


def entry(key: str, content: str = "a") -> Entry:
    return Entry(
        key=key, title=f"t {key}", link="", published=None, summary=content, content_hash=content
    )


def seen_of(*entries: Entry) -> dict[str, tuple[str, str, str]]:
    return {e.key: (e.content_hash, e.title, e.summary) for e in entries}


# --- feed polls ------------------------------------------------------------------------


def test_first_successful_poll_is_a_silent_baseline() -> None:
    plan = decide_feed_poll(known=False, entries=[entry("a"), entry("b")], seen={})
    assert plan.baseline and not plan.changes
    assert [e.key for e in plan.remember] == ["a", "b"]


def test_new_and_updated_entries_are_changes_the_rest_only_touched() -> None:
    old_a, old_b = entry("a"), entry("b")
    plan = decide_feed_poll(
        known=True,
        entries=[entry("c"), entry("a", "changed"), old_b],
        seen=seen_of(old_a, old_b),
    )
    assert [(c.kind, c.entry.key) for c in plan.changes] == [("new", "c"), ("updated", "a")]
    assert plan.changes[1].previous == ("a", "t a", "a")
    assert {e.key for e in plan.remember} == {"a", "c"}
    assert plan.touch == {"b"}
    assert not plan.forget


def test_a_repeated_key_keeps_the_first_entry() -> None:
    plan = decide_feed_poll(known=True, entries=[entry("a", "x"), entry("a", "y")], seen={})
    assert [c.entry.content_hash for c in plan.changes] == ["x"]


def test_partial_entries_are_neither_alerted_nor_remembered() -> None:
    plan = decide_feed_poll(
        known=True, entries=[entry("a"), entry("b")], seen={}, partial=frozenset({"b"})
    )
    assert [c.entry.key for c in plan.changes] == ["a"]
    assert [e.key for e in plan.remember] == ["a"]


def test_removals_only_for_kinds_that_report_them() -> None:
    stored = seen_of(entry("a"), entry("gone"))
    quiet = decide_feed_poll(known=True, entries=[entry("a")], seen=stored)
    assert not quiet.changes and not quiet.forget
    loud = decide_feed_poll(known=True, entries=[entry("a")], seen=stored, reports_removals=True)
    assert [(c.kind, c.entry.key) for c in loud.changes] == [("removed", "gone")]
    assert loud.forget == {"gone"}
    assert loud.changes[0].previous == ("a", "t gone", "a")


@given(st.lists(st.sampled_from("abcdef"), max_size=8), st.lists(st.sampled_from("abcdef")))
def test_a_poll_remembered_then_repeated_changes_nothing(keys: list[str], old: list[str]) -> None:
    entries = [entry(k) for k in keys]
    first = decide_feed_poll(known=True, entries=entries, seen=seen_of(*map(entry, old)))
    after = seen_of(*map(entry, old), *first.remember)
    again = decide_feed_poll(known=True, entries=entries, seen=after)
    assert again.changes == ()


# --- held changes ----------------------------------------------------------------------


def event(n: int, kind: str = "feed.entry.new") -> Event:
    return Event(id=f"evt_{n}", type=kind, timestamp=NOW, data={"entry": {"title": f"T{n}"}})


def test_a_poll_over_the_limit_is_held_with_counts_and_examples() -> None:
    events = [event(i) for i in range(25)] + [event(99, "feed.entry.updated")]
    hold = decide_hold(events, baseline=False, limit=20)
    assert hold.held
    assert hold.would_emit == {"feed.entry.new": 25, "feed.entry.updated": 1}
    assert hold.examples[0] == "feed.entry.new: T0"
    # The same change found again has the same fingerprint (it is not held twice).
    assert decide_hold(list(reversed(events)), baseline=False, limit=20).fingerprint == (
        hold.fingerprint
    )


def test_a_baseline_or_a_poll_within_the_limit_is_not_held() -> None:
    events = [event(i) for i in range(30)]
    assert not decide_hold(events, baseline=True, limit=20).held
    assert not decide_hold(events[:20], baseline=False, limit=20).held


# --- source health ---------------------------------------------------------------------


def view(
    failures: int, last_ok: datetime | None = NOW, error: str | None = "HTTP 500"
) -> HealthView:
    return HealthView(
        failures=failures, last_ok_at=last_ok, first_seen_at=last_ok, last_error=error
    )


def health(before: HealthView, after: HealthView, *, announced: bool, now: datetime = NOW) -> str:
    decision = decide_health(
        "fr",
        before,
        after,
        now=now,
        alert_after=3,
        stale_after=timedelta(days=1),
        failing_announced=announced,
    )
    return f"{decision.state}:{decision.event}"


def test_failing_once_when_the_streak_reaches_alert_after_and_never_again() -> None:
    assert health(view(1), view(2), announced=False) == "ok:None"
    assert health(view(2), view(3), announced=False) == "failing:failing"
    assert health(view(3), view(4), announced=True) == "failing:None"


def test_stale_without_enough_failures_when_success_is_too_old() -> None:
    later = NOW + timedelta(days=2)
    assert health(view(0), view(1), announced=False, now=later) == "stale:failing"


def test_recovered_once_only_after_an_announced_failure() -> None:
    recovered = view(0, last_ok=NOW + timedelta(hours=1), error=None)
    assert health(view(4), recovered, announced=True) == "ok:recovered"
    assert health(view(1), recovered, announced=False) == "ok:None"


def test_source_state_names_each_state() -> None:
    kwargs = {"alert_after": 3, "stale_after": timedelta(hours=6)}
    assert source_state(view(0), now=NOW, **kwargs) == "ok"  # type: ignore[arg-type]
    assert source_state(view(3), now=NOW, **kwargs) == "failing"  # type: ignore[arg-type]
    late = NOW + timedelta(hours=7)
    assert source_state(view(1), now=late, **kwargs) == "stale"  # type: ignore[arg-type]


def test_episode_ids_are_one_per_streak() -> None:
    first, second = episode_of("fr", NOW), episode_of("fr", NOW + timedelta(hours=1))
    assert first != second and first == episode_of("fr", NOW)
    failing = health_event("failing", "fr", "rss", first, view(3), now=NOW)
    assert failing.id == health_event_id("failing", "fr", first)
    assert failing.type == "source.failing"
    assert failing.data["failures"] == 3 and failing.data["last_error"] == "HTTP 500"
    assert failing.data["since"] == "2025-05-03T12:00:00Z"


def test_held_event_carries_what_would_have_gone() -> None:
    hold = decide_hold([event(i) for i in range(30)], baseline=False, limit=20)
    notice = held_event("fr", "rss", hold, now=NOW)
    assert notice.type == "source.held"
    assert notice.data["would_emit"] == {"feed.entry.new": 30}
    assert len(notice.data["examples"]) == 5


# --- calendar --------------------------------------------------------------------------


def a_rule(rule_id: str, effective: datetime, rate: str = "25%") -> Rule:
    return Rule(
        id=rule_id,
        title=rule_id,
        imposed_by="US",
        origins=("JP",),
        hts=("8708",),
        rate=rate,
        effective=effective,
    )


def test_first_calendar_check_is_a_silent_baseline_without_past_transitions() -> None:
    rules = [a_rule("past", NOW - timedelta(days=1)), a_rule("soon", NOW + timedelta(days=1))]
    due = due_after_save({}, rules, now=NOW, remind=[], late_limit=timedelta(days=30))
    plan = decide_calendar(
        known={}, rules=rules, baselined=False, due=due, emitted=set(), now=NOW, catch_up=False
    )
    assert plan.baseline and plan.events == ()


def test_edits_and_due_transitions_in_one_plan_each_once() -> None:
    since = NOW - timedelta(days=10)
    old = a_rule("r", NOW - timedelta(minutes=1))
    known = {"r": (old, since)}
    rules = [a_rule("r", NOW - timedelta(minutes=1), rate="50%")]
    due = due_after_save(known, rules, now=NOW, remind=[], late_limit=timedelta(days=30))
    plan = decide_calendar(
        known=known, rules=rules, baselined=True, due=due, emitted=set(), now=NOW, catch_up=False
    )
    assert [e.type for e in plan.events] == ["tariff.rule.changed", "tariff.rule.effective"]
    effective = plan.events[1]
    assert effective.data["detected_at"] == "2025-04-23T12:00:00Z"  # known since
    again = decide_calendar(
        known=known,
        rules=rules,
        baselined=True,
        due=due,
        emitted={effective.id},
        now=NOW,
        catch_up=False,
    )
    assert [e.type for e in again.transitions] == []


# --- retry policy ----------------------------------------------------------------------


def test_feed_backoff_doubles_and_caps() -> None:
    every = timedelta(minutes=15)
    assert feed_backoff(every, 0) == every
    assert feed_backoff(every, 1) == every
    assert feed_backoff(every, 3) == every * 4
    assert feed_backoff(every, 40) == MAX_FEED_BACKOFF
    assert feed_backoff(timedelta(days=1), 5) == timedelta(days=1)


def test_jitter_is_a_tenth_capped_at_five_minutes_and_lease_is_shorter_than_it() -> None:
    assert jitter_for(timedelta(minutes=15)) == 90.0
    assert jitter_for(timedelta(days=1)) == 300.0
    every = timedelta(minutes=10)
    assert lease_for(every) < every - timedelta(seconds=jitter_for(every))


def test_next_attempt_follows_the_schedule_and_honours_retry_after() -> None:
    backoff = [timedelta(seconds=5), timedelta(minutes=5)]
    assert (
        next_attempt(attempts=1, backoff=backoff, now=NOW, retry_after_s=None) == NOW + backoff[0]
    )
    assert next_attempt(attempts=1, backoff=backoff, now=NOW, retry_after_s=60) == NOW + timedelta(
        seconds=60
    )
    assert next_attempt(attempts=3, backoff=backoff, now=NOW, retry_after_s=None) is None
