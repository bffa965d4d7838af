"""`tariff-notifier demo`: the offline US-Japan replay, in process and as a user runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from notifier.cli import main
from notifier.cli.demo import END, START, STORY, story_instants
from notifier.config import load_calendar
from notifier.resources import shipped_path

# A sanity bound only: the demo promises < 30 s; loaded CI machines get some slack.
WALL_BOUND_S = 60.0
TALKS = "Japan, U.S. begin tariff talks as 25% duties on cars bite"
DEAL = "Trump announces trade deal with Japan: 15% tariff"


def shipped_rules() -> dict[str, Any]:
    path = shipped_path("config") / "calendar" / "us-2025.toml"
    return {rule.id: rule for rule in load_calendar([path])}


def sections(output: str) -> dict[str, list[str]]:
    """The printout split by subscriber (``== id: ...`` headers), body lines stripped."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith("== "):
            current = found.setdefault(line[3:].split(":")[0], [])
        elif line.startswith("  ") and current is not None:
            current.append(line.strip())
        elif not line.strip():
            current = None
    return found


def assert_story(output: str) -> None:
    got = sections(output)
    assert set(got) == {"jp-auto-importer", "steel-buyer", "erp", "news-watcher"}, output
    rules = shipped_rules()

    assert any(line.endswith(f"New notice: {TALKS}") for line in got["news-watcher"])
    assert any(line.endswith(f"New notice: {DEAL}") for line in got["news-watcher"])
    # Entries not about Japan stay out (the Geneva US-China story is in the feed).
    assert not any("China" in line for line in got["news-watcher"])

    parts = rules["us-232-auto-parts-jp"]
    effective = f"Sat 2025-05-03 00:01  In effect: {parts.title} ({parts.rate})"
    assert effective in got["jp-auto-importer"]
    deal = rules["us-jp-autos-15"]
    assert any(
        line.endswith(f"In effect: {deal.title} ({deal.rate})") for line in got["jp-auto-importer"]
    )
    assert any(line.endswith(f"New notice: {DEAL}") for line in got["jp-auto-importer"])

    hooks = got["erp"]
    assert (
        "Sat 2025-05-03 00:01  tariff.rule.effective us-232-auto-parts-jp late=false verified=yes"
        in hooks
    )
    assert any("tariff.rule.effective us-jp-deal late=false" in line for line in hooks)
    assert hooks and all(line.endswith("verified=yes") for line in hooks), hooks
    # Stepping onto each transition's instant delivers every alert on time.
    assert all("late=false" in line for line in hooks), hooks
    summary = output.strip().splitlines()[-1]
    assert f"{len(hooks)} webhooks ({len(hooks)} verified)" in summary, summary
    assert "problem" not in output


def test_story_instants_start_at_the_baseline_and_hit_each_transition_exactly() -> None:
    rules = list(shipped_rules().values())
    instants = story_instants(rules, remind=[], articles=STORY, start=START, end=END)
    assert instants[0] == START and instants == sorted(set(instants))
    parts = shipped_rules()["us-232-auto-parts-jp"]
    assert parts.effective in instants and parts.ends in instants
    assert all(a.published in instants for a in STORY if START < a.published <= END)
    assert all(START <= i <= END for i in instants)


def test_demo_in_process_prints_the_story_and_stays_on_loopback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    connected: list[Any] = []
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        connected.append(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] != "127.0.0.1":
            raise AssertionError(f"the demo tried to reach {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    started = time.monotonic()
    code = main(["demo"])
    elapsed_s = time.monotonic() - started
    out = capsys.readouterr().out
    assert code == 0, out
    assert_story(out)
    assert connected, "the demo should have talked to its local peers"
    assert elapsed_s < WALL_BOUND_S


def test_demo_as_a_user_runs_it_needs_no_config_and_leaves_nothing(tmp_path: Path) -> None:
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop("NOTIFIER_CONFIG", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "notifier", "demo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=WALL_BOUND_S * 2,
        check=False,
    )
    elapsed_s = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("tariff-notifier demo: replaying")
    assert_story(done.stdout)
    assert done.stderr == ""  # quiet: no log lines around the printout
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == []
    assert elapsed_s < WALL_BOUND_S
