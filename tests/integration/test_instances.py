"""Several `tariff-notifier run` instances on one PostgreSQL database.

Three subprocesses share one database: a burst of 500 deliveries and a calendar
transition arrive once each; one instance killed mid-burst loses nothing; feed polls
spread over the instances. SQLite stays single-instance and says so.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from notifier.store import Store
from tests.conftest import PG_URL_ENV, WriteConfig, new_secret, pg_database
from tests.peers import wait_for
from tests.peers.daemon import Daemon, free_port
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.webhook import Reply, WebhookPeer

pytestmark = pytest.mark.slow

SUBSCRIBERS = 500


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    admin = os.environ.get(PG_URL_ENV)
    if not admin:
        pytest.skip(f"several instances need PostgreSQL: set {PG_URL_ENV}")
    async with pg_database(admin) as url:
        yield url


def config(state: str, hooks: WebhookPeer, secret: str, *, feeds: str = "") -> str:
    subscribers = "".join(
        f'\n[[subscriber]]\nid = "s{i}"\nwebhook = "{hooks.url(f"/h{i}")}"\n'
        f'secret = "{secret}"\nevents = ["tariff.rule.effective"]\n'
        for i in range(SUBSCRIBERS)
    )
    return f"""
[notifier]
state = "{state}"

[delivery]
backoff = ["1s", "1s", "1s", "1s"]
timeout = "2s"
concurrency = 20
{feeds}
{subscribers}
"""


def rule_at(at: datetime) -> str:
    return f"""
