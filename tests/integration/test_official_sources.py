"""The official sources end to end, through the real jobs (`once`) and `run`: a local
publisher serves the Federal Register API, GovDelivery's CSMS widget and bulletin pages,
the USITC HTS export and a calendar file over HTTP, in the shapes of
tests/data/sources/README.md; subscribers are webhook receivers that verify every
Standard Webhooks signature.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from notifier.config import load_config
from notifier.runtime.jobs import Jobs, OnceReport
from notifier.runtime.runtime import Notifier
from tests.conftest import FakeClock, WriteConfig, new_secret
from tests.integration.test_source_kinds import DATA, Publisher
from tests.peers.daemon import Daemon
from tests.peers.webhook import WebhookPeer

SUBSCRIBERS = {
    # id: filters (TOML lines)
    "parts": 'hts = ["8708"]',
    "cars": 'hts = ["8703"]',
    "steel": 'hts = ["72"]',
    "everything": "",
}

CALENDAR = """
[[rule]]
id = "remote-parts"
title = "Remote rule on parts"
origins = ["*"]
hts = ["8708"]
rate = "{rate}"
effective = 2031-05-03T00:01:00-04:00
basis = "Section 232"
source = "https://www.federalregister.gov/d/2025-05930"
"""

# A Chapter 99 line that names heading 8703 in its description (the shape of the USITC
# export's rows; its text in the style of subchapter III).
CH99_ROW = {
    "htsno": "9903.94.99",
    "indent": "0",
    "description": "Except as provided elsewhere, passenger vehicles of heading 8703, as "
    "provided for in U.S. note 33 to this subchapter",
    "superior": None,
    "units": [],
    "general": "The duty provided in the applicable subheading + 25%",
    "special": "",
    "other": "",
    "footnotes": [],
    "quotaQuantity": None,
    "additionalDuties": None,
}


@dataclass
class OfficialPublisher(Publisher):
    """The fixtures' publisher, plus a calendar file, an HTS export and a CSMS widget
    built per test."""

    calendar: str = CALENDAR.format(rate="25%")
    calendar_status: int = 200
    hts_rows: list[dict[str, Any]] | None = None
    widget: bytes | None = None
    pages: dict[str, str] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        bulletin = request.path.rsplit("/", 1)[-1]
        if request.path.startswith("/accounts/USDHSCBP/bulletins/") and bulletin in self.pages:
            return web.Response(body=self.body(self.pages[bulletin]), content_type="text/html")
        if request.path.endswith("USDHSCBP_WIDGET_2.json") and self.widget is not None:
            return web.Response(body=self.widget, content_type="text/javascript")
        if request.path == "/calendar/us.toml":
            self.requests.append((request.path, dict(request.query), ""))
            if self.calendar_status != 200:
                return web.Response(status=self.calendar_status, text="upstream error")
            return web.Response(text=self.calendar, content_type="application/toml")
        if request.path == "/reststop/exportList" and self.hts_rows is not None:
            return web.json_response(self.hts_rows)
        return await super().handle(request)


@pytest.fixture
async def publisher() -> AsyncIterator[OfficialPublisher]:
    server = OfficialPublisher()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


PI_CURRENT = (
    "/api/v1/public-inspection-documents/current.json"
    "?conditions%5Bagencies%5D%5B%5D=executive-office-of-the-president"
)


def config_text(publisher: OfficialPublisher, hooks: WebhookPeer, secret: str) -> str:
    base = publisher.base
    subscribers = "".join(
        f'\n[[subscriber]]\nid = "{sub}"\nwebhook = "{hooks.url("/" + sub)}"\n'
        f'secret = "{secret}"\nevents = ["feed.entry.*", "hts.line.*", "tariff.rule.*"]\n'
        f"{filters}\n"
        for sub, filters in SUBSCRIBERS.items()
    ) + (
        f'\n[[subscriber]]\nid = "ops"\nwebhook = "{hooks.url("/ops")}"\nsecret = "{secret}"\n'
        'events = ["source.*"]\n'
    )
    return f"""
[notifier]
state = "sqlite:///state/n.db"
timezone = "America/New_York"

[delivery]
backoff = ["1s"]
timeout = "5s"

