"""Reminders are calendar-aware: "7d" before 00:01 local is 00:01 local seven days earlier,
also across a DST change, and alerts carry the duration as the config wrote it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from notifier.cli import main
from notifier.config import parse_duration
from notifier.core.calendar import Transition, reminder_at, transition_event
from notifier.core.model import Rule

NY = ZoneInfo("America/New_York")
# 2026-03-08 is the spring-forward Sunday in New York: a 7-day reminder for 2026-03-10
# 00:01 EDT falls on 2026-03-03 00:01 EST, 167 hours earlier, not 168.
EFFECTIVE = datetime(2026, 3, 10, 0, 1, tzinfo=NY)


def test_a_day_reminder_across_spring_forward_keeps_the_local_time() -> None:
    at = reminder_at(EFFECTIVE, timedelta(days=7), NY)
    assert at.astimezone(NY).replace(tzinfo=None) == datetime(2026, 3, 3, 0, 1)
    assert EFFECTIVE.astimezone(UTC) - at.astimezone(UTC) == timedelta(hours=167)


def test_an_hour_reminder_is_exact() -> None:
    assert reminder_at(EFFECTIVE, timedelta(hours=12), NY) == EFFECTIVE - timedelta(hours=12)


def test_remind_before_is_the_configured_string() -> None:
    seven = parse_duration("7d")
    rule = Rule(
        id="r",
        title="r",
        imposed_by="US",
        origins=("*",),
        hts=("*",),
        rate="1%",
        effective=EFFECTIVE,
    )
    transition = Transition(rule, "reminder", reminder_at(EFFECTIVE, seven, NY), seven)
    event = transition_event(transition, now=datetime(2026, 3, 3, 5, 1, tzinfo=UTC))
    assert event.data["remind_before"] == "7d"
    assert parse_duration("1w") == seven  # same duration, each keeps its own label


def test_calendar_command_shows_the_reminder_at_the_local_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "calendar").mkdir()
    (tmp_path / "calendar" / "us.toml").write_text(
        """[[rule]]
id = "dst"
title = "Takes effect after the spring DST change"
origins = ["*"]
hts = ["8708"]
rate = "25%"
effective = 2026-03-10T00:01:00-04:00
""",
        encoding="utf-8",
    )
    path = tmp_path / "notifier.toml"
    path.write_text(
        '[notifier]\ntimezone = "America/New_York"\n[calendar]\nremind = ["7d"]\n',
        encoding="utf-8",
    )
    args = ["calendar", "--from", "2026-03-01", "--days", "15", "--json", "-c", str(path)]
    assert main(args) == 0
    reminder = next(t for t in json.loads(capsys.readouterr().out) if t["kind"] == "reminder")
    assert reminder["local"] == "2026-03-03T00:01:00-05:00"
    assert reminder["remind_before"] == "7d"
