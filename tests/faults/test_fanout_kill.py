"""SIGKILL in the middle of a 50,000-subscriber fan-out loses nothing (issue 13).

``tariff-notifier run`` with 50,000 webhook subscribers of one feed; once the feed's
baseline is taken, one new entry makes one event for all of them (a fan-out that does
not depend on how long 50,000 subscribers take to load); the daemon is killed without
warning once a share of the fan-out has arrived, and started again on the same state.
Every delivery must arrive, signed, under its stable ``webhook-id`` (a repeat of one sent
before the kill carries the same id), and every one must end with its row ``sent``, its
attempt record and its ledger row with the hash of the bytes sent. The fast path of the
fan-out (results written in batches, claims made ahead) is what this proves safe.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import WriteConfig, new_secret
from tests.faults import daemon_pid, delivery_section, feed_section, notifier_section
from tests.peers import wait_for
from tests.peers.daemon import Daemon
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.webhook import WebhookPeer

pytestmark = [pytest.mark.slow, pytest.mark.heavy, pytest.mark.timeout(420)]

SUBSCRIBERS = 50_000
KILL_AFTER = 15_000  # arrivals before the kill: well inside the fan-out
START_S = 120.0  # a spawn with 50,000 subscribers on a loaded 2-core machine
FANOUT_S = 240.0


def fanout_config(write_config: WriteConfig, feed_url: str, url: str, secret: str) -> Path:
    subscribers = "".join(
        f'[[subscriber]]\nid = "s{i}"\nwebhook = "{url}"\nsecret = "{secret}"\n'
        'events = ["feed.entry.new"]\n'
        for i in range(SUBSCRIBERS)
    )
    return write_config(
        notifier_section()
        + delivery_section(("1s", "2s", "5s", "10s"), timeout="10s")
        + feed_section("news", feed_url, every="1s")
        + subscribers
    )


async def start(config: Path, daemons: list[Daemon]) -> Daemon:
    daemon = Daemon(config)
    daemons.append(daemon)
    await daemon.spawn()
    await wait_for(
        lambda: "running:" in daemon.log() or daemon.exited(), timeout_s=START_S, what="start"
    )
    assert not daemon.exited(), daemon.log()[-3000:]
    return daemon


def stored(config: Path) -> tuple[dict[str, str], set[str], dict[str, str | None]]:
    """(status per delivery id, ids with an attempt record, ledger sha256 per id)."""
    with sqlite3.connect(config.parent / "state" / "n.db") as db:
        status = dict(db.execute("SELECT id, status FROM deliveries"))
        attempted = {row[0] for row in db.execute("SELECT delivery_id FROM delivery_attempts")}
        hashes = dict(db.execute("SELECT delivery_id, sha256 FROM ledger WHERE outcome = 'sent'"))
    return status, attempted, hashes


async def test_sigkill_mid_fanout_of_50000_loses_no_delivery_and_repeats_keep_their_id(
    write_config: WriteConfig, feeds: FeedServer, daemons: list[Daemon]
) -> None:
    started = time.monotonic()
    secret = new_secret()
    feeds.feeds["news"] = [FeedItem("seed", "Seed entry")]
    async with WebhookPeer(secrets={"/h": secret}) as hooks:
        config = fanout_config(write_config, feeds.url("news"), hooks.url("/h"), secret)

        def arrived() -> Counter[str]:
            return Counter(call.headers["webhook-id"] for call in hooks.calls_to("/h"))

        first = await start(config, daemons)
        await wait_for(lambda: feeds.requests.get("news", 0) >= 2, timeout_s=60, what="baseline")
        feeds.feeds["news"] += [FeedItem("e1", "Section 232 duties on auto parts")]
        await wait_for(
            lambda: len(hooks.calls_to("/h")) >= KILL_AFTER, timeout_s=FANOUT_S, what="progress"
        )
        pid = daemon_pid(first)
        first.signal(signal.SIGKILL)
        assert first.proc is not None
        await asyncio.wait_for(first.proc.wait(), 10)
        at_kill = len(arrived())
        assert at_kill < SUBSCRIBERS, "the kill must land in the middle of the fan-out"

        second = await start(config, daemons)
        await wait_for(
            lambda: len(arrived()) >= SUBSCRIBERS, timeout_s=FANOUT_S, what="every delivery"
        )
        # The last results are written within ~50 ms of their attempts; then every row
        # is final.
        deadline = time.monotonic() + 30
        while Counter(stored(config)[0].values()) != {"sent": SUBSCRIBERS}:
            assert time.monotonic() < deadline, Counter(stored(config)[0].values())
            await asyncio.sleep(0.5)
        code, _ = await second.stop(within_s=15)
        assert code == 0
        calls = hooks.calls_to("/h")

    ids = Counter(call.headers["webhook-id"] for call in calls)
    status, attempted, hashes = stored(config)
    assert set(ids) == set(status), "an arrival with an unknown id, or a lost delivery"
    assert len(ids) == SUBSCRIBERS
    assert all(call.verified for call in calls), next(c.error for c in calls if not c.verified)
    assert attempted == set(status), "a delivery without its attempt record"
    assert set(hashes) == set(status) and all(hashes.values()), "a ledger row or hash missing"
    repeats = sum(ids.values()) - SUBSCRIBERS
    print(
        f"\nFIGURE fan-out kill: {SUBSCRIBERS:,} deliveries, killed after {at_kill:,} "
        f"arrivals (pid {pid}), {repeats} repeat(s) with their ids, "
        f"{time.monotonic() - started:.0f} s in all"
    )
