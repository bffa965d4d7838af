"""Trust (issue 12), against a `tariff-notifier run` subprocess and real peers: source
health alerts reach operators once per episode, a mass change is held until an operator
releases or discards it, no command or log shows a secret, and the ledger's hashes are
those of the bytes the peers received."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import WriteConfig, new_secret
from tests.faults import (
    cli,
    deliveries,
    delivery_section,
    email_subscriber,
    feed_section,
    notifier_section,
    smtp_section,
    statuses,
    webhook_subscriber,
)
from tests.peers import wait_for
from tests.peers.daemon import Daemon, free_port
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import Reply, WebhookCall, WebhookPeer

pytestmark = pytest.mark.slow

OPERATOR = 'events = ["source.*"]\n'


async def until(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str, pause_s: float = 0.3
) -> None:
    """Await ``check()`` until true (a CLI subprocess or an HTTP read each time)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(pause_s)


async def healthz(port: int) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as resp,
    ):
        body: dict[str, Any] = await resp.json()
        return body


async def sources_json(config: Path) -> dict[str, dict[str, Any]]:
    code, out, err = await cli(config, "sources", "--json")
    assert code == 0, err
    return {row["id"]: row for row in json.loads(out)}


def types_at(hooks: WebhookPeer, path: str) -> list[str]:
    return [c.json["type"] for c in hooks.calls_to(path)]


async def polls_after(feeds: FeedServer, name: str, more: int, *, timeout_s: float = 30) -> None:
    """Wait until the feed was requested ``more`` further times (later polls happened)."""
    target = feeds.requests.get(name, 0) + more
    await wait_for(
        lambda: feeds.requests.get(name, 0) >= target, timeout_s=timeout_s, what=f"{more} polls"
    )


def items(prefix: str, count: int) -> list[FeedItem]:
    return [FeedItem(f"{prefix}{i:03d}", f"Notice {prefix} {i}") for i in range(count)]


# --- source health ------------------------------------------------------------------------


async def test_a_feed_down_for_a_while_alerts_operators_once_failing_once_recovered(
    write_config: WriteConfig, hooks: WebhookPeer, feeds: FeedServer, daemons: list[Daemon]
) -> None:
    secret = new_secret()
    for path in ("/ops", "/all"):
        hooks.set_secret(path, secret)
    feeds.feeds["news"] = items("s", 3)
    port = free_port()
    config = write_config(
        notifier_section(health_port=port)
        + delivery_section()
        + feed_section("news", feeds.url("news"), alert_after=2)
        + webhook_subscriber("ops", hooks.url("/ops"), secret, extra=OPERATOR)
        + webhook_subscriber("all", hooks.url("/all"), secret)
    )
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    await wait_for(lambda: feeds.requests.get("news", 0) >= 2, timeout_s=30, what="baseline")

    feeds.broken["news"] = 500
    down_at = time.monotonic()
    [failing] = await hooks.wait_for_count(1, path="/ops", timeout_s=30)
    failing_after_s = time.monotonic() - down_at
    assert failing.verified, failing.error
    assert failing.json["type"] == "source.failing"
    data = failing.json["data"]
    assert data["source"] == "news" and data["kind"] == "rss"
    assert data["failures"] == 2 and "500" in data["last_error"]
    assert data["since"] and data["detected_at"]
    # Down for a while: more failed polls than alert_after, still one alert.
    await polls_after(feeds, "news", 2)
    health = await healthz(port)
    assert health["status"] == "degraded", health
    assert health["sources"]["news"]["state"] == "failing"
    assert any("news" in reason for reason in health["reasons"])
    row = (await sources_json(config))["news"]
    assert row["state"] == "failing" and row["failures"] >= 3 and "500" in row["last_error"]
    assert types_at(hooks, "/ops") == ["source.failing"]

    del feeds.broken["news"]
    up_at = time.monotonic()
    await hooks.wait_for_count(2, path="/ops", timeout_s=30)
    recovered_after_s = time.monotonic() - up_at
    recovered = hooks.calls_to("/ops")[1]
    assert recovered.json["type"] == "source.recovered"
    assert recovered.json["data"]["source"] == "news"
    assert {"source", "kind", "since", "failures", "last_error", "detected_at"} <= set(
        recovered.json["data"]
    )

    async def healthy() -> bool:
        health = await healthz(port)
        return bool(health["status"] == "ok" and health["sources"]["news"]["state"] == "ok")

    await until(healthy, timeout_s=10, what="/healthz ok again")
    assert (await sources_json(config))["news"]["state"] == "ok"
    # A barrier: a new entry reaches the subscriber without `events`, and nothing else did.
    feeds.feeds["news"].insert(0, FeedItem("n1", "Tariff on steel raised"))
    [entry] = await hooks.wait_for_count(1, path="/all", timeout_s=30)
    await polls_after(feeds, "news", 2)
    code, _ = await daemon.stop()
    assert code == 0
    assert entry.json["type"] == "feed.entry.new"
    assert types_at(hooks, "/all") == ["feed.entry.new"]
    assert types_at(hooks, "/ops") == ["source.failing", "source.recovered"]
    print(
        f"\nFIGURE source-health: source.failing {failing_after_s:.1f} s after the feed went "
        f"down (alert_after 2, every 1s), source.recovered {recovered_after_s:.1f} s after "
        f"it came back; {feeds.requests['news']} polls; 1 failing + 1 recovered"
    )


