"""`tariff-notifier demo`: the offline US-Japan replay, in process and as a user runs it.

The official documents the demo serves (notifier/cli/demo/official.py) are written in the
publishers' documented shapes, as the fixtures of tests/data/sources/ are (its README
names them): the Federal Register API v1 ``documents.json`` and
``public-inspection-documents/current.json``, the GovDelivery widget JSONP and bulletin
page, the USITC HTS REST ``exportList`` JSON.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import notifier.cli.demo as demo
from notifier.cli import main
from notifier.cli.demo import END, START, STORY, story_instants
from notifier.cli.demo.official import official_instants
from notifier.cli.demo.peers import Hook
from notifier.cli.demo.report import Replay
from notifier.cli.demo.story import BROKER_HOOK
from notifier.config import load_calendar
from notifier.resources import shipped_path

# A sanity bound only: the demo promises < 30 s; loaded CI machines get some slack.
WALL_BOUND_S = 60.0
TALKS = "Japan, U.S. begin tariff talks as 25% duties on cars bite"
DEAL = "Trump announces trade deal with Japan: 15% tariff"
_WHEN = ("transition_at", "late_by_s", "detected_at", "timestamp")
WEEKDAYS = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}


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
    assert set(got) == {
        "jp-auto-importer",
        "steel-buyer",
        "erp",
        "news-watcher",
        "customs-broker",
    }, output
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
    assert all("late=false" in line for line in hooks), [h for h in hooks if "late=false" not in h]
    assert_official_printout(got)
    for sub, lines in got.items():  # nothing twice (the detail lines under a hook repeat)
        deliveries = Counter(line for line in lines if line[:3] in WEEKDAYS)
        assert all(n == 1 for n in deliveries.values()), (sub, deliveries)
    summary = output.strip().splitlines()[-1]
    sent = len(hooks) + sum(line[:3] in WEEKDAYS for line in got["customs-broker"])
    assert f"{sent} webhooks ({sent} verified)" in summary, summary
    assert "problem" not in output


def assert_official_printout(got: Mapping[str, list[str]]) -> None:
    """The official side: each document reaches its subscribers, with its dates apart."""
    broker = got["customs-broker"]
    pi = broker.index("Wed 2025-04-02 16:15  feed.entry.new 2025-05930 late=false verified=yes")
    assert broker[pi + 1].startswith("public-inspection: Adjusting Imports of Automobiles")
    assert "filed 2025-04-02 16:15 EDT (special filing)" in broker[pi + 2]
    assert "to be published 2025-04-03" in broker[pi + 2]
    fr = broker.index("Thu 2025-04-03 06:00  feed.entry.new 2025-05930 late=false verified=yes")
    assert broker[fr + 1].startswith("federal-register: Adjusting Imports of Automobiles")
    assert broker[fr + 2] == (
        "Proclamation 10908, FR Doc. 2025-05930, signed 2025-03-26, published 2025-04-03, "
        "90 FR 14705, effective 2025-05-03 (read from its text); detected 2025-04-03 06:00 EDT"
    )
    hts = broker.index("Tue 2025-04-29 17:00  hts.line.added 9903.94.05 late=false verified=yes")
    assert broker[hts + 1].startswith(
        "HTS 9903.94.05: The duty provided in the applicable subheading + 25%; applies to 8708"
    )
    assert "Tue 2025-04-29 17:00  hts.line.changed 8708.29.50 late=false verified=yes" in broker
    csms = broker.index("Thu 2025-05-01 11:30  feed.entry.new 64913145 late=false verified=yes")
    assert "chapter 99 9903.94.05, 9903.94.06" in broker[csms + 2]
    # In time order: filed, published, in the schedule, CBP's guidance, in effect (May 3).
    assert pi < fr < hts < csms
    # The JP importer hears of the schedule lines (origins "*"), not of documents that
    # name no country; the ERP (tariff.* only) and the steel buyer of none of it.
    jp = got["jp-auto-importer"]
    assert any(
        line.startswith("Tue 2025-04-29 17:00  New HTS line: HTS 9903.94.05 Except for")
        for line in jp
    ), jp
    assert "Tue 2025-04-29 17:00  HTS 8708.29.50 changed — footnotes none → See 9903.94.05." in jp
    assert not any("Adjusting Imports" in line for line in jp)
    assert not any("9903.94" in line for line in got["steel-buyer"] + got["erp"])


def assert_official_deliveries(result: Replay) -> None:
    """The same, from what the receivers got: payloads, signatures, one delivery each."""
    hooks = [h for h in result.received.hooks if h.path == BROKER_HOOK]
    assert hooks and all(h.verified for h in hooks)
    ids = Counter(h.webhook_id for h in result.received.hooks)
    assert all(n == 1 for n in ids.values()), ids  # one delivery per event and endpoint
    # A document, bulletin or line once per source (the filing and the publication of
    # 2025-05930 are two sources' entries); rule reminders repeat by design (7d, 1d).
    keys = Counter((h.path, h.type, h.data.get("feed"), h.subject) for h in hooks)
    assert all(n == 1 for n in keys.values()), keys
    mails = Counter((m.recipient, m.subject) for m in result.received.mails)
    assert all(n == 1 for n in mails.values()), mails
    assert len({m.message_id for m in result.received.mails}) == len(result.received.mails)

    def one(feed: str, kind: str = "feed.entry.new") -> Hook:
        (hook,) = [h for h in hooks if h.type == kind and h.data.get("feed") == feed]
        return hook

    filing = one("public-inspection").data
    document = filing["entry"]["document"]
    assert document["number"] == "2025-05930" and document["filing_type"] == "special"
    assert document["filed_at"] == "2025-04-02T16:15:00-04:00"
    assert document["publication_date"] == "2025-04-03"
    published = one("federal-register").data["entry"]["document"]
    assert published["type"] == "PRESDOCU" and published["proclamation_number"] == "10908"
    assert published["signing_date"] == "2025-03-26"
    assert published["publication_date"] == "2025-04-03"
    assert published["effective_on"] == "2025-05-03"  # from the text: the API left it empty
    assert published["citation"] == "90 FR 14705"
    assert published["html_url"].startswith("https://www.federalregister.gov/documents/2025/04/03/")
    guidance = one("cbp-csms").data["entry"]["csms"]
    assert guidance["number"] == "64913145"
    assert "9903.94.05" in guidance["chapter99"]
    assert "87082950" in guidance["hts"]
    line = one("hts-8708-9903-94", "hts.line.added").data["line"]
    assert line["htsno"] == "9903.94.05" and "8708" in line["applies_to"]
    assert line["general"] == "The duty provided in the applicable subheading + 25%"
    changed = [h for h in hooks if h.type == "hts.line.changed"]
    assert {h.subject for h in changed} == {"8708.29.50", "8708.99.81"}
    assert all(
        h.data["changes"] == [{"field": "footnotes", "from": "", "to": "See 9903.94.05."}]
        for h in changed
    )
    # The emails of the same lines to the JP importer, once each.
    jp = [m.subject for m in result.received.mails if m.recipient.endswith("jp-autoparts.example")]
    assert sum("9903.94.05" in subject for subject in jp) == 3  # added + two footnotes


def test_story_instants_start_at_the_baseline_and_hit_each_transition_exactly() -> None:
    rules = list(shipped_rules().values())
    instants = story_instants(rules, remind=[], articles=STORY, start=START, end=END)
    assert instants[0] == START and instants == sorted(set(instants))
    parts = shipped_rules()["us-232-auto-parts-jp"]
    assert parts.effective in instants and parts.ends in instants
    assert all(a.published in instants for a in STORY if START < a.published <= END)
    assert all(START <= i <= END for i in instants)


def test_every_official_document_appears_after_the_silent_baseline() -> None:
    rules = list(shipped_rules().values())
    appear = list(official_instants())
    story = [moment for moment in appear if moment > START]
    assert len(story) >= 4  # the filing, the publication, the HTS release, the bulletin
    instants = story_instants(rules, remind=[], articles=STORY, start=START, end=END, also=appear)
    assert all(moment in instants for moment in story)
    assert instants[0] == START


def test_demo_in_process_prints_the_story_and_stays_on_loopback(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connected: list[Any] = []
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        connected.append(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] != "127.0.0.1":
            raise AssertionError(f"the demo tried to reach {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    results: list[Replay] = []
    real_replay = demo.replay

    async def keep(workdir: Path) -> Replay:
        results.append(await real_replay(workdir))
        return results[-1]

    monkeypatch.setattr(demo, "replay", keep)
    started = time.monotonic()
    code = main(["demo"])
    elapsed_s = time.monotonic() - started
    out = capsys.readouterr().out
    assert code == 0, out
    (result,) = results
    late = [
        (hook.type, hook.subject, hook.at.isoformat(), *(hook.data.get(k) for k in _WHEN))
        for hook in result.received.hooks
        if hook.late
    ]
    assert not late, (late, [r.getMessage() for r in caplog.records if r.levelname != "DEBUG"])
    assert_story(out)
    assert_official_deliveries(result)
    assert result.received.requests["/api/v1/public-inspection-documents/current.json"] > 1
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
