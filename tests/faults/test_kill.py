"""SIGKILL of the daemon mid-burst, three times in a row: every delivery still arrives,
and a repeat keeps its ``webhook-id`` / ``Message-ID`` so receivers can drop it."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict

import pytest

from tests.conftest import WriteConfig, new_secret
from tests.faults import (
    children_of,
    daemon_pid,
    deliveries,
    delivery_section,
    email_subscriber,
    feed_section,
    notifier_section,
    processes_alive,
    smtp_section,
    statuses,
    webhook_subscriber,
)
from tests.peers import wait_for
from tests.peers.daemon import Daemon
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import Reply, WebhookPeer

pytestmark = pytest.mark.slow

ENTRIES = 150
KILLS = 3


async def test_three_sigkills_mid_burst_lose_nothing_and_repeats_keep_their_ids(
    write_config: WriteConfig,
    smtp: SmtpPeer,
    hooks: WebhookPeer,
    feeds: FeedServer,
    daemons: list[Daemon],
) -> None:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    hooks.default = Reply(204, hang_s=0.05)  # a receiver slow enough to be killed mid-burst
    feeds.feeds["burst"] = [FeedItem("seed", "Seed entry")]
    config = write_config(
        notifier_section()
        + smtp_section(smtp.port)
        + delivery_section(("1s", "1s", "2s", "5s"), timeout="3s", concurrency=10)
        + feed_section("burst", feeds.url("burst"), max_changes=100_000)
        + webhook_subscriber("erp", hooks.url("/erp"), secret)
        + email_subscriber("desk", "desk@example.com")
    )
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    await wait_for(lambda: feeds.requests.get("burst", 0) >= 2, timeout_s=30, what="baseline")

    def hook_ids() -> set[str]:
        return {c.headers["webhook-id"] for c in hooks.calls_to("/erp")}

    feeds.feeds["burst"] += [FeedItem(f"e{i:03d}", f"Tariff notice {i}") for i in range(ENTRIES)]
    orphans: list[int] = []
    kills_at: list[int] = []
    for kill in range(KILLS):
        # Each life delivers a share of the burst before it is killed without warning.
        target = len(hook_ids()) + ENTRIES // (KILLS + 2)
        await wait_for(lambda t=target: len(hook_ids()) >= t, timeout_s=30, what=f"progress {kill}")
        pid = daemon_pid(daemon)
        family = children_of(pid)
        daemon.signal(signal.SIGKILL)
        assert daemon.proc is not None
        await asyncio.wait_for(daemon.proc.wait(), 10)
        kills_at.append(len(hook_ids()))
        orphans += family
        daemon = await Daemon(config).start()
        daemons.append(daemon)

    await wait_for(lambda: len(hook_ids()) >= ENTRIES, timeout_s=60, what="every webhook")
    await smtp.wait_for(
        lambda peer: len({m.message["Message-ID"] for m in peer.messages}) >= ENTRIES,
        timeout_s=60,
    )
    deadline = asyncio.get_running_loop().time() + 20
    while statuses(items := await deliveries(config)) != {"sent": 2 * ENTRIES}:
        assert asyncio.get_running_loop().time() < deadline, statuses(items)
        await asyncio.sleep(0.3)
    code, _ = await daemon.stop()
    assert code == 0
    for pid in processes_alive(orphans):  # should be none: a regression must not leak them
        os.kill(pid, signal.SIGKILL)
    assert kills_at[-1] < ENTRIES, "the last kill must still land mid-burst"

    # Every entry arrived by webhook and by email; a repeat carries the same id.
    ids_per_entry: dict[str, set[str]] = defaultdict(set)
    for call in hooks.calls_to("/erp"):
        assert call.verified, call.error
        ids_per_entry[call.json["data"]["entry"]["id"]].add(call.headers["webhook-id"])
    assert set(ids_per_entry) == {f"e{i:03d}" for i in range(ENTRIES)}
    assert all(len(ids) == 1 for ids in ids_per_entry.values())
    mids_per_subject: dict[str, set[str]] = defaultdict(set)
    for mail in smtp.messages:
        mids_per_subject[mail.message["Subject"]].add(mail.message["Message-ID"])
    assert len(mids_per_subject) == ENTRIES
    assert all(len(ids) == 1 for ids in mids_per_subject.values())
    repeats = len(hooks.calls_to("/erp")) - ENTRIES + len(smtp.messages) - ENTRIES
    print(f"\nFIGURE sigkill: {KILLS} kills at {kills_at} webhooks; {repeats} repeat(s)")


async def test_sigkill_leaves_no_parse_workers_behind(
    write_config: WriteConfig, feeds: FeedServer, daemons: list[Daemon]
) -> None:
    feeds.feeds["news"] = [FeedItem("seed", "Seed entry")]
    config = write_config(
        notifier_section()
        + feed_section("news", feeds.url("news"))
        + email_subscriber("d", "d@x.org")
    )
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    await wait_for(lambda: feeds.requests.get("news", 0) >= 2, timeout_s=30, what="a parse")
    family = children_of(daemon_pid(daemon))
    assert family, "the daemon parses feeds in worker processes"
    daemon.signal(signal.SIGKILL)
    assert daemon.proc is not None
    await asyncio.wait_for(daemon.proc.wait(), 10)
    try:
        await wait_for(lambda: not processes_alive(family), timeout_s=3, what="workers to exit")
    finally:
        for pid in processes_alive(family):  # the orphans this test made, by their pid
            os.kill(pid, signal.SIGKILL)