[calendar]
paths = ["calendar/*.toml"]
urls = ["{base}/calendar/us.toml"]

[[feed]]
id = "fr"
kind = "federal-register"
url = "{base}/api/v1/documents.json?conditions%5Bterm%5D=tariff"

[[feed]]
id = "pi"
kind = "federal-register-inspection"
url = "{base}{PI_CURRENT}"

[[feed]]
id = "csms"
kind = "csms"
url = "{base}/accounts/USDHSCBP/widgets/USDHSCBP_WIDGET_2.json"

[[feed]]
id = "hts"
kind = "hts"
url = "{base}/reststop/exportList?from=8701&to=8716&format=JSON&styles=false"
alert_after = 1
{subscribers}
"""


@pytest.fixture
def setup(write_config: WriteConfig, publisher: OfficialPublisher, hooks: WebhookPeer) -> Path:
    secret = new_secret()
    for sub in [*SUBSCRIBERS, "ops"]:
        hooks.set_secret("/" + sub, secret)
    return write_config(config_text(publisher, hooks, secret), calendar="")


async def once(path: Path, clock: FakeClock) -> OnceReport:
    async with Notifier(load_config(path), clock=clock, parse_in_processes=False) as notifier:
        return await Jobs(notifier).run_once()


def payloads(hooks: WebhookPeer, sub: str) -> list[dict[str, Any]]:
    calls = hooks.calls_to("/" + sub)
    assert all(call.verified for call in calls)
    return [json.loads(call.body) for call in calls]


def types(hooks: WebhookPeer, sub: str) -> list[str]:
    return sorted(p["type"] for p in payloads(hooks, sub))


async def test_first_pass_is_a_silent_baseline_for_every_official_source(
    setup: Path, clock: FakeClock, hooks: WebhookPeer
) -> None:
    report = await once(setup, clock)
    assert {"fr", "pi", "csms", "hts", "calendar"} <= set(report.sources.baselined)
    assert report.sources.events == [] and hooks.calls == []


async def test_hts_rate_change_reaches_the_8708_watcher_only_and_a_ch99_line_reaches_8703(
    setup: Path, clock: FakeClock, hooks: WebhookPeer, publisher: OfficialPublisher
) -> None:
    await once(setup, clock)
    publisher.files["hts"] = "hts_v2.json"  # 8708.29.50: 2.5% -> 3%; 8708.40.11 removed
    clock.advance(hours=1)
    await once(setup, clock)
    parts = payloads(hooks, "parts")
    changed = [p for p in parts if p["type"] == "hts.line.changed"]
    assert len(changed) == 1
    line = changed[0]["data"]["line"]
    assert line["htsno"] == "8708.29.50"
    assert changed[0]["data"]["changes"] == [{"field": "general", "from": "2.5%", "to": "3%"}]
    assert "detected_at" in changed[0]["data"]
    assert [p["data"]["line"]["htsno"] for p in parts if p["type"] == "hts.line.removed"] == [
        "8708.40.11"
    ]
    assert types(hooks, "steel") == []

    rows = json.loads((DATA / "hts_v2.json").read_text())
    publisher.hts_rows = [*rows, CH99_ROW]
    clock.advance(hours=1)
    await once(setup, clock)
    [added] = [p for p in payloads(hooks, "cars") if p["type"] == "hts.line.added"]
    assert added["data"]["line"]["htsno"] == "9903.94.99"
    assert "8703" in added["data"]["line"]["applies_to"]


async def test_a_federal_register_correction_is_new_and_the_original_updated(
    setup: Path, clock: FakeClock, hooks: WebhookPeer, publisher: OfficialPublisher
) -> None:
    await once(setup, clock)
    publisher.files["fr1"] = "fr_page1_corrected.json"
    clock.advance(hours=1)
    await once(setup, clock)
    events = {p["data"]["entry"]["id"]: p for p in payloads(hooks, "everything")}
    correction = events["C1-2025-05930"]
    assert correction["type"] == "feed.entry.new"
    document = correction["data"]["entry"]["document"]
    assert document["correction_of"] == "2025-05930"
    assert set(document) >= {"number", "type", "agencies", "publication_date", "effective_on"}
    assert events["2025-05930"]["type"] == "feed.entry.updated"


async def test_a_public_inspection_filing_reaches_subscribers_before_publication(
    setup: Path, clock: FakeClock, hooks: WebhookPeer, publisher: OfficialPublisher
) -> None:
    await once(setup, clock)  # baseline: pi_current.json
    # The next day's desk (pi_current_later.json): a new proclamation on file, and a
    # filing of an agency the URL's conditions[agencies][] leave out.
    publisher.files["pi"] = "pi_current_later.json"
    clock.advance(hours=1)
    report = await once(setup, clock)
    assert "pi" not in report.sources.feed_errors
    [filing] = [p for p in payloads(hooks, "parts") if p["data"]["feed"] == "pi"]
    assert filing["type"] == "feed.entry.new"
    document = filing["data"]["entry"]["document"]
    assert document["number"] == "2025-07410"
    assert (document["filed_at"], document["filing_type"]) == (
        "2025-09-09T16:15:00-04:00",
        "special",
    )
    assert document["publication_date"] == "2025-09-10"  # still ahead: it is on file
    assert document["type"] == "PRESDOCU"
    assert "detected_at" in filing["data"]
    everything = [p["data"]["entry"]["id"] for p in payloads(hooks, "everything")]
    assert everything == ["2025-07410"]  # not the other agency's filing
    assert types(hooks, "steel") == []


async def test_a_malformed_hts_export_fails_the_source_and_withdraws_nothing(
    setup: Path, clock: FakeClock, hooks: WebhookPeer, publisher: OfficialPublisher
) -> None:
    await once(setup, clock)  # baseline: hts_v1.json
    publisher.files["hts"] = "hts_malformed.json"  # an error object, not the rows
    clock.advance(hours=1)
    report = await once(setup, clock)
    assert "not a JSON array" in report.sources.feed_errors["hts"]
    assert [p for sub in SUBSCRIBERS for p in payloads(hooks, sub)] == []
    [failing] = payloads(hooks, "ops")  # alert_after = 1
    assert (failing["type"], failing["data"]["source"]) == ("source.failing", "hts")
    # The release is back: every line was kept, so nothing is added, changed or removed.
    publisher.files["hts"] = "hts_v1.json"
    clock.advance(hours=1)
    report = await once(setup, clock)
    assert "hts" not in report.sources.feed_errors
    assert [p for sub in SUBSCRIBERS for p in payloads(hooks, sub)] == []
    assert types(hooks, "ops") == ["source.failing", "source.recovered"]


WIDGET_ITEM = (
    '{{"subject":"CSMS # {number} - {subject}","date":"05/02/2025 02:02 PM EDT",'
    '"link":"{base}/accounts/USDHSCBP/bulletins/{page}"}}'
)


def widget(base: str, *items: tuple[str, str, str]) -> bytes:
    """The GovDelivery widget feed (JSONP), as in tests/data/sources/csms_widget.jsonp."""
    listed = ",".join(
        WIDGET_ITEM.format(number=n, subject=s, base=base, page=p) for n, s, p in items
    )
    return f"GDWidgets[0].update([{listed}]);".encode()


async def test_a_csms_bulletin_whose_page_fails_is_retried_not_alerted_half_done(
    setup: Path, clock: FakeClock, hooks: WebhookPeer, publisher: OfficialPublisher
) -> None:
    copper = ("65794272", "GUIDANCE: Section 232 Import Duties on Copper", "3ec1e00")
    parts = ("64913145", "UPDATED GUIDANCE: Import Duties on Automobile Parts", "broken")
    publisher.widget = widget(publisher.base, copper)
    await once(setup, clock)  # baseline
    publisher.widget = widget(publisher.base, parts, copper)  # a new bulletin; page: 500
    clock.advance(hours=1)
    await once(setup, clock)
    assert [p for p in payloads(hooks, "everything") if p["data"].get("feed") == "csms"] == []
    publisher.broken.clear()  # the page recovers (served from csms_bulletin_maintenance)
    publisher.pages["broken"] = "csms_bulletin_3de8a59.html"
    clock.advance(hours=1)
    await once(setup, clock)
    [alert] = [p for p in payloads(hooks, "everything") if p["data"].get("feed") == "csms"]
    csms = alert["data"]["entry"]["csms"]
    assert csms["number"] == "64913145"
    assert "9903.94.05" in csms["chapter99"]
    assert [p["data"]["entry"]["id"] for p in payloads(hooks, "parts")] == ["64913145"]


async def test_calendar_url_changes_a_rate_fails_and_serves_a_bad_key_without_withdrawing(
    setup: Path, clock: FakeClock, hooks: WebhookPeer, publisher: OfficialPublisher
) -> None:
    await once(setup, clock)  # baseline: the remote rule is known
    publisher.calendar = CALENDAR.format(rate="50%")
    clock.advance(hours=1)
    await once(setup, clock)
    [changed] = payloads(hooks, "parts")
    assert changed["type"] == "tariff.rule.changed"
    assert changed["data"]["changes"] == [{"field": "rate", "from": "25%", "to": "50%"}]

    publisher.calendar_status = 500
    clock.advance(hours=1)
    report = await once(setup, clock)
    url = f"{publisher.base}/calendar/us.toml"
    assert "HTTP 500" in report.sources.feed_errors[url]

    publisher.calendar_status = 200
    publisher.calendar = CALENDAR.format(rate="50%").replace("basis =", "bassis =")
    clock.advance(hours=1)
    report = await once(setup, clock)
    error = report.sources.feed_errors[url]
    assert url in error and "bassis" in error and "unknown key" in error
    # Neither the 500 nor the bad file withdrew the rule.
    assert [p["type"] for p in payloads(hooks, "parts")] == ["tariff.rule.changed"]


async def test_a_calendar_url_reviewed_long_ago_is_flagged_naming_the_url(
    setup: Path,
    clock: FakeClock,
    publisher: OfficialPublisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The clock says 2025-04-17: 2024-12-01 is 137 days before, 2025-04-01 only 16.
    publisher.calendar = "reviewed = 2024-12-01\n" + CALENDAR.format(rate="25%")
    with caplog.at_level(logging.WARNING, logger="notifier.runtime.calendar"):
        await once(setup, clock)
    url = f"{publisher.base}/calendar/us.toml"
    [warned] = [r for r in caplog.records if "last reviewed" in r.getMessage()]
    assert url in warned.getMessage() and "2024-12-01 (137 days ago)" in warned.getMessage()
    caplog.clear()
    publisher.calendar = "reviewed = 2025-04-01\n" + CALENDAR.format(rate="25%")
    clock.advance(hours=1)
    with caplog.at_level(logging.WARNING, logger="notifier.runtime.calendar"):
        await once(setup, clock)
    assert not [r for r in caplog.records if "last reviewed" in r.getMessage()]


async def test_a_one_rule_calendar_url_serving_an_empty_file_withdraws_nothing_until_released(
    setup: Path,
    clock: FakeClock,
    hooks: WebhookPeer,
    publisher: OfficialPublisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await once(setup, clock)  # baseline: the remote rule is known
    publisher.calendar = "# nothing here today\n"
    for _ in range(2):  # a later poll finds the same change: held once
        clock.advance(hours=1)
        report = await once(setup, clock)
    url = f"{publisher.base}/calendar/us.toml"
    assert url in report.sources.held
    assert payloads(hooks, "parts") == []
    [held] = payloads(hooks, "ops")
    assert held["type"] == "source.held"
    assert held["data"]["would_emit"] == {"tariff.rule.withdrawn": 1}
    assert sum("change held for review" in r.getMessage() for r in caplog.records) == 1

    async with Notifier(load_config(setup), clock=clock, parse_in_processes=False) as notifier:
        assert await Jobs(notifier).settle_held(url, release=True) is not None
    await once(setup, clock)  # sends what the release queued
    [withdrawn] = payloads(hooks, "parts")
    assert withdrawn["type"] == "tariff.rule.withdrawn"
    assert withdrawn["data"]["rule"]["id"] == "remote-parts"


async def test_a_calendar_url_rule_id_that_a_local_file_has_is_rejected_naming_both(
    write_config: WriteConfig, clock: FakeClock, hooks: WebhookPeer, publisher: OfficialPublisher
) -> None:
    secret = new_secret()
    for sub in [*SUBSCRIBERS, "ops"]:
        hooks.set_secret("/" + sub, secret)
    local = CALENDAR.format(rate="25%")  # the URL's rule id, in a local file too
    path = write_config(config_text(publisher, hooks, secret), calendar=local)
    report = await once(path, clock)
    url = f"{publisher.base}/calendar/us.toml"
    error = report.sources.feed_errors[url]
    assert "duplicate rule id 'remote-parts'" in error
    assert url in error and str(path.parent / "calendar" / "rules.toml") in error
    assert "rule[0].id" in error
    assert url not in report.sources.baselined


@pytest.mark.slow
async def test_under_run_every_official_source_kind_alerts_on_its_own_schedule(
    setup: Path, hooks: WebhookPeer, publisher: OfficialPublisher, daemons: list[Daemon]
) -> None:
    text = setup.read_text()  # noqa: ASYNC240 (a small file, before anything runs)
    for kind, every in (
        ("hts", "1s"),
        ("federal-register", "2s"),
        ("federal-register-inspection", "2s"),
        ("csms", "1s"),
    ):
        text = text.replace(f'kind = "{kind}"\n', f'kind = "{kind}"\nevery = "{every}"\n')
    text = text.replace("[calendar]\n", '[calendar]\nevery = "1s"\n')
    setup.write_text(text)  # noqa: ASYNC240
    copper = ("65794272", "GUIDANCE: Section 232 Import Duties on Copper", "3ec1e00")
    parts = ("64913145", "UPDATED GUIDANCE: Import Duties on Automobile Parts", "3de8a59")
    publisher.widget = widget(publisher.base, copper)
    daemon = await Daemon(setup).start()
    daemons.append(daemon)
    from tests.peers import wait_for

    for source in ("hts", "fr", "pi", "csms"):
        await wait_for(
            lambda s=source: f"source {s}: first poll" in daemon.log(),  # type: ignore[misc]
            timeout_s=30,
            what=f"{source} baseline",
        )
    await wait_for(
        lambda: publisher.count("/calendar/us.toml") >= 1, timeout_s=30, what="calendar baseline"
    )
    publisher.files["hts"] = "hts_v2.json"
    publisher.files["fr1"] = "fr_page1_corrected.json"
    publisher.files["pi"] = "pi_current_later.json"
    publisher.widget = widget(publisher.base, parts, copper)
    publisher.calendar = CALENDAR.format(rate="50%")

    def to(sub: str) -> list[dict[str, Any]]:
        return [json.loads(c.body) for c in hooks.calls_to("/" + sub)]

    def hts_kinds() -> list[str]:
        return sorted(p["type"] for p in to("parts") if p["type"].startswith("hts."))

    await wait_for(lambda: len(hts_kinds()) >= 2, timeout_s=30, what="the schedule change")
    assert hts_kinds() == ["hts.line.changed", "hts.line.removed"]

    def entry_ids(sub: str, feed: str) -> list[str]:
        return [
            p["data"]["entry"]["id"]
            for p in to(sub)
            if p["type"].startswith("feed.") and p["data"]["feed"] == feed
        ]

    # Each source on its own schedule: the Federal Register correction, the Public
    # Inspection filing, the CSMS bulletin (its page read) and the calendar URL's rate.
    await wait_for(
        lambda: "C1-2025-05930" in entry_ids("everything", "fr"),
        timeout_s=60,
        what="the correction under run",
    )
    await wait_for(
        lambda: entry_ids("parts", "pi") == ["2025-07410"], timeout_s=30, what="the filing"
    )
    await wait_for(
        lambda: entry_ids("parts", "csms") == ["64913145"], timeout_s=30, what="the bulletin"
    )
    [bulletin] = [p for p in to("parts") if p["data"].get("feed") == "csms"]
    assert "9903.94.05" in bulletin["data"]["entry"]["csms"]["chapter99"]
    await wait_for(
        lambda: any(p["type"] == "tariff.rule.changed" for p in to("parts")),
        timeout_s=30,
        what="the calendar URL's change",
    )
    [changed] = [p for p in to("parts") if p["type"] == "tariff.rule.changed"]
    assert changed["data"]["changes"] == [{"field": "rate", "from": "25%", "to": "50%"}]
    assert all(call.verified for call in hooks.calls)
    code, _ = await daemon.stop()
    assert code == 0
