"""`tariff-notifier run` as a subprocess against real peers, driven with signals.

Calendar instants are a few seconds in the future in real time; every wait is on a
condition with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tests.conftest import WriteConfig, new_secret
from tests.peers import wait_for
from tests.peers.daemon import Daemon, free_port
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.webhook import Reply, WebhookPeer

pytestmark = pytest.mark.slow


def rule(rule_id: str, at: datetime, *, rate: str = "25%") -> str:
    return f"""
[[rule]]
id = "{rule_id}"
title = "Rule {rule_id}"
origins = ["JP"]
hts = ["8708"]
rate = "{rate}"
effective = {at.isoformat(timespec="milliseconds")}
source = "https://www.federalregister.gov/d/2025-05930"
"""


def daemon_config(
    hooks: WebhookPeer, secret: str, *, state: str, extra: str = "", health: int = 0
) -> str:
    health_line = f'health = "127.0.0.1:{health}"' if health else ""
    return f"""
[notifier]
state = "{state}"
timezone = "America/New_York"
{health_line}

[delivery]
backoff = ["1s", "1s", "1s"]
timeout = "3s"
concurrency = 5

[[subscriber]]
id = "erp"
webhook = "{hooks.url("/erp")}"
secret = "{secret}"
{extra}
"""


@pytest.fixture
def secret(hooks: WebhookPeer) -> str:
    value = new_secret()
    hooks.set_secret("/erp", value)
    return value


async def test_effective_alert_on_time_then_missed_one_is_late_after_restart(
    write_config: WriteConfig,
    hooks: WebhookPeer,
    secret: str,
    daemons: list[Daemon],
    state_url: str,
) -> None:
    # The instants are set once the daemon is up (by a reload), so a slow start on a
    # loaded machine cannot put them before its baseline.
    later = datetime.now(UTC) + timedelta(days=30)
    only_effective = 'events = ["tariff.rule.effective"]'
    config = daemon_config(hooks, secret, state=state_url, extra=only_effective)
    path = write_config(config, calendar=rule("first", later) + rule("second", later))
    daemon = await Daemon(path).start()
    daemons.append(daemon)
    now = datetime.now(UTC)
    first_at, second_at = now + timedelta(seconds=10), now + timedelta(seconds=19)
    write_config(config, calendar=rule("first", first_at) + rule("second", second_at))
    daemon.signal(signal.SIGHUP)
    await wait_for(lambda: "reloaded" in daemon.log(), timeout_s=10, what="reload")
    assert datetime.now(UTC) < first_at, "the reload took longer than the test's margin"
    [call] = await hooks.wait_for_count(1, path="/erp", timeout_s=25)
    assert call.verified
    assert call.json["type"] == "tariff.rule.effective"
    assert call.json["data"]["rule"]["id"] == "first"
    assert call.json["data"]["late"] is False
    assert call.received_at >= first_at.timestamp()
    code, took = await daemon.stop()
    assert code == 0 and took < 10
    # "second" passes while the daemon is down.
    await wait_for(lambda: datetime.now(UTC) > second_at, timeout_s=15, what="second instant")
    daemons.append(await Daemon(path).start())
    calls = await hooks.wait_for_count(2, path="/erp", timeout_s=15)
    second = calls[1].json
    assert second["data"]["rule"]["id"] == "second" and second["data"]["late"] is True
    # Give a repeat every chance to show up: another calendar sweep via SIGHUP.
    daemons[-1].signal(signal.SIGHUP)
    await wait_for(lambda: "reloaded" in daemons[-1].log(), timeout_s=10, what="reload")
    await daemons[-1].stop()
    ids = [c.json["data"]["event_id"] for c in hooks.calls_to("/erp")]
    assert len(ids) == len(set(ids)) == 2


async def test_sighup_reloads_calendar_and_rejects_a_broken_config(
    write_config: WriteConfig,
    hooks: WebhookPeer,
    secret: str,
    daemons: list[Daemon],
    state_url: str,
) -> None:
    later = datetime.now(UTC) + timedelta(days=30)
    path = write_config(daemon_config(hooks, secret, state=state_url), calendar=rule("base", later))
    daemon = await Daemon(path).start()
    daemons.append(daemon)

    # An edited calendar: a new rule and a changed one.
    write_config(
        daemon_config(hooks, secret, state=state_url),
        calendar=rule("base", later, rate="50%") + rule("added", later),
    )
    daemon.signal(signal.SIGHUP)
    calls = await hooks.wait_for_count(2, path="/erp", timeout_s=15)
    kinds = sorted(c.json["type"] for c in calls)
    assert kinds == ["tariff.rule.announced", "tariff.rule.changed"]
    changed = next(c.json for c in calls if c.json["type"] == "tariff.rule.changed")
    assert changed["data"]["changes"] == [{"field": "rate", "from": "25%", "to": "50%"}]

    # A broken config is rejected and the old one keeps running (its jobs still fire).
    soon = datetime.now(UTC) + timedelta(seconds=4)
    write_config(
        daemon_config(hooks, secret, state=state_url).replace('timeout = "3s"', 'timeout = "soon"'),
        calendar=rule("base", later, rate="50%") + rule("added", later) + rule("soon", soon),
    )
    daemon.signal(signal.SIGHUP)
    await wait_for(lambda: "reload rejected" in daemon.log(), timeout_s=10, what="rejection")
    assert "delivery.timeout" in daemon.log()
    assert daemon.proc is not None and daemon.proc.returncode is None
    # The old calendar is still in force: "soon" is unknown to it, nothing more arrives,
    # and the daemon still answers a stop cleanly.
    code, _ = await daemon.stop()
    assert code == 0
    assert len(hooks.calls_to("/erp")) == 2


async def test_sigterm_during_a_burst_exits_in_time_and_the_rest_arrives_after_restart(
    write_config: WriteConfig,
    hooks: WebhookPeer,
    secret: str,
    feeds: FeedServer,
    daemons: list[Daemon],
    state_url: str,
) -> None:
    feeds.feeds["burst"] = [FeedItem("seed", "Seed entry")]
    feed = (
        f'\n[[feed]]\nid = "burst"\nurl = "{feeds.url("burst")}"\nevery = "1s"\n'
        "max_changes = 100000  # a burst on purpose, not a held mass change\n"
    )
    path = write_config(daemon_config(hooks, secret, state=state_url, extra=feed))
    # [[feed]] must come before [[subscriber]] tables only by TOML's rules for arrays: any
    # order works, so it is appended after the subscriber.
    daemon = await Daemon(path).start()
    daemons.append(daemon)
    await wait_for(lambda: feeds.requests.get("burst", 0) >= 1, timeout_s=15, what="baseline")
    await wait_for(
        lambda: "baseline" in daemon.log() or feeds.requests["burst"] >= 2,
        timeout_s=15,
        what="second poll",
    )
    # Slow receiver: each answer takes 0.5 s, 5 in flight -> 30 entries need ~3 s.
    hooks.default = Reply(204, hang_s=0.5)
    feeds.feeds["burst"] += [FeedItem(f"e{i}", f"Entry {i} on tariffs") for i in range(30)]
    await hooks.wait_for_count(3, path="/erp", timeout_s=15)
    code, took = await daemon.stop()
    assert code == 0 and took < 10
    delivered_before = {c.headers["webhook-id"] for c in hooks.calls_to("/erp")}
    assert len(delivered_before) < 30  # the stop really interrupted the burst
    hooks.default = Reply(204)
    daemons.append(await Daemon(path).start())
    await wait_for(
        lambda: len({c.headers["webhook-id"] for c in hooks.calls_to("/erp")}) >= 30,
        timeout_s=20,
        what="all 30 deliveries",
    )
    await daemons[-1].stop()
    calls = hooks.calls_to("/erp")
    assert len({c.headers["webhook-id"] for c in calls}) == 30
    entry_ids = {c.json["data"]["entry"]["id"] for c in calls}
    assert entry_ids == {f"e{i}" for i in range(30)}
    assert all(c.verified for c in calls)


async def test_health_and_metrics_answer(
    write_config: WriteConfig,
    hooks: WebhookPeer,
    secret: str,
    feeds: FeedServer,
    daemons: list[Daemon],
    state_url: str,
) -> None:
    port = free_port()
    feeds.broken["down"] = 503
    feed = f'\n[[feed]]\nid = "down"\nurl = "{feeds.url("down")}"\nevery = "1m"\n'
    path = write_config(daemon_config(hooks, secret, state=state_url, extra=feed, health=port))
    daemon = await Daemon(path).start()
    daemons.append(daemon)
    await wait_for(lambda: feeds.requests.get("down", 0) >= 1, timeout_s=15, what="poll")
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 10
        while True:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                health = await resp.json()
            if health["failing_feeds"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert health["up"] is True
        assert health["failing_feeds"] == ["down"]
        assert health["feeds"]["down"]["failures"] >= 1
        assert health["queue_depth"] == 0
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            metrics = await resp.text()
    assert 'notifier_polls_total{feed="down",outcome="error"}' in metrics
    assert "notifier_queue_depth" in metrics
    code, _ = await daemon.stop()
    assert code == 0
    assert json.dumps(health)  # serialisable as served
