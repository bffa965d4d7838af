"""SMTP faults against a `tariff-notifier run` subprocess: an outage mid-burst, and
per-recipient transient (451) and permanent (550) refusals."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import WriteConfig
from tests.faults import (
    deliveries,
    delivery_section,
    email_subscriber,
    feed_section,
    notifier_section,
    smtp_section,
    statuses,
)
from tests.peers import wait_for
from tests.peers.daemon import Daemon
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.smtp import SmtpPeer

pytestmark = pytest.mark.slow

BURST_ENTRIES = 250
ADDRESSES = ("a@example.com", "b@example.com", "c@example.com", "d@example.com")
BURST = BURST_ENTRIES * len(ADDRESSES)  # 1,000 emails
OUTAGE_S = 20.0
POOL = 4


async def wait_until_settled(config: Path, *, expected: int, timeout_s: float) -> list[dict]:
    """Poll the delivery log (through the CLI) until nothing is queued any more."""
    deadline = time.monotonic() + timeout_s
    while True:
        items = await deliveries(config)
        if len(items) == expected and "queued" not in statuses(items):
            return items
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery log not settled: {statuses(items)}")
        await asyncio.sleep(0.3)


class MessageIds:
    """Distinct Message-IDs received so far, read incrementally.

    Parsing a header costs tens of microseconds; re-reading 1,000 of them on every poll
    of the wait loop would starve the SMTP peer, which shares this event loop.
    """

    def __init__(self, smtp: SmtpPeer) -> None:
        self._smtp = smtp
        self._read = 0
        self._ids: set[str] = set()

    def unique(self) -> int:
        messages = self._smtp.messages
        for mail in messages[self._read :]:
            self._ids.add(mail.message["Message-ID"])
        self._read = len(messages)
        return len(self._ids)


async def baseline_done(feeds: FeedServer, name: str) -> None:
    """The first poll (the silent baseline) is committed once a second poll started."""
    await wait_for(lambda: feeds.requests.get(name, 0) >= 2, timeout_s=30, what="baseline")


async def test_smtp_down_20s_mid_burst_of_1000_loses_nothing(
    write_config: WriteConfig, smtp: SmtpPeer, feeds: FeedServer, daemons: list[Daemon]
) -> None:
    feeds.feeds["burst"] = [FeedItem("seed", "Seed entry")]
    config = write_config(
        notifier_section()
        + smtp_section(smtp.port, pool_size=POOL)
        # 1+2+4+4x5 = 27 s of retries: longer than the outage, so nothing goes dead.
        + delivery_section(("1s", "2s", "4s", "4s", "4s", "4s", "4s", "4s"), concurrency=50)
        + feed_section("burst", feeds.url("burst"), max_changes=100_000)
        + email_subscriber("desk", *ADDRESSES)
    )
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    await baseline_done(feeds, "burst")

    feeds.feeds["burst"] += [
        FeedItem(f"e{i:04d}", f"Tariff notice {i}") for i in range(BURST_ENTRIES)
    ]
    started = time.monotonic()
    await smtp.wait_for_count(BURST // 4, timeout_s=60)
    await smtp.stop()  # the server dies with connections open, mid-transaction
    down_at = time.monotonic()
    before = len(smtp.messages)
    assert before < BURST, "the outage must hit the middle of the burst"
    rate_before = before / (down_at - started)

    # The outage itself: a fixed fault duration, not a wait for a condition.
    await asyncio.sleep(OUTAGE_S / 2)
    during = await deliveries(config)
    retried = [d for d in during if d["status"] == "queued" and d["attempts"] >= 1]
    assert retried, "deliveries were retried while the server was down"
    assert all(d["status"] != "dead" for d in during)
    assert any("connection" in (d["last_error"] or "") for d in retried)
    await asyncio.sleep(OUTAGE_S - (time.monotonic() - down_at))
    await smtp.start()  # back on the same port
    back_at = time.monotonic()

    seen = MessageIds(smtp)
    await wait_for(lambda: seen.unique() >= BURST, timeout_s=60, what="all 1,000 emails")
    recovered_s = time.monotonic() - back_at
    items = await wait_until_settled(config, expected=BURST, timeout_s=30)
    code, _ = await daemon.stop()
    assert code == 0

    assert statuses(items) == {"sent": BURST}  # 0 lost, 0 dead
    received = smtp.messages
    per_id = Counter(m.message["Message-ID"] for m in received)
    assert len(per_id) == BURST
    duplicates = sum(n - 1 for n in per_id.values())
    # Only a message in flight when the server died may arrive twice: at most one per
    # pooled connection, and then with the same Message-ID, recipient and subject.
    assert duplicates <= POOL, duplicates
    for mid, count in per_id.items():
        if count > 1:
            copies = [m for m in received if m.message["Message-ID"] == mid]
            assert len({(m.rcpt_tos, m.message["Subject"]) for m in copies}) == 1
    per_recipient = Counter(r for m in received for r in m.rcpt_tos)
    assert all(per_recipient[a] >= BURST_ENTRIES for a in ADDRESSES)
    print(
        f"\nFIGURE smtp-outage: {before} sent before the outage at {rate_before:.0f}/s; "
        f"all {BURST} delivered {recovered_s:.1f} s after the server returned; "
        f"{duplicates} duplicate(s)"
    )


async def test_smtp_451_is_retried_and_550_is_final_per_recipient(
    write_config: WriteConfig, smtp: SmtpPeer, feeds: FeedServer, daemons: list[Daemon]
) -> None:
    feeds.feeds["news"] = [FeedItem("seed", "Seed entry")]
    config = write_config(
        notifier_section()
        + smtp_section(smtp.port)
        + delivery_section(("1s", "1s", "1s"), timeout="3s")
        + feed_section("news", feeds.url("news"))
        + email_subscriber(
            "desk", "ok@example.com", "soft@example.com", "hard@example.com", "busy@example.com"
        )
    )
    smtp.fail_rcpt("soft@example.com", "451 4.3.0 try again later", times=2)
    smtp.fail_rcpt("hard@example.com", "550 5.1.1 no such user", times=None)
    smtp.fail_rcpt("busy@example.com", "452 4.2.2 mailbox full", times=None)
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    await baseline_done(feeds, "news")
    feeds.feeds["news"].append(FeedItem("n1", "New tariff on steel"))

    items = await wait_until_settled(config, expected=4, timeout_s=30)
    await daemon.stop()
    by_target = {d["target"]: d for d in items}
    assert (by_target["ok@example.com"]["status"], by_target["ok@example.com"]["attempts"]) == (
        "sent",
        1,
    )
    soft = by_target["soft@example.com"]
    assert (soft["status"], soft["attempts"]) == ("sent", 3)
    hard = by_target["hard@example.com"]
    assert (hard["status"], hard["attempts"]) == ("failed", 1)
    assert "550" in hard["last_error"]
    busy = by_target["busy@example.com"]
    assert (busy["status"], busy["attempts"]) == ("dead", 4)  # 1 try + 3 waits
    assert "452" in busy["last_error"]

    replies: dict[str, list[str]] = {}
    for address, reply in smtp.rcpt_log:
        replies.setdefault(address, []).append(reply.split()[0])
    assert replies["hard@example.com"] == ["550"]  # never asked again
    assert replies["soft@example.com"] == ["451", "451", "250"]
    assert replies["busy@example.com"] == ["452"] * 4
    assert replies["ok@example.com"] == ["250"]
    # One refused recipient does not hold up the others, and the accepted retry keeps
    # the Message-ID its delivery was given.
    [ok] = smtp.messages_to("ok@example.com")
    [soft_mail] = smtp.messages_to("soft@example.com")
    assert soft_mail.received_at - ok.received_at >= 2.0  # two 1 s waits
    assert soft_mail.message["Message-ID"] == f"<{soft['id']}@example.com>"
    assert smtp.messages_to("hard@example.com") == []
