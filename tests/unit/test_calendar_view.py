"""The `calendar` command: transitions in a local-time window, as text, JSON and .ics."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest

from notifier.cli import main
from notifier.cli.calendar_view import window

NY = ZoneInfo("America/New_York")

CONFIG = """
[notifier]
state = "sqlite:///state/n.db"
timezone = "America/New_York"

[calendar]
paths = ["calendar/*.toml"]
remind = ["7d", "1d"]
"""

# Effective 2025-04-05 00:01 ET: reminders on 03-29 (outside a window from 04-01) and
# 04-04. Auto parts 05-03 with an end in the window. A rule at local midnight 05-31 sits
# exactly on the end of a 60-day window from 04-01: its reminders are in, its effective
# time is out. A paused rule has no transitions at all.
CALENDAR = """
[[rule]]
id = "us-reciprocal-baseline"
title = "Reciprocal tariff baseline"
origins = ["*"]
rate = "10%"
effective = 2025-04-05T00:01:00-04:00
basis = "IEEPA"
source = "https://www.federalregister.gov/d/2025-06063"

[[rule]]
id = "us-232-auto-parts"
title = "Section 232 tariff on automobile parts"
origins = ["*"]
hts = ["8708"]
rate = "25%"
effective = 2025-05-03T00:01:00-04:00
ends = 2025-05-20T00:00:00-04:00
basis = "Section 232"
source = "https://www.federalregister.gov/d/2025-05930"

[[rule]]
id = "at-the-edge"
title = "Starts when the window ends"
rate = "5%"
effective = 2025-05-31T00:00:00-04:00
source = "https://example.gov/edge"

