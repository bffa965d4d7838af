"""From a matched event to outbox rows: which deliveries, when, and digest times.

Pure: the subscribers, the clock reading and the time zone are parameters.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from notifier.core.model import Channel, Delivery, Event, Subscriber, isoformat_z
from notifier.core.retry import next_attempt

_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")

#: How a delivery skipped for a gone endpoint starts its ``last_error`` (the CLI and
#: ``subscribers unblock`` recognise such rows by it).
GONE_PREFIX = "gone: "


class BlockedTargets(set[tuple[str, str]]):
    """(subscriber, target) pairs that get no ordinary delivery.

    Every pair is blocked; those in ``gone`` (an endpoint that answered 410 Gone, with
    when it did) still get a delivery row, recorded as ``failed`` at once, so an
    operator sees what was not sent and can retry it once the block is lifted.
    Unsubscribed addresses get nothing at all.
    """

    def __init__(
        self,
        unsubscribed: Iterable[tuple[str, str]] = (),
        gone: Mapping[tuple[str, str], datetime] | None = None,
    ) -> None:
        self.gone: dict[tuple[str, str], datetime] = dict(gone or {})
        super().__init__(unsubscribed)
        self.update(self.gone)


def gone_detail(subscriber_id: str, since: datetime) -> str:
    """The ``last_error`` of a delivery not sent because its endpoint is gone."""
    return (
        f"{GONE_PREFIX}endpoint answered 410 Gone at {isoformat_z(since)}; not sent "
        f"(`tariff-notifier subscribers unblock {subscriber_id}` or `deliveries retry ID` "
        "lifts the block)"
    )


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


def digest_instants(
    subscribers: Iterable[Subscriber], *, now: datetime, zone: ZoneInfo
) -> dict[str, datetime | None]:
    """When each subscriber's next digest goes (None: the subscriber has no digest).

    A queued digest delivery not yet due must wait for exactly this instant: one
    planned under an older ``digest`` setting is moved here (``reschedule_digests``), so
    a changed digest time still gives one digest, not one per setting.
    """
    return {
        sub.id: next_digest_at(sub.digest, after=now, zone=zone) if sub.digest else None
        for sub in subscribers
    }


def _delivery(
    event: Event,
    sub: Subscriber,
    channel: Channel,
    target: str,
    *,
    now: datetime,
    digest_at: datetime | None,
    gone_since: datetime | None,
) -> Delivery:
    delivery_id = Delivery.make_id(event.id, sub.id, channel, target)
    if gone_since is not None:
        return Delivery(
            id=delivery_id,
            event_id=event.id,
            subscriber_id=sub.id,
            channel=channel,
            target=target,
            status="failed",
            attempts=0,
            next_at=None,
            created_at=now,
            last_error=gone_detail(sub.id, gone_since),
        )
    return Delivery(
        id=delivery_id,
        event_id=event.id,
        subscriber_id=sub.id,
        channel=channel,
        target=target,
        status="queued",
        attempts=0,
        next_at=digest_at or now,
        created_at=now,
        digest_at=digest_at,
    )


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
    webhooks are never digested. ``blocked`` (subscriber, target) pairs get nothing
    (unsubscribed addresses), except the gone endpoints of a :class:`BlockedTargets`
    (410 Gone): those get a delivery that is ``failed`` from the start, saying why.
    """
    gone: Mapping[tuple[str, str], datetime] = (
        blocked.gone if isinstance(blocked, BlockedTargets) else {}
    )
    out: list[Delivery] = []
    for sub in subscribers:
        digest_at = next_digest_at(sub.digest, after=now, zone=zone) if sub.digest else None
        wanted: list[tuple[Channel, str, datetime | None]] = [
            ("email", address, digest_at) for address in sub.email
        ]
        if sub.webhook:
            wanted.append(("webhook", sub.webhook, None))
        for channel, target, at in wanted:
            key = (sub.id, target)
            if key in gone:
                since: datetime | None = gone[key]
            elif key in blocked:
                continue
            else:
                since = None
            out.append(
                _delivery(event, sub, channel, target, now=now, digest_at=at, gone_since=since)
            )
    return out


# The retry schedule lives with the rest of the retry policy.
__all__ = [
    "GONE_PREFIX",
    "BlockedTargets",
    "digest_instants",
    "gone_detail",
    "next_attempt",
    "next_digest_at",
    "plan_deliveries",
]
