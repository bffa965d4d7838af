"""Pure routing: digest instants across DST, retry schedule, one delivery per address."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from notifier.config import SubscriberSection
from notifier.core.model import Event
from notifier.core.planning import next_attempt, next_digest_at, plan_deliveries

NY = ZoneInfo("America/New_York")


def test_daily_digest_keeps_local_time_across_dst() -> None:
    before = datetime(2025, 3, 8, 7, 0, tzinfo=NY)  # Saturday; DST starts Sunday 9 March
    first = next_digest_at("daily 08:00", after=before, zone=NY)
    second = next_digest_at("daily 08:00", after=first, zone=NY)
    assert first == datetime(2025, 3, 8, 8, 0, tzinfo=NY)
    assert (first.hour, second.hour) == (8, 8)
    # 08:00 EST to 08:00 EDT: the short day, 23 real hours.
    assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=23)


def test_weekly_digest_and_strictly_after() -> None:
    monday_8 = datetime(2025, 5, 5, 8, 0, tzinfo=NY)
    assert next_digest_at("weekly MON 08:00", after=monday_8, zone=NY) == monday_8 + timedelta(
        days=7
    )
    friday = datetime(2025, 5, 2, 12, 0, tzinfo=NY)
    assert next_digest_at("weekly MON 08:00", after=friday, zone=NY) == monday_8


def test_retry_schedule_then_give_up_and_retry_after_wins_when_longer() -> None:
    now = datetime(2025, 5, 3, tzinfo=UTC)
    backoff = [timedelta(seconds=5), timedelta(minutes=5)]
    assert next_attempt(attempts=1, backoff=backoff, now=now, retry_after_s=None) == now + (
        timedelta(seconds=5)
    )
    assert next_attempt(attempts=1, backoff=backoff, now=now, retry_after_s=60) == now + (
        timedelta(seconds=60)
    )
    assert next_attempt(attempts=2, backoff=backoff, now=now, retry_after_s=1) == now + (
        timedelta(minutes=5)
    )
    assert next_attempt(attempts=3, backoff=backoff, now=now, retry_after_s=None) is None


def test_one_delivery_per_address_digest_for_email_only_and_blocked_skipped() -> None:
    now = datetime(2025, 5, 3, 12, tzinfo=UTC)
    event = Event(id="evt_1", type="tariff.rule.effective", timestamp=now, data={})
    sub = SubscriberSection(
        id="desk",
        email=["a@example.com", "b@example.com"],
        webhook="https://erp.example.com/h",
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        digest="daily 08:00",
    ).to_subscriber()
    planned = plan_deliveries(event, [sub], now=now, zone=NY, blocked={("desk", "b@example.com")})
    assert [(d.channel, d.target) for d in planned] == [
        ("email", "a@example.com"),
        ("webhook", "https://erp.example.com/h"),
    ]
    email, hook = planned
    assert email.digest_at is not None and email.next_at == email.digest_at
    assert hook.digest_at is None and hook.next_at == now
    again = plan_deliveries(event, [sub], now=now + timedelta(hours=1), zone=NY)
    assert [d.id for d in again][:1] == [email.id]  # ids derive from what they are