# --- held changes -------------------------------------------------------------------------


def held_config(
    write_config: WriteConfig, hooks: WebhookPeer, feeds: FeedServer, secret: str
) -> Path:
    return write_config(
        notifier_section()
        + delivery_section()
        + feed_section("news", feeds.url("news"))
        + feed_section("big", feeds.url("big"))
        + webhook_subscriber("ops", hooks.url("/ops"), secret, extra=OPERATOR)
        + webhook_subscriber("all", hooks.url("/all"), secret)
    )


async def start_held(
    write_config: WriteConfig, hooks: WebhookPeer, feeds: FeedServer, daemons: list[Daemon]
) -> tuple[Path, Daemon]:
    """A daemon with a 40-entry feed (`news`) and a 100-entry one (`big`), baselined;
    then 30 new entries in `news`: more than max(25% of 70, 20), so the change is held."""
    secret = new_secret()
    for path in ("/ops", "/all"):
        hooks.set_secret(path, secret)
    feeds.feeds["news"] = items("old", 40)
    feeds.feeds["big"] = items("big", 100)
    config = held_config(write_config, hooks, feeds, secret)
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    for name in ("news", "big"):
        await wait_for(lambda n=name: feeds.requests.get(n, 0) >= 2, timeout_s=30, what="baseline")
    feeds.feeds["news"] = items("new", 30) + feeds.feeds["news"]
    [held] = await hooks.wait_for_count(1, path="/ops", timeout_s=30)
    assert held.verified, held.error
    assert held.json["type"] == "source.held"
    data = held.json["data"]
    assert data["source"] == "news"
    assert data["would_emit"] == {"feed.entry.new": 30}
    assert data["examples"] and all(e.startswith("feed.entry.new: ") for e in data["examples"])
    # The next polls find the same change: held once, nothing to subscribers.
    await polls_after(feeds, "news", 3)
    rows = await sources_json(config)
    assert rows["news"]["state"] == "held"
    assert rows["news"]["held"]["would_emit"] == {"feed.entry.new": 30}
    assert rows["big"]["state"] == "ok"  # a first baseline of 100 entries is never held
    assert types_at(hooks, "/ops") == ["source.held"]
    assert hooks.calls_to("/all") == []
    return config, daemon


def entry_ids(calls: list[WebhookCall]) -> Counter[str]:
    return Counter(c.json["data"]["entry"]["id"] for c in calls)


async def test_a_mass_change_is_held_once_and_released_by_the_operator(
    write_config: WriteConfig, hooks: WebhookPeer, feeds: FeedServer, daemons: list[Daemon]
) -> None:
    config, daemon = await start_held(write_config, hooks, feeds, daemons)
    detected_at = (await sources_json(config))["news"]["held"]["detected_at"]

    code, out, err = await cli(config, "sources", "release", "news")  # beside the daemon
    released_at = time.monotonic()
    assert code == 0, err
    assert "released 30 events" in out, out
    calls = await hooks.wait_for_count(30, path="/all", timeout_s=30)
    release_s = time.monotonic() - released_at
    assert entry_ids(calls) == Counter({f"new{i:03d}": 1 for i in range(30)})
    assert all(c.verified for c in calls)
    assert len({c.headers["webhook-id"] for c in calls}) == 30
    assert len({c.json["data"]["event_id"] for c in calls}) == 30
    # Each carries the detection time of the poll that found it, not of the release.
    assert {c.json["data"]["detected_at"] for c in calls} == {detected_at}

    await until(lambda: _state_is(config, "news", "ok"), timeout_s=10, what="news no longer held")
    feeds.feeds["news"].insert(0, FeedItem("later", "A later tariff notice"))
    await hooks.wait_for_count(31, path="/all", timeout_s=30)
    await polls_after(feeds, "news", 2)
    code, _ = await daemon.stop()
    assert code == 0
    assert entry_ids(hooks.calls_to("/all")) == Counter(
        {**{f"new{i:03d}": 1 for i in range(30)}, "later": 1}
    )
    assert types_at(hooks, "/ops") == ["source.held"]
    print(
        f"\nFIGURE held-release: 30 of 70 entries new -> held (limit 20); 1 source.held; "
        f"0 sent until release; all 30 arrived {release_s:.1f} s after `sources release`"
    )


