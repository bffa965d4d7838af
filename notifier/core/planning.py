"""From a matched event to outbox rows: which deliveries, when, and digest times.

Pure: the subscribers, the clock reading and the time zone are parameters.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from notifier.core.model import Delivery, Event, Subscriber
from notifier.core.retry import next_attempt

_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


def next_digest_at(spec: str, *, after: datetime, zone: ZoneInfo) -> datetime:
    """The next instant strictly after ``after`` matching ``daily HH:MM`` / ``weekly DAY HH:MM``.

    Computed in the subscriber's zone with wall-clock arithmetic so a digest stays at
    08:00 across DST changes.
    """
    parts = spec.split()
    hour, minute = (int(x) for x in parts[-1].split(":"))
    weekday = _WEEKDAYS.index(parts[1]) if parts[0] == "weekly" else None
    local = after.astimezone(zone)
    day = local.date()
    for offset in range(0, 15):
        candidate_day = day + timedelta(days=offset)
        if weekday is not None and candidate_day.weekday() != weekday:
            continue
        candidate = datetime.combine(candidate_day, time(hour, minute), tzinfo=zone)
        if candidate > after:
            return candidate
    raise AssertionError("unreachable: a matching day exists within two weeks")


def plan_deliveries(
    event: Event,
    subscribers: Sequence[Subscriber],
    *,
    now: datetime,
    zone: ZoneInfo,
    blocked: Container[tuple[str, str]] = (),
) -> list[Delivery]:
    """One delivery per email address and per webhook of each matched subscriber.

    Email deliveries of digest subscribers wait for the digest instant (``digest_at``);
    webhooks are never digested. ``blocked`` (subscriber, target) pairs get nothing:
    unsubscribed addresses and endpoints that answered 410 Gone.
    """
    out: list[Delivery] = []
    for sub in subscribers:
        digest_at = next_digest_at(sub.digest, after=now, zone=zone) if sub.digest else None
        for address in sub.email:
            if (sub.id, address) in blocked:
                continue
            out.append(
                Delivery(
                    id=Delivery.make_id(event.id, sub.id, "email", address),
                    event_id=event.id,
                    subscriber_id=sub.id,
                    channel="email",
                    target=address,
                    status="queued",
                    attempts=0,
                    next_at=digest_at or now,
                    created_at=now,
                    digest_at=digest_at,
                )
            )
        if sub.webhook and (sub.id, sub.webhook) not in blocked:
            out.append(
                Delivery(
                    id=Delivery.make_id(event.id, sub.id, "webhook", sub.webhook),
                    event_id=event.id,
                    subscriber_id=sub.id,
                    channel="webhook",
                    target=sub.webhook,
                    status="queued",
                    attempts=0,
                    next_at=now,
                    created_at=now,
                )
            )
    return out


# The retry schedule lives with the rest of the retry policy.
__all__ = ["next_attempt", "next_digest_at", "plan_deliveries"]