[[rule]]
id = "paused-one"
title = "Paused action"
rate = "50%"
effective = 2025-04-20T00:01:00-04:00
status = "paused"
"""


def write(tmp_path: Path, calendar: str = CALENDAR) -> Path:
    (tmp_path / "calendar").mkdir(exist_ok=True)
    (tmp_path / "calendar" / "us.toml").write_text(textwrap.dedent(calendar))
    path = tmp_path / "notifier.toml"
    path.write_text(textwrap.dedent(CONFIG))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["calendar", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def json_window(
    capsys: pytest.CaptureFixture[str], path: Path, *extra: str
) -> list[dict[str, object]]:
    code, out, err = run(
        capsys, "-c", str(path), "--from", "2025-04-01", "--days", "60", "--json", *extra
    )
    assert code == 0, err
    items = json.loads(out)
    assert isinstance(items, list)
    return items


def test_json_lists_window_in_time_order_with_reminders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = json_window(capsys, write(tmp_path))
    seen = [(i["rule"]["id"], i["kind"], i["remind_before"]) for i in items]  # type: ignore[index]
    assert seen == [
        ("us-reciprocal-baseline", "reminder", "1d"),
        ("us-reciprocal-baseline", "effective", None),
        # As the config writes it, and as `data.remind_before` of the webhook payload.
        ("us-232-auto-parts", "reminder", "7d"),
        ("us-232-auto-parts", "reminder", "1d"),
        ("us-232-auto-parts", "effective", None),
        ("us-232-auto-parts", "expired", None),
        ("at-the-edge", "reminder", "7d"),
        ("at-the-edge", "reminder", "1d"),
    ]
    stamps = [datetime.fromisoformat(str(i["at"]).replace("Z", "+00:00")) for i in items]
    assert stamps == sorted(stamps)
    first = items[1]
    assert first["at"] == "2025-04-05T04:01:00Z"
    assert first["local"] == "2025-04-05T00:01:00-04:00"
    assert first["rule"]["source"] == "https://www.federalregister.gov/d/2025-06063"  # type: ignore[index]


def test_window_is_local_midnight_to_local_midnight(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A reminder at 2025-03-31 23:59 ET (03:59Z on 04-01) is before local midnight 04-01,
    # though it is on 04-01 in UTC; the rule at local midnight 05-31 is the exclusive end.
    calendar = CALENDAR.replace(
        "effective = 2025-04-05T00:01:00-04:00", "effective = 2025-04-07T23:59:00-04:00"
    )
    items = json_window(capsys, write(tmp_path, calendar))
    ids = [(i["rule"]["id"], i["kind"]) for i in items]  # type: ignore[index]
    assert ("us-reciprocal-baseline", "reminder") in ids  # the 1d one, 04-06
    assert sum(1 for rid, _ in ids if rid == "us-reciprocal-baseline") == 2  # 7d one is out
    assert ("at-the-edge", "reminder") in ids
    assert ("at-the-edge", "effective") not in ids
    assert all(rid != "paused-one" for rid, _ in ids)
    start = datetime(2025, 4, 1, tzinfo=NY)
    end = datetime(2025, 5, 31, tzinfo=NY)
    for item in items:
        at = datetime.fromisoformat(str(item["at"]).replace("Z", "+00:00"))
        assert start <= at < end
    # One more day takes in the rule at the edge.
    code, out, _ = run(
        capsys, "-c", str(tmp_path / "notifier.toml"), "--from", "2025-04-01", "--days", "61",
        "--json",
    )  # fmt: skip
    assert code == 0
    assert ("at-the-edge", "effective") in {(i["rule"]["id"], i["kind"]) for i in json.loads(out)}


def test_text_output_has_header_local_times_and_reminder_wording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "-c", str(write(tmp_path)), "--from", "2025-04-01", "--days", "60")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("8 transitions between 2025-04-01 00:00 EDT and 2025-05-31")
    assert "America/New_York" in lines[0]
    # 8 transitions, then each rule's source once, in order of first appearance.
    assert len(lines) == 9 + 1 + 3
    assert lines[9] == "sources:"
    assert lines[10].split() == [
        "us-reciprocal-baseline",
        "https://www.federalregister.gov/d/2025-06063",
    ]
    assert lines[11].split() == [
        "us-232-auto-parts",
        "https://www.federalregister.gov/d/2025-05930",
    ]
    assert lines[12].split() == ["at-the-edge", "https://example.gov/edge"]
    assert lines[1].startswith("2025-04-04 00:01 EDT  reminder: in 1 day")
    assert "us-reciprocal-baseline" in lines[1] and "10%" in lines[1]
    assert lines[3].startswith("2025-04-26 00:01 EDT  reminder: in 7 days")
    assert lines[5].startswith("2025-05-03 00:01 EDT  effective")
    assert lines[5].endswith("Section 232 tariff on automobile parts")
    assert lines[6].startswith("2025-05-20 00:00 EDT  expired")


def test_empty_window_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-c", str(write(tmp_path)), "--from", "2030-01-01", "--days", "7")
    assert code == 0
    assert out.strip() == "no transitions between 2030-01-01 00:00 EST and 2030-01-08 00:00 EST"
    code, out, _ = run(
        capsys, "-c", str(tmp_path / "notifier.toml"), "--from", "2030-01-01", "--json"
    )
    assert code == 0
    assert json.loads(out) == []


@pytest.mark.parametrize("argv", [["--from", "04/01/2025"], ["--days", "0"]])
def test_bad_window_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, "-c", str(write(tmp_path)), *argv)
    assert code == 2
    assert out == ""
    assert "--from" in err or "--days" in err


def write_ics(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> icalendar.Calendar:
    target = tmp_path / name
    code, out, err = run(
        capsys, "-c", str(tmp_path / "notifier.toml"), "--from", "2025-04-01", "--days", "60",
        "--ics", str(target),
    )  # fmt: skip
    assert code == 0, err
    assert str(target) in out
    return icalendar.Calendar.from_ical(target.read_bytes())


def test_ics_has_one_event_per_effective_and_expired_transition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path)
    cal = write_ics(tmp_path, capsys, "a.ics")
    assert str(cal["prodid"]) == "-//tariff-notifier//EN"
    assert str(cal["version"]) == "2.0"
    assert str(cal["x-wr-calname"])
    events = cal.walk("VEVENT")
    # reciprocal effective; auto parts effective and expired. No reminders.
    assert len(events) == 3
    by_summary = {str(e["summary"]): e for e in events}
    assert set(by_summary) == {
        "In effect: Reciprocal tariff baseline (10%)",
        "In effect: Section 232 tariff on automobile parts (25%)",
        "Ends: Section 232 tariff on automobile parts",
    }
    auto = by_summary["In effect: Section 232 tariff on automobile parts (25%)"]
    assert str(auto["url"]) == "https://www.federalregister.gov/d/2025-05930"
    start = auto.decoded("dtstart")
    assert start == datetime(2025, 5, 3, 0, 1, tzinfo=NY)
    assert start.utcoffset().total_seconds() == 0  # written as UTC
    assert auto.decoded("dtend") > start
    assert auto.decoded("dtstamp").utcoffset().total_seconds() == 0
    description = str(auto["description"])
    for expected in (
        "Section 232",
        "25%",
        "8708",
        "any origin",
        "federalregister.gov/d/2025-05930",
    ):
        assert expected in description


def test_ics_uids_are_unique_and_stable_across_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path)
    first = [str(e["uid"]) for e in write_ics(tmp_path, capsys, "a.ics").walk("VEVENT")]
    second = [str(e["uid"]) for e in write_ics(tmp_path, capsys, "b.ics").walk("VEVENT")]
    assert len(set(first)) == len(first) == 3
    assert first == second
    assert all(uid.endswith("@tariff-notifier") for uid in first)


def test_ics_with_json_keeps_stdout_parseable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path)
    target = tmp_path / "c.ics"
    items = json_window(capsys, tmp_path / "notifier.toml", "--ics", str(target))
    assert len(items) == 8
    assert len(icalendar.Calendar.from_ical(target.read_bytes()).walk("VEVENT")) == 3


def test_unwritable_ics_is_runtime_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path)
    code, _, err = run(
        capsys, "-c", str(tmp_path / "notifier.toml"), "--ics", str(tmp_path / "no" / "x.ics")
    )
    assert code == 1
    assert "cannot write" in err


def test_window_end_is_local_midnight_across_a_dst_change() -> None:
    # 2025-03-09 02:00 EST -> EDT: 30 wall-clock days are 30 days minus one hour.
    start, end = window("2025-03-01", days=30, zone=NY, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert start == datetime(2025, 3, 1, 5, 0, tzinfo=UTC)
    assert end == datetime(2025, 3, 31, 4, 0, tzinfo=UTC)
    assert end.astimezone(NY).strftime("%H:%M %Z") == "00:00 EDT"


def test_window_without_from_starts_now() -> None:
    now = datetime(2025, 4, 1, 15, 30, tzinfo=UTC)
    start, end = window(None, days=2, zone=NY, now=now)
    assert start == now and end - start == timedelta(days=2)