[[rule]]
id = "burst"
title = "A rule that matters to everyone"
origins = ["*"]
hts = ["*"]
rate = "10%"
effective = {at.isoformat(timespec="milliseconds")}
"""


async def start_instances(path: Path, count: int, daemons: list[Daemon]) -> list[Daemon]:
    started = []
    for index in range(count):
        instance = Daemon(path, log_name=f"instance{index}.log")
        daemons.append(instance)
        started.append(instance)
    await asyncio.gather(*(d.start() for d in started))
    return started


async def announce_soon(path: Path, daemons: list[Daemon]) -> None:
    """Add a rule taking effect in 3 s and SIGHUP every instance (all schedule it)."""
    (path.parent / "calendar" / "rules.toml").write_text(
        rule_at(datetime.now(UTC) + timedelta(seconds=3))
    )
    for daemon in daemons:
        daemon.signal(signal.SIGHUP)
    await wait_for(
        lambda: all("reloaded" in d.log() for d in daemons), timeout_s=10, what="reloads"
    )


async def test_three_instances_deliver_a_burst_and_a_transition_once(
    write_config: WriteConfig, pg_url: str, daemons: list[Daemon]
) -> None:
    secret = new_secret()
    async with WebhookPeer(default=Reply(204)) as hooks:
        for i in range(SUBSCRIBERS):
            hooks.set_secret(f"/h{i}", secret)
        path = write_config(config(pg_url, hooks, secret), calendar="")
        await start_instances(path, 3, daemons)
        await announce_soon(path, daemons)
        await hooks.wait_for_count(SUBSCRIBERS, timeout_s=60)
        # Every instance had the same date job; a repeat would have come with the rest.
        await asyncio.gather(*(d.stop() for d in daemons))
        calls = hooks.calls
        assert all(c.verified for c in calls)
        assert len(calls) == SUBSCRIBERS  # no kill: no duplicate at all
        assert len({c.headers["webhook-id"] for c in calls}) == SUBSCRIBERS
        assert {c.json["data"]["event_id"] for c in calls} == {calls[0].json["data"]["event_id"]}
        assert all(c.json["data"]["late"] is False for c in calls)
    store = await Store.open(pg_url)
    try:
        senders = {d.subscriber_id for d, _ in await store.list_deliveries(status="sent")}
        assert len(senders) == SUBSCRIBERS
    finally:
        await store.close()


async def test_an_instance_killed_mid_burst_loses_nothing(
    write_config: WriteConfig, pg_url: str, daemons: list[Daemon]
) -> None:
    secret = new_secret()
    # Slow answers keep the burst in flight long enough to kill into it.
    async with WebhookPeer(default=Reply(204, hang_s=0.05)) as hooks:
        for i in range(SUBSCRIBERS):
            hooks.set_secret(f"/h{i}", secret)
        path = write_config(config(pg_url, hooks, secret), calendar="")
        victim, *_ = await start_instances(path, 3, daemons)
        await announce_soon(path, daemons)
        await hooks.wait_for_count(60, timeout_s=30)
        await victim.kill()
        await hooks.wait_for(
            lambda peer: len({c.path for c in peer.calls}) >= SUBSCRIBERS, timeout_s=90
        )
        calls = hooks.calls
        assert all(c.verified for c in calls)
        by_path: dict[str, set[str]] = {}
        for call in calls:
            by_path.setdefault(call.path, set()).add(call.headers["webhook-id"])
        assert len(by_path) == SUBSCRIBERS
        # A delivery the victim had in flight may arrive twice, always with one id.
        assert all(len(ids) == 1 for ids in by_path.values())


async def test_feed_polls_spread_over_instances(
    write_config: WriteConfig, pg_url: str, daemons: list[Daemon], feeds: FeedServer
) -> None:
    names = [f"f{i}" for i in range(6)]
    feed_tables = ""
    for name in names:
        feeds.feeds[name] = [FeedItem("a", f"Item of {name}")]
        feed_tables += f'\n[[feed]]\nid = "{name}"\nurl = "{feeds.url(name)}"\nevery = "2s"\n'
    secret = new_secret()
    async with WebhookPeer() as hooks:
        later = datetime.now(UTC) + timedelta(days=30)
        path = write_config(
            config(pg_url, hooks, secret, feeds=feed_tables), calendar=rule_at(later)
        )
        await start_instances(path, 3, daemons)
        store = await Store.open(pg_url)
        holders: set[str] = set()
        started = asyncio.get_running_loop().time()

        async def spread() -> bool:
            holders.update((await store.feed_lease_holders()).values())
            return len(holders) >= 2

        try:
            # Not a time window: wait until polls were taken by two instances at least
            # (a loaded machine only makes it take longer).
            deadline = started + 60
            while not await spread():
                assert asyncio.get_running_loop().time() < deadline, holders
                await asyncio.sleep(0.25)
        finally:
            await store.close()
        elapsed = asyncio.get_running_loop().time() - started
        counts = dict(feeds.requests)
        await asyncio.gather(*(d.stop() for d in daemons))
    # Leased: each feed polled about once per interval, not once per instance (three
    # instances without leases would poll three times as often).
    for name in names:
        assert counts.get(name, 0) <= elapsed / (2 * 0.8) + 4, (counts, elapsed)


async def test_two_instances_on_one_host_each_serve_health(
    write_config: WriteConfig, pg_url: str, daemons: list[Daemon]
) -> None:
    """The README's recipe: `run -c site.toml` twice on one host, the second with its own
    `--health` (port 0: a free port, logged and shown in /healthz)."""
    port = free_port()
    async with WebhookPeer() as hooks:
        body = config(pg_url, hooks, new_secret()).replace(
            "[notifier]\n", f'[notifier]\nhealth = "127.0.0.1:{port}"\n', 1
        )
        path = write_config(body, calendar=rule_at(datetime.now(UTC) + timedelta(days=3)))
        first = Daemon(path, log_name="first.log")
        second = Daemon(path, log_name="second.log", args=("--health", "127.0.0.1:0"))
        daemons += [first, second]
        await asyncio.gather(first.start(), second.start())
        logged = re.search(r"health on http://127\.0\.0\.1:(\d+)/healthz", second.log())
        assert logged is not None, second.log()
        chosen = int(logged.group(1))
        assert chosen not in (0, port)
        async with aiohttp.ClientSession() as session:
            for where in (port, chosen):
                async with session.get(f"http://127.0.0.1:{where}/healthz") as resp:
                    status = await resp.json()
                    assert resp.status == 200 and status["health"] == f"127.0.0.1:{where}"
        codes = await asyncio.gather(first.stop(), second.stop())
        assert [code for code, _ in codes] == [0, 0]


async def test_second_instance_on_one_sqlite_file_refuses_to_start(
    write_config: WriteConfig, daemons: list[Daemon]
) -> None:
    async with WebhookPeer() as hooks:
        path = write_config(
            config("sqlite:///state/n.db", hooks, new_secret()),
            calendar=rule_at(datetime.now(UTC) + timedelta(days=3)),
        )
        first = Daemon(path)
        daemons.append(first)
        await first.start()
        second = Daemon(path, log_name="second.log")
        daemons.append(second)
        code = await second.run_to_exit(timeout_s=30)
        assert code == 1
        assert "another tariff-notifier is using" in second.log()
        assert "PostgreSQL" in second.log()
        code, _ = await first.stop()
        assert code == 0
