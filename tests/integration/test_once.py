"""`once` end to end against real peers: a feed server, aiosmtpd, a verifying receiver.

Time is an injectable clock: retries are driven by moving it, not by waiting.
"""

from __future__ import annotations

import email.policy
import json
from email import message_from_bytes
from pathlib import Path

import pytest

from notifier.config import load_config
from notifier.runtime.jobs import Jobs, OnceReport
from notifier.runtime.runtime import Notifier
from tests.conftest import FakeClock, WriteConfig, new_secret
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import WebhookPeer

RULES = """
[[rule]]
id = "us-232-auto-parts"
title = "Section 232 tariff on automobile parts"
origins = ["*"]
hts = ["8708"]
rate = "25%"
effective = 2025-05-03T00:01:00-04:00
basis = "Section 232"
source = "https://www.federalregister.gov/d/2025-05930"

[[rule]]
id = "us-ieepa-jp-24"
title = "Japan reciprocal rate"
origins = ["JP"]
hts = ["*"]
rate = "24%"
effective = 2025-04-09T00:01:00-04:00
"""


def config_text(
    *,
    smtp: SmtpPeer,
    hooks: WebhookPeer,
    feeds: FeedServer,
    secret: str,
    extra: str = "",
    state: str = "sqlite:///state/n.db",
) -> str:
    return f"""
[notifier]
state = "{state}"
timezone = "America/New_York"
public_url = "https://alerts.example.com"

[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "none"
sender = "Tariff Alerts <alerts@example.com>"

[delivery]
backoff = ["10s", "1m"]
timeout = "3s"

[[feed]]
id = "news"
url = "{feeds.url("news")}"
every = "15m"

[[subscriber]]
id = "jp-autos"
email = ["trade@example.com"]
origins = ["JP"]
hts = ["8708", "8703"]

[[subscriber]]
id = "erp"
webhook = "{hooks.url("/erp")}"
secret = "{secret}"

[[subscriber]]
id = "china-desk"
email = ["cn@example.com"]
origins = ["CN"]
keywords = ["tariff"]
{extra}
"""


@pytest.fixture
def secret(hooks: WebhookPeer) -> str:
    value = new_secret()
    hooks.set_secret("/erp", value)
    return value


@pytest.fixture
def setup(
    write_config: WriteConfig,
    smtp: SmtpPeer,
    hooks: WebhookPeer,
    feeds: FeedServer,
    secret: str,
    state_url: str,
) -> Path:
    feeds.feeds["news"] = [
        FeedItem("a1", "Commerce opens Section 232 inclusions process"),
        FeedItem("a2", "USTR statement on trade talks"),
    ]
    return write_config(
        config_text(smtp=smtp, hooks=hooks, feeds=feeds, secret=secret, state=state_url),
        calendar=RULES,
    )


async def once(path: Path, clock: FakeClock) -> OnceReport:
    async with Notifier(load_config(path), clock=clock, parse_in_processes=False) as app:
        return await Jobs(app).run_once()


async def test_first_pass_is_a_silent_baseline(
    setup: Path, clock: FakeClock, smtp: SmtpPeer, hooks: WebhookPeer
) -> None:
    report = await once(setup, clock)
    assert report.sources.events == []
    assert sorted(report.sources.baselined) == ["calendar", "news"]
    assert report.delivery.sent == 0
    assert smtp.messages == [] and hooks.calls == []


async def test_a_feed_that_fails_its_first_polls_is_still_baselined_silently(
    setup: Path, clock: FakeClock, feeds: FeedServer, hooks: WebhookPeer
) -> None:
    feeds.broken["news"] = 503
    report = await once(setup, clock)
    assert report.sources.feed_errors and "news" not in report.sources.baselined
    del feeds.broken["news"]
    clock.advance(minutes=15)
    report = await once(setup, clock)
    assert report.sources.baselined == ["news"] and report.sources.events == []
    feeds.feeds["news"].append(FeedItem("a3", "Tariff on Japanese auto parts"))
    clock.advance(minutes=15)
    report = await once(setup, clock)
    assert [e.data["entry"]["id"] for e in report.sources.events] == ["a3"]


