"""Times and dates in the configured zone: the kept results are keyed by the value (and
``year``), equal instants read the same in any offset, and the cache stays bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.delivery.render import formatting
from notifier.delivery.render.formatting import ZoneFormat, date_words

NEW_YORK = ZoneInfo("America/New_York")


def test_the_same_value_reads_the_same_twice_and_others_are_not_confused() -> None:
    zone = ZoneFormat(NEW_YORK)
    assert zone.localtime("2025-05-03T04:01:00Z") == "Sat 3 May 2025, 12:01 AM EDT"
    assert zone.localtime("2025-05-03T04:01:00Z") == "Sat 3 May 2025, 12:01 AM EDT"
    assert zone.localtime("2026-01-01T17:30:00Z") == "Thu 1 Jan 2026, 12:30 PM EST"
    # A calendar date is a date, whichever of the two filters reads it first.
    assert zone.localdate("2025-05-03", year=False) == "Sat 3 May"
    assert zone.localdate("2025-05-03") == "Sat 3 May 2025"
    assert zone.localtime("2025-05-03") == "Sat 3 May 2025"
    assert zone.localdate("2025-07", False) == "July"
    assert zone.localdate("2025-07") == "July 2025"
    assert zone.localtime(None) == zone.localtime("") == "—"


def test_equal_instants_in_other_offsets_read_the_same() -> None:
    zone = ZoneFormat(NEW_YORK)
    utc = datetime(2025, 5, 3, 4, 1, tzinfo=UTC)
    tokyo = utc.astimezone(timezone(timedelta(hours=9)))
    assert zone.localtime(utc) == zone.localtime(tokyo) == "Sat 3 May 2025, 12:01 AM EDT"
    # A naive datetime is UTC, and is not the same key as an aware one.
    assert zone.localtime(datetime(2025, 5, 3, 4, 1)) == "Sat 3 May 2025, 12:01 AM EDT"


def test_two_zones_keep_their_own_results() -> None:
    assert ZoneFormat(NEW_YORK).localtime("2025-05-03T04:01:00Z").endswith("EDT")
    assert ZoneFormat(ZoneInfo("Asia/Tokyo")).localtime("2025-05-03T04:01:00Z") == (
        "Sat 3 May 2025, 1:01 PM JST"
    )


def test_the_kept_results_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formatting, "_CACHED_TIMES", 10)
    zone = ZoneFormat(NEW_YORK)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for hours in range(50):
        moment = start + timedelta(hours=hours)
        assert zone.localtime(moment) == zone._localtime(moment)
        zone.localdate(moment)
    assert len(zone._times) <= 10 and len(zone._dates) <= 10


def test_an_unusable_value_fails_as_before_and_is_not_kept() -> None:
    zone = ZoneFormat(NEW_YORK)
    for value in (["2025-05-03"], "not a time"):
        with pytest.raises(ValueError):
            zone.localtime(value)  # type: ignore[arg-type]
    assert zone._times == {}


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)))
def test_date_words_are_strftimes_in_the_c_locale(moment: datetime) -> None:
    assert date_words(moment, year=True) == f"{moment:%a} {moment.day} {moment:%b} {moment.year}"
    assert date_words(moment, year=False) == f"{moment:%a} {moment.day} {moment:%b}"