async def _state_is(config: Path, source: str, state: str) -> bool:
    return bool((await sources_json(config))[source]["state"] == state)


async def test_a_discarded_mass_change_becomes_the_baseline_without_alerts(
    write_config: WriteConfig, hooks: WebhookPeer, feeds: FeedServer, daemons: list[Daemon]
) -> None:
    config, daemon = await start_held(write_config, hooks, feeds, daemons)

    code, out, err = await cli(config, "sources", "discard", "news")
    assert code == 0, err
    assert "discarded" in out
    code, _, err = await cli(config, "sources", "discard", "news")
    assert code == 1 and "holds no change" in err  # settled once
    await until(lambda: _state_is(config, "news", "ok"), timeout_s=10, what="baseline taken")
    await polls_after(feeds, "news", 2)
    assert hooks.calls_to("/all") == []

    feeds.feeds["news"].insert(0, FeedItem("later", "A later tariff notice"))
    [later] = await hooks.wait_for_count(1, path="/all", timeout_s=30)
    await polls_after(feeds, "news", 2)
    code, _ = await daemon.stop()
    assert code == 0
    assert later.json["data"]["entry"]["id"] == "later"
    assert len(hooks.calls_to("/all")) == 1
    assert types_at(hooks, "/ops") == ["source.held"]


# --- no secret anywhere -------------------------------------------------------------------

SLACK_TOKEN = "T0SECRETTEAM/B0SECRETBOT/xoxbSlackTokenNeverShown"
LITERAL_TOKEN = "T0LITERALTEAM/B0LITERALBOT/literalSlackTokenNeverShown"
SLACK_PARTS = ("SECRETTEAM", "xoxbSlackToken", "LITERALTEAM", "literalSlack", "/services/")


