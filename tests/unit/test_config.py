"""Config and calendar validation: every mistake exits 2 and names file, key and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from notifier.cli import main
from notifier.config import load_config, parse_duration

BASE = """
[notifier]
state = "sqlite:///state/n.db"
timezone = "America/New_York"

[calendar]
paths = ["calendar/*.toml"]

[[feed]]
id = "fr"
url = "http://127.0.0.1:9/feed"
every = "15m"

[[subscriber]]
id = "team"
email = ["trade@example.com"]
"""

RULE = """
[[rule]]
id = "us-232-auto-parts"
title = "Auto parts"
origins = ["*"]
hts = ["8708"]
rate = "25%"
effective = 2025-05-03T00:01:00-04:00
"""


def write(tmp_path: Path, config: str, calendar: str = RULE) -> Path:
    (tmp_path / "calendar").mkdir(exist_ok=True)
    (tmp_path / "calendar" / "us.toml").write_text(textwrap.dedent(calendar))
    path = tmp_path / "notifier.toml"
    path.write_text(textwrap.dedent(config))
    return path


def run_check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", "-c", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_valid_config_checks_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_check(write(tmp_path, BASE), capsys)
    assert code == 0, out
    assert "feeds:       1" in out and "rules:       1" in out


@pytest.mark.parametrize(
    ("mutation", "key", "expected"),
    [
        (('every = "15m"', 'every = "15 parsecs"'), "feed[0].every", "duration"),
        (('id = "team"', 'id = "team"\ncolour = "red"'), "subscriber[0].colour", "unknown key"),
        (
            ('id = "team"', 'id = "team"\nemial = ["x@y.z"]'),
            "subscriber[0].emial",
            "did you mean email",
        ),
        (
            ('timezone = "America/New_York"', 'timezone = "Mars/Olympus"'),
            "notifier.timezone",
            "time zone",
        ),
        (('url = "http://127.0.0.1:9/feed"', 'url = "ftp://x"'), "feed[0].url", "https:// URL"),
        (
            ('email = ["trade@example.com"]', 'email = "trade@example.com"'),
            "subscriber[0].email",
            "list",
        ),
        (
            ('email = ["trade@example.com"]', 'webhook = "https://h.example/x"'),
            "subscriber[0]",
            "secret",
        ),
        (
            ('email = ["trade@example.com"]', 'email = ["t@example.com"]\ndigest = "hourly"'),
            "subscriber[0].digest",
            '"daily HH:MM"',
        ),
        (
            ('email = ["trade@example.com"]', 'email = ["t@example.com"]\nevents = ["tarif.*"]'),
            "subscriber[0].events",
            "matches none",
        ),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mutation: tuple[str, str],
    key: str,
    expected: str,
) -> None:
    path = write(tmp_path, BASE.replace(*mutation))
    code, out = run_check(path, capsys)
    assert code == 2
    assert str(path) in out and key in out and expected in out


def test_line_number_points_at_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace('every = "15m"', 'every = "often"'))
    with pytest.raises(Exception) as info:
        load_config(path)
    line = path.read_text().splitlines().index('every = "often"') + 1
    assert info.value.line == line  # type: ignore[attr-defined]


def test_toml_syntax_error_has_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, BASE + "\n[[feed]\n")
    code, out = run_check(path, capsys)
    assert code == 2 and "not valid TOML" in out and f"{path}:" in out


def test_duplicate_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    twice = BASE + '\n[[subscriber]]\nid = "team"\nemail = ["b@example.com"]\n'
    code, out = run_check(write(tmp_path, twice), capsys)
    assert code == 2 and "subscriber[1].id" in out and "duplicate" in out
    code, out = run_check(write(tmp_path, BASE, RULE + RULE), capsys)
    assert code == 2 and "rule[1].id" in out and "us.toml" in out


def test_naive_datetime_in_calendar_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    naive = RULE.replace("2025-05-03T00:01:00-04:00", "2025-05-03T00:01:00")
    code, out = run_check(write(tmp_path, BASE, naive), capsys)
    assert code == 2 and "rule[0].effective" in out and "offset" in out and "us.toml" in out


def test_bad_calendar_date_and_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = RULE + "ends = 2025-01-01T00:00:00-05:00\n"
    code, out = run_check(write(tmp_path, BASE, bad), capsys)
    assert code == 2 and "ends" in out and "after" in out
    code, out = run_check(
        write(tmp_path, BASE, RULE.replace("effective =", "effective = 'soon'\n#")), capsys
    )
    assert code == 2 and "rule[0].effective" in out


def test_env_var_expansion_and_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = BASE + (
        '\n[[subscriber]]\nid = "erp"\nwebhook = "https://erp.example/h"\n'
        'secret = "${ERP_SECRET}"\n'
    )
    path = write(tmp_path, hook)
    monkeypatch.delenv("ERP_SECRET", raising=False)
    code, out = run_check(path, capsys)
    assert code == 2 and "ERP_SECRET" in out and "subscriber[1].secret" in out
    monkeypatch.setenv("ERP_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    config = load_config(path)
    assert config.subscribers[1].secret == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert "whsec_" not in repr(config.subscribers[1])


def test_an_invalid_value_from_an_env_var_is_not_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = BASE + '\n[[subscriber]]\nid = "chat"\nwebhook = "${CHAT_URL}"\nformat = "slack"\n'
    path = write(tmp_path, hook)
    monkeypatch.setenv("CHAT_URL", "hooks.slack.com/services/T0TEAM/B0BOT/tokenNeverShown")
    code, out = run_check(path, capsys)
    assert code == 2 and "subscriber[1].webhook" in out and "expected an http" in out
    assert "T0TEAM" not in out and "tokenNeverShown" not in out, out
    assert "${VAR} (not shown)" in out
    # A value written in the file itself is still quoted back.
    path.write_text(path.read_text().replace("${CHAT_URL}", "hooks.example/literal"))
    code, out = run_check(path, capsys)
    assert code == 2 and "'hooks.example/literal'" in out


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.state_url == f"sqlite:///{tmp_path}/state/n.db"
    assert [r.id for r in config.rules] == ["us-232-auto-parts"]


def test_durations() -> None:
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("1d").total_seconds() == 86400
    with pytest.raises(ValueError, match="duration"):
        parse_duration("0s")


def test_missing_config_file_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_check(tmp_path / "nope.toml", capsys)
    assert code == 2 and "nope.toml" in out and "not found" in out


def test_a_config_without_a_calendar_says_how_to_run_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No [calendar] section and no calendar/ folder: the default glob matches nothing.
    config = BASE.replace('[calendar]\npaths = ["calendar/*.toml"]\n', "")
    path = tmp_path / "notifier.toml"
    path.write_text(textwrap.dedent(config))
    code, out = run_check(path, capsys)
    assert code == 2
    assert "matches no file (the default [calendar] paths)" in out
    assert "paths = [] to run without a calendar" in out
    # Which is then accepted, with no rules.
    path.write_text(textwrap.dedent(config) + "\n[calendar]\npaths = []\n")
    code, out = run_check(path, capsys)
    assert code == 0 and "rules:       0" in out, out
