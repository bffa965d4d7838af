"""Planning deliveries (pure): gone endpoints get a failed row, unsubscribed addresses
none; digest instants; and the transition facts the operator's alerts rely on."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from notifier.core.calendar import Transition, rule_at_transition, transition_event
from notifier.core.model import Event, Rule, Subscriber
from notifier.core.planning import (
    GONE_PREFIX,
    BlockedTargets,
    digest_instants,
    plan_deliveries,
)
from notifier.runtime.metrics import Metrics

NY = ZoneInfo("America/New_York")
NOW = datetime(2025, 4, 17, 12, 0, tzinfo=UTC)
EVENT = Event(id="evt_1", type="tariff.rule.effective", timestamp=NOW, data={})
HOOK = "https://erp.example.com/hooks"
SUB = Subscriber(id="erp", email=("a@example.com", "b@example.com"), webhook=HOOK)


def test_a_gone_endpoint_gets_a_failed_delivery_that_says_why() -> None:
    gone_at = NOW - timedelta(hours=1)
    blocked = BlockedTargets(unsubscribed=[("erp", "a@example.com")], gone={("erp", HOOK): gone_at})
    out = plan_deliveries(EVENT, [SUB], now=NOW, zone=NY, blocked=blocked)
    by_target = {d.target: d for d in out}
    assert set(by_target) == {"b@example.com", HOOK}  # the unsubscribed address: nothing
    hook = by_target[HOOK]
    assert (hook.status, hook.next_at, hook.attempts) == ("failed", None, 0)
    assert hook.last_error is not None and hook.last_error.startswith(GONE_PREFIX)
    assert "410 Gone at 2025-04-17T11:00:00Z" in hook.last_error
    assert "subscribers unblock erp" in hook.last_error
    assert by_target["b@example.com"].status == "queued"


def test_a_plain_blocked_set_still_blocks_everything_in_it() -> None:
    out = plan_deliveries(EVENT, [SUB], now=NOW, zone=NY, blocked={("erp", HOOK)})
    assert {d.target for d in out} == {"a@example.com", "b@example.com"}


def test_blocked_targets_is_a_set_of_every_blocked_pair() -> None:
    blocked = BlockedTargets(unsubscribed=[("s", "x")], gone={("s", "y"): NOW})
    assert blocked == {("s", "x"), ("s", "y")} and set(blocked.gone) == {("s", "y")}


def test_digest_instants_follow_the_current_setting_and_zone() -> None:
    subs = [
        Subscriber(id="m", email=("m@example.com",), digest="daily 09:00"),
        Subscriber(id="w", email=("w@example.com",), digest="weekly MON 08:00"),
        Subscriber(id="n", email=("n@example.com",)),
    ]
    instants = digest_instants(subs, now=NOW, zone=NY)  # Thu 17 Apr, 08:00 in New York
    assert instants["m"] == datetime(2025, 4, 17, 9, 0, tzinfo=NY)
    assert instants["w"] == datetime(2025, 4, 21, 8, 0, tzinfo=NY)
    assert instants["n"] is None


RULE = Rule(
    id="r",
    title="R",
    imposed_by="US",
    origins=("JP",),
    hts=("8703",),
    rate="25%",
    effective=datetime(2025, 5, 3, 4, 1, tzinfo=UTC),
    ends=datetime(2025, 6, 1, 4, 0, tzinfo=UTC),
)


def test_an_expiry_shows_the_stored_rule_when_it_ended_at_that_instant() -> None:
    assert RULE.ends is not None
    edited = replace(RULE, rate="30%")  # written over the rule after it ended
    expired = Transition(edited, "expired", RULE.ends)
    assert rule_at_transition(expired, RULE).rate == "25%"
    assert rule_at_transition(expired, None).rate == "30%"
    ended_elsewhere = replace(RULE, rate="20%", ends=NOW)  # the end itself was edited
    assert rule_at_transition(expired, ended_elsewhere).rate == "30%"
    effective = Transition(edited, "effective", RULE.effective)
    assert rule_at_transition(effective, RULE).rate == "30%"
    event = transition_event(expired, now=RULE.ends + timedelta(hours=2), stored=RULE)
    assert event.data["rule"]["rate"] == "25%"


def test_a_late_transition_carries_how_late_and_an_on_time_one_does_not() -> None:
    effective = Transition(RULE, "effective", RULE.effective)
    late = transition_event(effective, now=RULE.effective + timedelta(minutes=42))
    assert late.data["late"] is True and late.data["late_by_s"] == 42 * 60
    on_time = transition_event(effective, now=RULE.effective + timedelta(seconds=1))
    assert on_time.data["late"] is False and "late_by_s" not in on_time.data


def test_per_subscriber_metrics_are_bounded_to_configured_subscribers() -> None:
    metrics = Metrics()
    metrics.set_subscribers(["erp"])
    metrics.observe_delivery("webhook", "sent", 0.1, subscriber="erp")
    metrics.observe_delivery("webhook", "sent", 0.1, subscriber="removed-long-ago")
    text = metrics.render().decode()
    assert (
        'notifier_subscriber_deliveries_total{channel="webhook",outcome="sent",subscriber="erp"} '
        "1.0" in text
    )
    assert "removed-long-ago" not in text and HOOK not in text
    metrics.set_subscribers([])
    assert 'subscriber="erp"' not in metrics.render().decode()
    metrics.set_config_hash("abc")
    metrics.set_config_hash("def")
    text = metrics.render().decode()
    assert 'notifier_config_info{hash="def"} 1.0' in text and 'hash="abc"' not in text
    assert "process_cpu_seconds_total" in text
