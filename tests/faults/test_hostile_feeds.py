"""Hostile feeds against a daemon subprocess: it stays under its memory bound, keeps
polling and delivering the good feed, and reports each failure (log and /healthz)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import WriteConfig, new_secret
from tests.faults import (
    MEMORY_BOUND_MB,
    children_of,
    daemon_pid,
    delivery_section,
    email_subscriber,
    feed_section,
    notifier_section,
    peak_rss_mb,
    webhook_subscriber,
)
from tests.peers import wait_for
from tests.peers.daemon import Daemon, free_port
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.hostile import HostileFeeds, billion_laughs, external_entity
from tests.peers.webhook import WebhookPeer

pytestmark = pytest.mark.slow

TRICKLE_TIMEOUT_S = 3

# feed id -> (route on the hostile server, what the failure report must say)
FAILING = {
    "huge": ("huge", "byte cap"),
    "huge-declared": ("huge-declared", "Content-Length 52428800 exceeds"),
    "gzip-bomb": ("gzip-bomb", "decompressed body exceeds"),
    "random": ("random", "not a feed"),
    "loop": ("loop", "redirect loop"),
    "endless": ("endless/0", "more than 5 redirects"),
    "to-file": ("to-file", "http(s) only"),
    "trickle": ("trickle", f"no complete answer within {TRICKLE_TIMEOUT_S} s"),
}


@pytest.fixture
async def hostile() -> AsyncIterator[HostileFeeds]:
    server = await HostileFeeds().start()
    yield server
    await server.stop()


async def healthz(port: int) -> dict:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as resp,
    ):
        return await resp.json()  # type: ignore[no-any-return]


async def test_hostile_feeds_fail_alone_within_the_memory_bound(
    write_config: WriteConfig,
    hooks: WebhookPeer,
    feeds: FeedServer,
    hostile: HostileFeeds,
    daemons: list[Daemon],
) -> None:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    feeds.feeds["good"] = [FeedItem("seed", "Seed entry")]
    # Well-formed at first (the baseline), armed with a bomb / an external entity later.
    feeds.feeds["bomb"] = [FeedItem("b0", "Harmless")]
    feeds.feeds["xxe"] = [FeedItem("x0", "Harmless")]
    health = free_port()
    hostile_feeds = "".join(
        feed_section(
            feed_id,
            hostile.url(route),
            **({"timeout": f"{TRICKLE_TIMEOUT_S}s"} if feed_id == "trickle" else {}),
        )
        for feed_id, (route, _) in FAILING.items()
    )
    config = write_config(
        notifier_section(health_port=health)
        + delivery_section(timeout="3s")
        + feed_section("good", feeds.url("good"))
        + feed_section("bomb", feeds.url("bomb"))
        + feed_section("xxe", feeds.url("xxe"))
        + hostile_feeds
        + webhook_subscriber("erp", hooks.url("/erp"), secret)
    )
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    await wait_for(
        lambda: all(feeds.requests.get(f, 0) >= 2 for f in ("good", "bomb", "xxe")),
        timeout_s=20,
        what="baselines",
    )
    feeds.raw["bomb"] = billion_laughs()
    feeds.raw["xxe"] = external_entity()
    started = time.monotonic()
    good_polls_before = feeds.requests["good"]

    # The good feed is served while the others fail: a new entry arrives promptly.
    feeds.feeds["good"].append(FeedItem("g1", "Tariff on steel raised to 50%"))
    await hooks.wait_for_count(1, path="/erp", timeout_s=10)
    # Every hostile feed was tried and given up on, the trickle after its deadline.
    await wait_for(
        lambda: (
            hostile.disconnects["trickle"] >= 2  # given up on twice
            and all(hostile.requests[route.split("/")[0]] >= 1 for route, _ in FAILING.values())
        ),
        timeout_s=20,
        what="every hostile feed polled",
    )
    feeds.feeds["good"].append(FeedItem("g2", "Second tariff notice"))

    def delivered() -> dict[str, str]:
        return {
            c.json["data"]["entry"]["id"]: c.json["data"]["entry"]["title"]
            for c in hooks.calls_to("/erp")
        }

    await wait_for(
        lambda: set(delivered()) >= {"g1", "g2", "bomb", "xxe"},
        timeout_s=10,
        what="the second good entry and the defused ones",
    )
    status = await healthz(health)
    elapsed_s = time.monotonic() - started
    good_polls = feeds.requests["good"] - good_polls_before
    pid = daemon_pid(daemon)
    peak_mb = peak_rss_mb(pid)
    workers_mb = {child: peak_rss_mb(child) for child in children_of(pid)}
    code, _ = await daemon.stop()
    assert code == 0

    assert peak_mb < MEMORY_BOUND_MB, peak_mb
    assert all(mb < MEMORY_BOUND_MB for mb in workers_mb.values()), workers_mb
    assert good_polls >= elapsed_s / 3, (good_polls, elapsed_s)  # every 1 s, plus jitter
    assert set(status["failing_feeds"]) >= set(FAILING)
    assert "good" not in status["failing_feeds"]
    log = daemon.log()
    for feed_id, (_, reason) in FAILING.items():
        assert reason in status["feeds"][feed_id]["last_error"], (feed_id, status["feeds"])
        assert f"source {feed_id} failed: " in log, feed_id
    # The bomb and the external entity were defused, not expanded or resolved.
    assert "source bomb: DTD entity declarations ignored" in log
    assert "source xxe: DTD entity declarations ignored" in log
    titles = delivered()
    assert len(titles["bomb"]) < 100 and "lollol" not in titles["bomb"]
    assert "root:" not in titles["xxe"]
    for call in hooks.calls_to("/erp"):
        assert b"root:" not in call.body and b"lollol" not in call.body
    print(
        f"\nFIGURE hostile-feeds: daemon peak RSS {peak_mb:.0f} MB, parse workers "
        f"{[round(mb) for mb in workers_mb.values()]} MB; good feed polled {good_polls} "
        f"times in {elapsed_s:.1f} s"
    )


def slow_to_parse(items: int = 20_000) -> bytes:
    """A valid feed under the size cap that keeps feedparser busy for seconds (~5 s here)."""
    item = b"<item><title>x</title><guid>g</guid></item>"
    head = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
    return head + item * items + b"</channel></rss>"


class ShortParseDeadlineDaemon(Daemon):
    """`tariff-notifier run` with ``PARSE_TIMEOUT_S`` shortened from 60 s to 2 s, so that a
    parse outliving its deadline fits in a test (the real deadline is reached by a 9 MB
    feed: ~62 s here)."""

    async def spawn(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        code = (
            "import sys, notifier.runtime.runtime as p; p.PARSE_TIMEOUT_S = 2.0; "
            "from notifier.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("a") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-c", code, "run", "-c", str(self.config)),
                stdout=log,
                stderr=log,
                env=env,
            )


async def test_a_feed_slow_to_parse_does_not_starve_the_good_feeds(
    write_config: WriteConfig, hooks: WebhookPeer, feeds: FeedServer, daemons: list[Daemon]
) -> None:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    feeds.feeds["good"] = [FeedItem("seed", "Seed entry")]
    slow = [f"slow{i}" for i in range(os.cpu_count() or 1)]  # one per pool worker
    for name in slow:
        feeds.raw[name] = slow_to_parse()
    config = write_config(
        notifier_section()
        + delivery_section(timeout="3s")
        + feed_section("good", feeds.url("good"))
        + "".join(feed_section(name, feeds.url(name)) for name in slow)
        + webhook_subscriber("erp", hooks.url("/erp"), secret)
    )
    daemon = await ShortParseDeadlineDaemon(config).start()
    daemons.append(daemon)
    await wait_for(
        lambda: all(f"source {name} failed: parsing took longer" in daemon.log() for name in slow),
        timeout_s=20,
        what="the slow feeds to time out",
    )
    await wait_for(lambda: feeds.requests.get("good", 0) >= 2, timeout_s=30, what="baseline")
    feeds.feeds["good"].append(FeedItem("g1", "Tariff on steel raised to 50%"))
    try:
        # Not a latency bound (the slow feeds keep both parse workers busy and back off
        # on their own schedule): the good feed's entry arrives and it never fails.
        await hooks.wait_for_count(1, path="/erp", timeout_s=60)
    finally:
        await daemon.stop()
    assert "source good failed" not in daemon.log()


async def test_sigterm_while_a_feed_trickles_exits_in_time_and_quietly(
    write_config: WriteConfig, hostile: HostileFeeds, daemons: list[Daemon]
) -> None:
    config = write_config(
        notifier_section()
        + feed_section("trickle", hostile.url("trickle"), every="1m", timeout="30s")
        + email_subscriber("desk", "desk@example.com")
    )
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    await wait_for(lambda: hostile.requests["trickle"] >= 1, timeout_s=20, what="the poll")
    code, took_s = await daemon.stop()
    assert code == 0 and took_s < 10
    log = daemon.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]