async def test_no_command_output_or_log_shows_a_secret(
    write_config: WriteConfig,
    hooks: WebhookPeer,
    feeds: FeedServer,
    daemons: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook_secret = new_secret()
    hooks.set_secret("/erp", hook_secret)
    closed = free_port()  # nothing listens here: the Slack posts fail, and say so
    slack_url = f"http://127.0.0.1:{closed}/services/{SLACK_TOKEN}"
    monkeypatch.setenv("SLACK_URL", slack_url)
    monkeypatch.setenv("HOOK_SECRET", hook_secret)
    feeds.feeds["news"] = items("s", 2)
    config = write_config(
        notifier_section()
        + delivery_section(("1s", "1s"), timeout="2s")
        + feed_section("news", feeds.url("news"))
        + webhook_subscriber("chat", "${SLACK_URL}", None, extra='format = "slack"\n')
        # A Slack URL written in the file itself: the URL is the secret all the same.
        + webhook_subscriber(
            "room",
            f"http://127.0.0.1:{closed}/services/{LITERAL_TOKEN}",
            None,
            extra='format = "slack"\n',
        )
        + webhook_subscriber("erp", hooks.url("/erp"), "${HOOK_SECRET}")
    )
    outputs: dict[str, str] = {}

    async def run(*args: str, ok: tuple[int, ...] = (0,)) -> None:
        code, out, err = await cli(config, *args)
        assert code in ok, (args, code, out, err)
        outputs[" ".join(args)] = out + err

    await run("check")
    await run("once")  # the baseline
    feeds.feeds["news"].insert(0, FeedItem("n1", "Tariff on steel raised"))
    await run("once")  # one alert each: the webhook sent, the Slack post refused
    await hooks.wait_for_count(1, path="/erp")
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    feeds.feeds["news"].insert(0, FeedItem("n2", "Tariff on aluminium raised"))
    await hooks.wait_for_count(2, path="/erp", timeout_s=30)

    async def slack_tried() -> bool:
        return any(
            d["subscriber"] == "chat" and d["attempts"] >= 2 for d in await deliveries(config)
        )

    await until(slack_tried, timeout_s=30, what="Slack retried by the daemon")
    await run("deliveries", "--json")
    await run("deliveries")
    await run("deliveries", "export", "--format", "jsonl")
    await run("deliveries", "export", "--format", "csv")
    await run("sources", "--json")
    await run("sources")
    await run("send-test", "chat", ok=(1,))
    await run("send-test", "room", ok=(1,))
    await run("send-test", "erp")
    for item in await deliveries(config):
        await run("deliveries", "show", item["id"])
    await run("--log-format", "json", "send-test", "chat", ok=(1,))
    code, _ = await daemon.stop()
    assert code == 0
    outputs["run (log)"] = daemon.log()
    await run("--log-format", "json", "--log-level", "debug", "once")  # SQL statements too

    code, out, err = await cli(config, "deliveries", "--json")
    assert code == 0, err
    shown = {d["target"] for d in json.loads(out) if d["subscriber"] in ("chat", "room")}
    assert shown == {f"http://127.0.0.1:{closed}/…"}  # shown, masked
    assert (
        "refused" in outputs["send-test chat"].lower()
        or "connect" in outputs["send-test chat"].lower()
    ), outputs["send-test chat"]
    leaks = {
        name: [s for s in (*SLACK_PARTS, hook_secret) if s in text]
        for name, text in outputs.items()
    }
    assert {name: found for name, found in leaks.items() if found} == {}
    print(f"\nFIGURE secrets: 0 leaks in {len(outputs)} distinct command outputs and logs")


# --- the ledger ---------------------------------------------------------------------------


async def test_the_ledger_lists_every_attempt_with_the_hash_of_the_bytes_received(
    write_config: WriteConfig,
    hooks: WebhookPeer,
    smtp: SmtpPeer,
    feeds: FeedServer,
    daemons: list[Daemon],
) -> None:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    hooks.script("/erp", Reply(503), Reply(503))  # each first attempt is retried
    feeds.feeds["news"] = items("s", 2)
    config = write_config(
        notifier_section()
        + smtp_section(smtp.port)
        + delivery_section(("1s", "1s"))
        + feed_section("news", feeds.url("news"))
        + webhook_subscriber("erp", hooks.url("/erp"), secret)
        + email_subscriber("desk", "desk@example.com", "broker@example.com")
    )
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    await wait_for(lambda: feeds.requests.get("news", 0) >= 2, timeout_s=30, what="baseline")
    feeds.feeds["news"][:0] = [
        FeedItem("n1", "Tariff on steel raised", description=".leading dot\nline two"),
        FeedItem("n2", "Zölle auf Autoteile"),
    ]
    expected = 2 * 3  # two entries to one webhook and two addresses

    async def settled() -> bool:
        found = await deliveries(config)
        return len(found) == expected and statuses(found) == {"sent": expected}

    await until(settled, timeout_s=30, what="every delivery sent")
    code, _ = await daemon.stop()
    assert code == 0

    code, out, err = await cli(config, "deliveries", "export", "--format", "jsonl")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    code, out, err = await cli(config, "deliveries", "export", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(lines) == len(rows) == expected + 2  # the two retried webhooks: two lines each
    assert [r["sha256"] for r in rows] == [line["sha256"] for line in lines]
    assert [r["delivery_id"] for r in rows] == [line["delivery_id"] for line in lines]

    webhook_lines = [line for line in lines if line["channel"] == "webhook"]
    per_delivery = Counter(line["delivery_id"] for line in webhook_lines)
    assert sorted(per_delivery.values()) == [2, 2]
    by_id: dict[str, list[WebhookCall]] = {}
    for call in hooks.calls_to("/erp"):
        by_id.setdefault(call.headers["webhook-id"], []).append(call)
    for delivery_id, calls in by_id.items():
        attempts = sorted(
            (line for line in webhook_lines if line["delivery_id"] == delivery_id),
            key=lambda line: line["attempt"],
        )
        assert [a["outcome"] for a in attempts] == ["retry", "sent"]
        # Attempt n's hash is that of the n-th body the receiver got for this delivery.
        assert [a["sha256"] for a in attempts] == [
            hashlib.sha256(c.body).hexdigest() for c in calls
        ]
    email_lines = [line for line in lines if line["channel"] == "email"]
    assert len(email_lines) == 4 and all(line["attempt"] == 1 for line in email_lines)
    received = {hashlib.sha256(m.data).hexdigest() for m in smtp.messages}
    assert len(smtp.messages) == 4
    assert {line["sha256"] for line in email_lines} == received
    for line in lines:
        assert line["target"] in ("desk@example.com", "broker@example.com", hooks.url("/erp"))
        assert line["event_type"] == "feed.entry.new" and line["event_id"]

    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    code, out, err = await cli(config, "deliveries", "export", "--since", tomorrow)
    assert code == 0, err
    assert list(csv.DictReader(io.StringIO(out))) == []
    yesterday = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    code, out, err = await cli(
        config, "deliveries", "export", "--since", yesterday, "--format", "jsonl"
    )
    assert code == 0, err
    assert len(out.splitlines()) == expected + 2
    print(
        f"\nFIGURE ledger: {len(lines)} attempts for {expected} deliveries (2 retried); "
        "every sha256 equal to the SHA-256 of the bytes the peer received"
    )
