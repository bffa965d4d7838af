"""Start-up warns, naming the file, when a calendar file in use was reviewed more than
90 days ago (``check`` does too: tests/unit/test_in_force.py)."""

from __future__ import annotations

from pathlib import Path

from tests.peers.daemon import Daemon, run_cli

STALE = "was last reviewed 2020-01-01"


def write(tmp_path: Path) -> Path:
    (tmp_path / "calendar").mkdir()
    rule = """
[[rule]]
id = "jp-parts"
title = "Parts from Japan"
origins = ["JP"]
hts = ["8708"]
rate = "15%"
basis = "Section 232"
effective = 2025-09-16T00:01:00-04:00
source = "https://www.federalregister.gov/d/2025-17908"
"""
    (tmp_path / "calendar" / "old.toml").write_text("reviewed = 2020-01-01\n" + rule)
    fresh = rule.replace("jp-parts", "jp-parts-2")
    (tmp_path / "calendar" / "fresh.toml").write_text("reviewed = 2026-11-20\n" + fresh)
    config = tmp_path / "notifier.toml"
    config.write_text(
        '[notifier]\nstate = "sqlite:///state/n.db"\ntimezone = "America/New_York"\n'
        '[calendar]\npaths = ["calendar/*.toml"]\n'
    )
    return config


def _warned(log: str) -> list[str]:
    return [line for line in log.splitlines() if STALE in line]


async def test_run_warns_at_start_up_naming_the_stale_file(tmp_path: Path) -> None:
    daemon = await Daemon(write(tmp_path), args=("--health", "127.0.0.1:0")).start()
    try:
        [line] = _warned(daemon.log())
        assert "WARNING" in line and "old.toml" in line
        assert "fresh.toml" not in daemon.log()
    finally:
        code, _ = await daemon.stop()
    assert code == 0


async def test_once_warns_naming_the_stale_file(tmp_path: Path) -> None:
    code, _, err = await run_cli("once", "-c", str(write(tmp_path)))
    assert code == 0
    [line] = _warned(err)
    assert "old.toml" in line and "fresh.toml" not in err
