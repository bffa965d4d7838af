"""Digests an operator can see and steer: `once` and `deliveries` say what waits and
when it goes, `digests [--preview]` shows it, `digests send` sends it now, and a changed
digest time moves what already waits (one digest, not two). The text digest carries
what the HTML one does."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from notifier.cli import main
from notifier.config import load_config
from notifier.core.model import Entry, Tags
from notifier.delivery.render import Renderer
from notifier.runtime.jobs import Jobs
from notifier.runtime.runtime import Notifier
from tests.conftest import FakeClock, WriteConfig
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.smtp import SmtpPeer
from tests.samples import AUTO_PARTS, entry_event, rule_event


def config(state: str, smtp: SmtpPeer, feeds: FeedServer, *, digest: str) -> str:
    return f"""
[notifier]
state = "{state}"
timezone = "America/New_York"

[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "none"
sender = "Tariff Alerts <alerts@example.com>"

[[feed]]
id = "news"
url = "{feeds.url("news")}"

[[subscriber]]
id = "morning"
email = ["desk@example.com", "boss@example.com"]
digest = "{digest}"
"""


async def cli(path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, [*args, "-c", str(path)])
    return code, capsys.readouterr().out


async def test_changing_the_digest_time_moves_what_waits_into_one_digest(
    write_config: WriteConfig, smtp: SmtpPeer, feeds: FeedServer, state_url: str
) -> None:
    clock = FakeClock()
    feeds.feeds["news"] = [FeedItem("a0", "Old notice")]
    path = write_config(config(state_url, smtp, feeds, digest="daily 08:00"))

    async def once() -> None:
        async with Notifier(load_config(path), clock=clock, parse_in_processes=False) as app:
            await Jobs(app).run_once()

    clock.now = datetime.fromisoformat("2025-04-17T06:00:00-04:00")
    await once()  # baseline
    for n, hour in enumerate((6, 7), start=1):
        feeds.feeds["news"].append(FeedItem(f"a{n}", f"Tariff notice number {n}"))
        clock.now = datetime.fromisoformat(f"2025-04-17T0{hour}:10:00-04:00")
        await once()
    # The operator moves the digest to 09:00 before the 08:00 one went.
    write_config(config(state_url, smtp, feeds, digest="daily 09:00"))
    feeds.feeds["news"].append(FeedItem("a3", "Tariff notice number 3"))
    clock.now = datetime.fromisoformat("2025-04-17T07:40:00-04:00")
    await once()
    clock.now = datetime.fromisoformat("2025-04-17T08:00:30-04:00")
    await once()
    assert smtp.messages == []  # nothing at the old time
    clock.now = datetime.fromisoformat("2025-04-17T09:00:30-04:00")
    await once()
    mails = await smtp.wait_for_count(2)  # one digest per address, not two
    assert sorted(m.rcpt_tos[0] for m in mails) == ["boss@example.com", "desk@example.com"]
    for mail in mails:
        text = mail.message.get_body(("plain",)).get_content()
        assert all(f"number {n}" in text for n in (1, 2, 3))
    clock.advance(hours=1)
    await once()
    assert len(smtp.messages) == 2


async def test_digests_are_visible_previewed_and_sent_on_demand(
    write_config: WriteConfig,
    smtp: SmtpPeer,
    feeds: FeedServer,
    state_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feeds.feeds["news"] = [FeedItem("a0", "Old notice")]
    path = write_config(config(state_url, smtp, feeds, digest="weekly MON 08:00"))
    assert (await cli(path, capsys, "once"))[0] == 0  # baseline
    feeds.feeds["news"].append(FeedItem("a1", "Tariff notice on Japanese auto parts"))
    code, out = await cli(path, capsys, "once")
    assert code == 0
    # `once` says what waits and when it goes.
    assert re.search(
        r"digest morning \(boss@example.com, desk@example.com\): 1 alert waiting, goes "
        r"\d{4}-\d\d-\d\d 08:00 E[SD]T",
        out,
    ), out
    assert smtp.messages == []
    code, out = await cli(path, capsys, "deliveries")
    assert re.search(r"digest \d{4}-\d\d-\d\d 08:00 E[SD]T", out), out

    code, out = await cli(path, capsys, "digests")
    assert code == 0
    assert "morning (weekly MON 08:00)" in out
    assert "1 alert waiting for boss@example.com, desk@example.com, goes" in out
    assert "Tariff notice on Japanese auto parts" in out
    code, out = await cli(path, capsys, "digests", "--preview", "--subscriber", "morning")
    assert code == 0
    assert "--- preview: the digest for desk@example.com" in out
    assert "Subject: New notice: Tariff notice on Japanese auto parts" in out
    assert "TARIFF DIGEST · weekly MON 08:00" in out
    code, out = await cli(path, capsys, "digests", "--json")
    [item] = json.loads(out)
    assert item["subscriber"] == "morning" and item["waiting"][0]["count"] == 1
    assert smtp.messages == []  # a preview sends nothing

    code, out = await cli(path, capsys, "digests", "send", "morning")
    assert code == 0, out
    assert "2 digest emails for 2 deliveries: 2 sent" in out
    await smtp.wait_for_count(2)
    code, out = await cli(path, capsys, "deliveries", "--json")
    assert {r["status"] for r in json.loads(out)} == {"sent"}
    code, out = await cli(path, capsys, "digests", "send", "morning")
    assert code == 0 and "nothing waits" in out
    assert len(smtp.messages) == 2
    assert (await cli(path, capsys, "digests", "send", "nobody"))[0] == 2


def test_the_text_digest_carries_rate_changes_and_mentions_like_the_html() -> None:
    renderer = Renderer(override_dir=None, timezone=ZoneInfo("America/New_York"))
    changed = rule_event(
        "tariff.rule.changed",
        AUTO_PARTS,
        timestamp=datetime(2025, 4, 1, 12, tzinfo=UTC),
        changes=[{"field": "rate", "from": "10%", "to": "25%"}],
    )
    entry = Entry(
        key="k1",
        title="Japan talks",
        link="https://example.org/n/1",
        published=None,
        summary="",
        content_hash="h1",
    )
    mention = entry_event(
        "feed.entry.new",
        entry,
        Tags(origins=("JP",), hts=("8708",), rates=("25%",)),
        timestamp=datetime(2025, 4, 2, 12, tzinfo=UTC),
    )
    digest = renderer.render_digest(
        [changed, mention], subscriber_id="morning", unsubscribe_url=None, period="daily 08:00"
    )
    for part in (digest.text, digest.html):
        assert "10%" in part and "25%" in part
        assert "Japan (JP)" in part and "8708" in part
    assert "Rate 10% → 25%" in digest.text
    assert "Mentions Japan (JP) · 8708 · 25%" in digest.text
    assert "oldest first" in digest.text.lower()