async def test_new_and_updated_entries_reach_matching_subscribers(
    setup: Path, clock: FakeClock, smtp: SmtpPeer, hooks: WebhookPeer, feeds: FeedServer
) -> None:
    await once(setup, clock)
    feeds.feeds["news"][1] = FeedItem("a2", "USTR statement on U.S.-Japan trade talks")
    feeds.feeds["news"].append(
        FeedItem(
            "a3",
            "Japan braces as 25% tariff on auto parts starts May 3",
            "Japanese automakers expect the duty on auto parts to bite.",
        )
    )
    clock.advance(minutes=15)
    report = await once(setup, clock)
    kinds = sorted(e.type for e in report.sources.events)
    assert kinds == ["feed.entry.new", "feed.entry.updated"]

    calls = await hooks.wait_for_count(2, path="/erp")
    assert all(c.verified for c in calls), [c.error for c in calls]
    by_type = {c.json["type"]: c.json for c in calls}
    new = by_type["feed.entry.new"]["data"]
    assert new["feed"] == "news" and new["entry"]["id"] == "a3"
    assert "JP" in new["tags"]["origins"] and "8708" in new["tags"]["hts"]
    updated = by_type["feed.entry.updated"]["data"]
    assert updated["changes"][0]["field"] == "title"
    assert updated["changes"][0]["from"] == "USTR statement on trade talks"

    # jp-autos wants JP + 8708/8703: only the auto-parts story; china-desk: nothing.
    [mail] = await smtp.wait_for_count(1)
    assert mail.rcpt_tos == ("trade@example.com",)
    assert "auto parts" in mail.message["Subject"].lower()
    assert mail.message["List-Unsubscribe"].startswith("<https://alerts.example.com/")
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert smtp.messages_to("cn@example.com") == []


async def test_a_pass_with_no_change_sends_nothing(
    setup: Path, clock: FakeClock, smtp: SmtpPeer, hooks: WebhookPeer, feeds: FeedServer
) -> None:
    await once(setup, clock)
    clock.advance(minutes=15)
    report = await once(setup, clock)
    assert report.sources.events == [] and report.sources.deliveries == 0
    assert report.sources.feeds_unchanged == 1
    assert feeds.not_modified.get("news") == 1  # the conditional GET was answered 304
    assert smtp.messages == [] and hooks.calls == []


async def test_calendar_edits_announce_change_and_withdraw(
    setup: Path,
    clock: FakeClock,
    hooks: WebhookPeer,
    write_config: WriteConfig,
    smtp: SmtpPeer,
    feeds: FeedServer,
    secret: str,
    state_url: str,
) -> None:
    await once(setup, clock)
    edited = RULES.replace('rate = "25%"', 'rate = "50%"').replace(
        'id = "us-ieepa-jp-24"', 'id = "us-ieepa-jp-15"'
    )
    write_config(
        config_text(smtp=smtp, hooks=hooks, feeds=feeds, secret=secret, state=state_url),
        calendar=edited,
    )
    clock.advance(minutes=1)
    report = await once(setup, clock)
    assert sorted(e.type for e in report.sources.events) == [
        "tariff.rule.announced",
        "tariff.rule.changed",
        "tariff.rule.withdrawn",
    ]
    calls = await hooks.wait_for_count(3, path="/erp")
    payloads = {c.json["type"]: c.json["data"] for c in calls}
    assert payloads["tariff.rule.changed"]["changes"] == [
        {"field": "rate", "from": "25%", "to": "50%"}
    ]
    assert payloads["tariff.rule.withdrawn"]["rule"]["id"] == "us-ieepa-jp-24"
    assert payloads["tariff.rule.announced"]["rule"]["id"] == "us-ieepa-jp-15"
    # The same calendar again: nothing new.
    clock.advance(minutes=1)
    assert (await once(setup, clock)).sources.events == []


async def test_effective_transition_fires_once_on_time_then_late_after_downtime(
    setup: Path, clock: FakeClock, hooks: WebhookPeer, smtp: SmtpPeer
) -> None:
    await once(setup, clock)  # 2025-04-17: baseline; both rules still in the future? no:
    # jp-24 took effect 2025-04-09, before the baseline: never alerted.
    from datetime import datetime

    clock.now = datetime.fromisoformat("2025-05-03T00:01:00.400-04:00")
    report = await once(setup, clock)
    types = [e.type for e in report.sources.events]
    assert types == ["tariff.rule.reminder", "tariff.rule.reminder", "tariff.rule.effective"]
    effective = next(e for e in report.sources.events if e.type == "tariff.rule.effective")
    assert effective.data["late"] is False
    late_reminders = [e.data["late"] for e in report.sources.events[:2]]
    assert late_reminders == [True, True]  # missed while "down" between passes
    calls = await hooks.wait_for_count(3, path="/erp")
    assert {c.json["data"]["rule"]["id"] for c in calls} == {"us-232-auto-parts"}
    # jp-autos matches the "*"-origin rule through its hts filter; china-desk too (origins *).
    await smtp.wait_for_count(6)
    clock.advance(hours=1)
    assert (await once(setup, clock)).sources.events == []


