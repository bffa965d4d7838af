"""The official sources end to end, through the real jobs (`once`) and `run`: a local
publisher serves the Federal Register API, GovDelivery's CSMS widget and bulletin pages,
the USITC HTS export and a calendar file over HTTP, in the shapes of
tests/data/sources/README.md; subscribers are webhook receivers that verify every
Standard Webhooks signature.
"""

from __future__ import annotations

import json
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
    assert {"fr", "csms", "hts", "calendar"} <= set(report.sources.baselined)
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


@pytest.mark.slow
async def test_under_run_an_hts_change_arrives(
    setup: Path, hooks: WebhookPeer, publisher: OfficialPublisher, daemons: list[Daemon]
) -> None:
    text = setup.read_text()  # noqa: ASYNC240 (a small file, before anything runs)
    text = text.replace('kind = "hts"\n', 'kind = "hts"\nevery = "1s"\n')
    text = text.replace('kind = "federal-register"\n', 'kind = "federal-register"\nevery = "2s"\n')
    setup.write_text(text)  # noqa: ASYNC240
    daemon = await Daemon(setup).start()
    daemons.append(daemon)
    from tests.peers import wait_for

    await wait_for(
        lambda: "source hts: first poll" in daemon.log(), timeout_s=30, what="hts baseline"
    )
    await wait_for(
        lambda: "source fr: first poll" in daemon.log(), timeout_s=30, what="fr baseline"
    )
    publisher.files["hts"] = "hts_v2.json"
    publisher.files["fr1"] = "fr_page1_corrected.json"

    def hts_kinds() -> list[str]:
        kinds = (json.loads(c.body)["type"] for c in hooks.calls_to("/parts"))
        return sorted(kind for kind in kinds if kind.startswith("hts."))

    await wait_for(lambda: len(hts_kinds()) >= 2, timeout_s=30, what="the schedule change")
    assert hts_kinds() == ["hts.line.changed", "hts.line.removed"]
    # The Federal Register correction, polled on the source's own schedule.
    await wait_for(
        lambda: any(
            json.loads(c.body)["data"].get("entry", {}).get("id") == "C1-2025-05930"
            for c in hooks.calls_to("/everything")
        ),
        timeout_s=60,
        what="the correction under run",
    )
    code, _ = await daemon.stop()
    assert code == 0
