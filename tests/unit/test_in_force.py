"""`calendar --in-force` (what applies to my goods now) and the `reviewed` freshness mark."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from notifier.cli import main
from notifier.config import load_config
from notifier.core.calendar import rules_in_force
from notifier.core.model import Rule

AT = datetime(2026, 5, 1, tzinfo=UTC)


def rule(rule_id: str, *, origins: tuple[str, ...], hts: tuple[str, ...], **kw: object) -> Rule:
    fields: dict[str, object] = {
        "title": rule_id,
        "imposed_by": "US",
        "rate": "25%",
        "effective": datetime(2026, 1, 1, tzinfo=UTC),
    }
    fields.update(kw)
    return Rule(id=rule_id, origins=origins, hts=hts, **fields)  # type: ignore[arg-type]


def test_in_force_filters_by_time_origin_and_hts_most_specific_first() -> None:
    rules = [
        rule("everything", origins=("*",), hts=("*",)),
        rule("parts-all", origins=("*",), hts=("8708",)),
        rule("jp-parts", origins=("JP",), hts=("8708",)),
        rule("jp-chapter", origins=("JP",), hts=("87",)),
        rule("cn-parts", origins=("CN",), hts=("8708",)),
        rule("ended", origins=("*",), hts=("8708",), ends=datetime(2026, 4, 1, tzinfo=UTC)),
        rule("later", origins=("*",), hts=("8708",), effective=datetime(2026, 6, 1, tzinfo=UTC)),
        rule("paused", origins=("*",), hts=("8708",), status="paused"),
        rule("steel", origins=("*",), hts=("72",)),
    ]
    found = [r.id for r in rules_in_force(rules, at=AT, origins=["JP"], hts=["870829"])]
    assert found == ["jp-parts", "jp-chapter", "parts-all", "everything"]


def test_in_force_without_filters_lists_every_rule_in_force() -> None:
    rules = [rule("a", origins=("*",), hts=("72",)), rule("b", origins=("CN",), hts=("*",))]
    assert {r.id for r in rules_in_force(rules, at=AT)} == {"a", "b"}


def write(tmp_path: Path, reviewed: str) -> Path:
    (tmp_path / "calendar").mkdir()
    (tmp_path / "calendar" / "us.toml").write_text(
        f"""{reviewed}
[[rule]]
id = "jp-parts"
title = "Parts from Japan"
origins = ["JP"]
hts = ["8708"]
rate = "15%"
basis = "Section 232"
effective = 2025-09-16T00:01:00-04:00
source = "https://www.federalregister.gov/d/2025-17908"
""",
        encoding="utf-8",
    )
    path = tmp_path / "notifier.toml"
    path.write_text(
        """[notifier]
timezone = "America/New_York"
[[subscriber]]
id = "desk"
email = ["desk@example.com"]
origins = ["JP"]
hts = ["8708"]
""",
        encoding="utf-8",
    )
    return path


def test_calendar_in_force_command_for_a_subscriber(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "reviewed = 2026-11-20")
    code = main(["calendar", "--in-force", "--subscriber", "desk", "--json", "-c", str(path)])
    assert code == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["rule"]["id"] == "jp-parts" and item["since"] == "2025-09-16T04:01:00Z"
    assert main(["calendar", "--in-force", "--at", "2025-01-01", "-c", str(path)]) == 0
    assert "no rules in force" in capsys.readouterr().out


def test_a_calendar_reviewed_long_ago_is_flagged_by_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "reviewed = 2020-01-01")
    config = load_config(path)
    [(file, when)] = config.stale_calendar_files(date(2026, 12, 1))
    assert file.endswith("us.toml") and when == date(2020, 1, 1)
    assert main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "was last reviewed 2020-01-01" in out and "us.toml" in out


def test_a_recently_reviewed_calendar_is_not_flagged(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "reviewed = 2026-11-20"))
    assert config.stale_calendar_files(date(2026, 12, 1)) == []