async def test_webhook_500_twice_then_204_arrives_once_with_one_id(
    setup: Path, clock: FakeClock, hooks: WebhookPeer, feeds: FeedServer
) -> None:
    await once(setup, clock)
    hooks.script("/erp", 500, 500, 204)
    feeds.feeds["news"].append(FeedItem("a3", "New tariff notice"))
    first = await once(setup, clock)
    assert first.delivery.retry == 1
    clock.advance(seconds=11)
    second = await once(setup, clock)
    assert second.delivery.retry == 1
    clock.advance(minutes=2)
    third = await once(setup, clock)
    assert third.delivery.sent == 1
    calls = hooks.calls_to("/erp")
    assert [c.verified for c in calls] == [True, True, True]
    assert len({c.headers["webhook-id"] for c in calls}) == 1
    assert len({c.headers["webhook-timestamp"] for c in calls}) >= 1
    clock.advance(hours=1)
    await once(setup, clock)
    assert len(hooks.calls_to("/erp")) == 3  # delivered once, never again


async def test_smtp_451_is_retried_then_accepted(
    setup: Path, clock: FakeClock, smtp: SmtpPeer, feeds: FeedServer
) -> None:
    await once(setup, clock)
    smtp.fail_rcpt("trade@example.com", "451 4.3.0 try again later", times=1)
    feeds.feeds["news"].append(FeedItem("a3", "Tariff on Japanese auto parts confirmed"))
    first = await once(setup, clock)
    assert first.delivery.retry == 1 and smtp.messages == []
    clock.advance(seconds=11)
    second = await once(setup, clock)
    assert second.delivery.sent >= 1
    [mail] = smtp.messages_to("trade@example.com")
    assert mail.message["Message-ID"].startswith("<dlv_")


async def test_dead_endpoint_ends_dead_and_others_are_delivered(
    write_config: WriteConfig,
    smtp: SmtpPeer,
    hooks: WebhookPeer,
    feeds: FeedServer,
    secret: str,
    clock: FakeClock,
    state_url: str,
) -> None:
    hooks.set_secret("/dead", secret)
    feeds.feeds["news"] = [FeedItem("a1", "Old news")]
    extra = f"""
[[subscriber]]
id = "broken"
webhook = "{hooks.url("/dead")}"
secret = "{secret}"
"""
    path = write_config(
        config_text(
            smtp=smtp, hooks=hooks, feeds=feeds, secret=secret, extra=extra, state=state_url
        ),
        calendar=RULES,
    )
    hooks.script("/dead", 500, 500, 500, 500)
    await once(path, clock)
    feeds.feeds["news"].append(FeedItem("a2", "A new tariff notice"))
    for _ in range(3):
        await once(path, clock)
        clock.advance(minutes=5)
    assert len(hooks.calls_to("/dead")) == 3  # 1 try + 2 retries (backoff has 2 waits)
    assert len(hooks.calls_to("/erp")) == 1
    async with Notifier(load_config(path), clock=clock, parse_in_processes=False) as app:
        dead = await app.store.list_deliveries(status="dead")
        sent = await app.store.list_deliveries(status="sent")
    assert [d.subscriber_id for d, _ in dead] == ["broken"]
    assert "erp" in [d.subscriber_id for d, _ in sent]


async def test_feed_markup_is_escaped_in_html_email(
    setup: Path, clock: FakeClock, smtp: SmtpPeer, feeds: FeedServer
) -> None:
    await once(setup, clock)
    feeds.feeds["news"].append(
        FeedItem(
            "x1",
            "<script>alert(1)</script> Japan auto parts tariff: rates < 25% & up",
            "<img src=x onerror=alert(2)> Japanese auto parts face 25%",
        )
    )
    await once(setup, clock)
    [mail] = await smtp.wait_for_count(1)
    parsed = message_from_bytes(mail.data, policy=email.policy.default)
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    # Markup from the feed never becomes markup in the email: tags are reduced to
    # text at parse time and every remaining character is escaped by the template.
    assert "<script" not in html and "<img" not in html
    assert "rates &lt; 25% &amp; up" in html
    assert "\r" not in mail.message["Subject"] and "\n" not in mail.message["Subject"]


