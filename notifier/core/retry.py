"""Retry policy (pure): when a delivery is tried again, and how often a failing source is
polled, with the jitter and lease lengths that keep many sources and instances apart."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

# The longest a failing source waits between polls.
MAX_FEED_BACKOFF = timedelta(hours=6)


def next_attempt(
    *, attempts: int, backoff: Sequence[timedelta], now: datetime, retry_after_s: float | None
) -> datetime | None:
    """When to try again after ``attempts`` failed tries, or None when it is time to give up.

    ``backoff[i]`` is the wait after the (i+1)-th failed try; a ``Retry-After`` longer
    than the schedule's wait is honoured.
    """
    if attempts > len(backoff):
        return None
    wait = backoff[attempts - 1]
    if retry_after_s is not None:
        wait = max(wait, timedelta(seconds=retry_after_s))
    return now + wait


def feed_backoff(every: timedelta, failures: int) -> timedelta:
    """Poll a failing source less often: every, 2x, 4x... capped at ``MAX_FEED_BACKOFF``
    (or at ``every`` when that is longer)."""
    if failures <= 0:
        return every
    longest: timedelta = max(MAX_FEED_BACKOFF, every)
    grown: timedelta = every * (2 ** min(failures - 1, 16))
    return min(grown, longest)


def jitter_for(every: timedelta) -> float:
    """Up to +-10% (at most 5 min) so a thousand sources do not fire in the same second."""
    return min(every.total_seconds() * 0.1, 300.0)


def lease_for(every: timedelta) -> timedelta:
    """A poll lease shorter than the earliest jittered next poll (90% of ``every``)."""
    return every * 0.8
