"""What the operator noticed, through `once` against real peers: a late alert says how
late it went out (not "while the notifier was down"), an expiry shows the rate that
applied, not one written over the rule after it ended, and a "7d" reminder across the
March DST change arrives at the configured local time."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from notifier.config import load_config
from notifier.runtime.jobs import Jobs, OnceReport
from notifier.runtime.runtime import Notifier
from tests.conftest import FakeClock, WriteConfig
from tests.peers.smtp import SmtpPeer


def config(state: str, smtp: SmtpPeer, *, remind: str = "[]") -> str:
    return f"""
[notifier]
state = "{state}"
timezone = "America/New_York"

[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "none"
sender = "Tariff Alerts <alerts@example.com>"

[calendar]
paths = ["calendar/*.toml"]
remind = {remind}

[[subscriber]]
id = "desk"
email = ["desk@example.com"]
"""


def rule(*, rate: str, ends: str = "", effective: str = "2025-05-03T00:01:00-04:00") -> str:
    return f"""
[[rule]]
id = "jp-autos"
title = "Tariff on Japanese automobiles"
imposed_by = "US"
origins = ["JP"]
hts = ["8703"]
rate = "{rate}"
effective = {effective}
{f"ends = {ends}" if ends else ""}
"""


async def once(path: Path, clock: FakeClock) -> OnceReport:
    async with Notifier(load_config(path), clock=clock, parse_in_processes=False) as app:
        return await Jobs(app).run_once()


async def test_a_late_alert_says_how_long_after_it_took_effect_it_was_sent(
    write_config: WriteConfig, smtp: SmtpPeer, clock: FakeClock, state_url: str
) -> None:
    path = write_config(config(state_url, smtp), calendar=rule(rate="25%"))
    clock.now = datetime.fromisoformat("2025-05-02T12:00:00-04:00")
    await once(path, clock)  # baseline, before it takes effect
    clock.now = datetime.fromisoformat("2025-05-03T03:01:00-04:00")  # a cron `once`, 3 h on
    report = await once(path, clock)
    [event] = report.sources.events
    assert event.data["late"] is True and event.data["late_by_s"] == 3 * 3600
    [mail] = await smtp.wait_for_count(1)
    subject = str(mail.message["Subject"])
    assert subject.endswith("(late: sent 3 hours after it took effect)"), subject
    text = mail.message.get_body(("plain",)).get_content()
    assert "this alert was sent 3 hours later" in " ".join(text.split())
    assert "while the notifier was down" not in text


async def test_an_expiry_shows_the_rate_that_applied_not_a_later_edit(
    write_config: WriteConfig, smtp: SmtpPeer, clock: FakeClock, state_url: str
) -> None:
    ends = "2025-06-01T00:00:00-04:00"
    path = write_config(config(state_url, smtp), calendar=rule(rate="25%", ends=ends))
    clock.now = datetime.fromisoformat("2025-05-20T12:00:00-04:00")
    await once(path, clock)  # baseline while in force at 25%
    # After its end, someone writes a new rate over the ended rule; the next pass
    # fires the expiry late and sees the edit in the same check.
    write_config(config(state_url, smtp), calendar=rule(rate="30%", ends=ends))
    clock.now = datetime.fromisoformat("2025-06-01T02:00:00-04:00")
    report = await once(path, clock)
    expired = next(e for e in report.sources.events if e.type == "tariff.rule.expired")
    assert expired.data["rule"]["rate"] == "25%"
    changed = next(e for e in report.sources.events if e.type == "tariff.rule.changed")
    assert changed.data["changes"][0]["to"] == "30%"


async def test_a_day_reminder_across_the_march_dst_change_arrives_at_the_local_time(
    write_config: WriteConfig, smtp: SmtpPeer, clock: FakeClock, state_url: str
) -> None:
    # 2026-03-08 is the spring-forward Sunday in New York. "7d" before 2026-03-10 00:01 EDT
    # is 2026-03-03 00:01 EST (167 hours); 168 hours would be 2026-03-02 23:01 EST.
    effective = "2026-03-10T00:01:00-04:00"
    body = config(state_url, smtp, remind='["7d"]')
    path = write_config(body, calendar=rule(rate="25%", effective=effective))
    clock.now = datetime.fromisoformat("2026-03-01T12:00:00-05:00")
    await once(path, clock)  # baseline
    clock.now = datetime.fromisoformat("2026-03-02T23:30:00-05:00")  # past the 168 h instant
    report = await once(path, clock)
    assert report.sources.events == [] and smtp.messages == []
    clock.now = datetime.fromisoformat("2026-03-03T00:01:30-05:00")
    report = await once(path, clock)
    [event] = report.sources.events
    assert event.type == "tariff.rule.reminder"
    assert event.data["transition_at"] == "2026-03-03T00:01:00-05:00"
    assert event.data["remind_before"] == "7d" and event.data["late"] is False
    [mail] = await smtp.wait_for_count(1)
    text = " ".join(mail.message.get_body(("plain",)).get_content().split())
    assert "takes effect in 7 days, on Tue 10 Mar 2026, 12:01 AM EDT" in text, text
    assert "late" not in str(mail.message["Subject"])