async def test_broken_feed_is_recorded_and_others_still_polled(
    write_config: WriteConfig,
    smtp: SmtpPeer,
    hooks: WebhookPeer,
    feeds: FeedServer,
    secret: str,
    clock: FakeClock,
    state_url: str,
) -> None:
    feeds.feeds["news"] = [FeedItem("a1", "Old news")]
    feeds.raw["junk"] = b"\x00\xffnot a feed at all" * 50
    extra_feed = f'\n[[feed]]\nid = "junk"\nurl = "{feeds.url("junk")}"\n'
    text = config_text(smtp=smtp, hooks=hooks, feeds=feeds, secret=secret, state=state_url).replace(
        "[[subscriber]]", extra_feed + "\n[[subscriber]]", 1
    )
    path = write_config(text, calendar=RULES)
    await once(path, clock)
    feeds.feeds["news"].append(FeedItem("a2", "A new tariff notice"))
    report = await once(path, clock)
    assert "junk" in report.sources.feed_errors
    assert [e.type for e in report.sources.events] == ["feed.entry.new"]
    await hooks.wait_for_count(1, path="/erp")
    body = json.loads(hooks.calls_to("/erp")[0].body)
    assert body["data"]["entry"]["title"] == "A new tariff notice"


async def test_one_click_unsubscribe_stops_that_address_only(
    setup: Path, clock: FakeClock, smtp: SmtpPeer, hooks: WebhookPeer, feeds: FeedServer
) -> None:
    import aiohttp

    from notifier.delivery.unsubscribe import apply_unsubscribe
    from notifier.runtime.health import HealthServer
    from notifier.runtime.metrics import Metrics

    await once(setup, clock)
    feeds.feeds["news"].append(FeedItem("u1", "Japan auto parts tariff notice"))
    await once(setup, clock)
    [mail] = await smtp.wait_for_count(1)
    link = mail.message["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://alerts.example.com/unsubscribe/jp-autos/")

    config = load_config(setup)
    async with Notifier(config, clock=clock, parse_in_processes=False) as app:

        async def unsubscribe(subscriber: str, token: str) -> str | None:
            return await apply_unsubscribe(config, app.store, subscriber, token, now=clock())

        async def status() -> dict[str, object]:
            return {"up": True}

        server = HealthServer(
            host="127.0.0.1", port=0, metrics=Metrics(), status=status, unsubscribe=unsubscribe
        )
        await server.start()
        local = link.replace("https://alerts.example.com", f"http://127.0.0.1:{server.port}")
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(local) as page:
                    assert page.status == 200 and "<form" in await page.text()
                forged = local[:-4] + "0000"
                async with session.post(forged, allow_redirects=False) as bad:
                    assert bad.status == 404
                # RFC 8058: the one-click POST body, no cookies, answered without redirect.
                async with session.post(
                    local, data="List-Unsubscribe=One-Click", allow_redirects=False
                ) as done:
                    assert done.status == 200
        finally:
            await server.stop()

    feeds.feeds["news"].append(FeedItem("u2", "Second Japan auto parts tariff notice"))
    clock.advance(minutes=1)
    report = await once(setup, clock)
    assert [e.type for e in report.sources.events] == ["feed.entry.new"]
    assert len(smtp.messages_to("trade@example.com")) == 1  # nothing after unsubscribing
    await hooks.wait_for_count(2, path="/erp")  # the webhook subscriber still gets both


async def test_410_gone_stops_an_endpoint_until_its_config_changes(
    setup: Path,
    clock: FakeClock,
    hooks: WebhookPeer,
    feeds: FeedServer,
    smtp: SmtpPeer,
    write_config: WriteConfig,
    state_url: str,
) -> None:
    await once(setup, clock)
    hooks.script("/erp", 410)
    feeds.feeds["news"].append(FeedItem("g1", "First tariff notice"))
    first = await once(setup, clock)
    assert first.delivery.failed == 1
    feeds.feeds["news"].append(FeedItem("g2", "Second tariff notice"))
    clock.advance(minutes=1)
    second = await once(setup, clock)
    assert [e.type for e in second.sources.events] == ["feed.entry.new"]
    assert len(hooks.calls_to("/erp")) == 1  # nothing after the 410
    # The subscriber's entry changes (a new secret): deliveries resume.
    fresh = new_secret()
    hooks.set_secret("/erp", fresh)
    write_config(
        config_text(smtp=smtp, hooks=hooks, feeds=feeds, secret=fresh, state=state_url),
        calendar=RULES,
    )
    feeds.feeds["news"].append(FeedItem("g3", "Third tariff notice"))
    clock.advance(minutes=1)
    await once(setup, clock)
    calls = hooks.calls_to("/erp")
    assert len(calls) == 2 and calls[-1].verified
    assert calls[-1].json["data"]["entry"]["id"] == "g3"
