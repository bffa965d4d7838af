"""Webhook endpoints that fail in every way a receiver can.

Against a daemon subprocess: each failing endpoint is retried on the backoff schedule and
ends in the log, while a healthy endpoint is served as if nothing happened. In process,
against the outbox: a slow endpoint does not hold back new alerts to the others, and a
410 is honoured at once. Waits are on conditions with deadlines; where a bound matters
it is causal (an ordering, or a deadline far below the slow endpoint's timeout).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from notifier.config import Config, load_config
from notifier.core.model import Event
from notifier.core.planning import plan_deliveries
from notifier.delivery import outbox as outbox_module
from notifier.delivery.outbox import GONE_DETAIL, DrainReport, Outbox
from notifier.store import Store
from tests.conftest import FakeClock, WriteConfig, new_secret
from tests.faults import (
    deliveries,
    delivery_section,
    feed_section,
    notifier_section,
    open_outbox,
    statuses,
    webhook_subscriber,
)
from tests.peers import wait_for
from tests.peers.daemon import Daemon
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.webhook import Reply, WebhookPeer
from tests.samples import sample_event

BACKOFF_S = (1.0, 1.0, 2.0)
TIMEOUT_S = 1.0
TRIES = len(BACKOFF_S) + 1

# path -> what it answers every time
FAULTS = {
    "/e500": Reply(500, body=b"internal error"),
    "/hang": Reply(204, hang_s=5.0),  # answers long after the 1 s timeout
    "/drop": Reply(drop=True),  # closes the connection without answering
}


@pytest.mark.slow
async def test_failing_endpoints_retry_on_schedule_then_dead_others_unaffected(
    write_config: WriteConfig, hooks: WebhookPeer, feeds: FeedServer, daemons: list[Daemon]
) -> None:
    secret = new_secret()
    paths = ["/ok", *FAULTS, "/redirect", "/busy", "/target"]
    for path in paths:
        hooks.set_secret(path, secret)
    for path, reply in FAULTS.items():
        hooks.script(path, *[reply] * (TRIES + 2))
    hooks.script(
        "/redirect", *[Reply(302, headers={"Location": hooks.url("/target")})] * (TRIES + 2)
    )
    hooks.script("/busy", Reply(429, headers={"Retry-After": "3"}))  # then 204
    feeds.feeds["news"] = [FeedItem("seed", "Seed entry")]
    subscribers = "".join(
        webhook_subscriber(path.strip("/"), hooks.url(path), secret)
        for path in ["/ok", *FAULTS, "/redirect", "/busy"]
    )
    config = write_config(
        notifier_section()
        + delivery_section(tuple(f"{b:g}s" for b in BACKOFF_S), timeout=f"{TIMEOUT_S:g}s")
        + feed_section("news", feeds.url("news"))
        + subscribers
    )
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    await wait_for(lambda: feeds.requests.get("news", 0) >= 2, timeout_s=30, what="baseline")
    feeds.feeds["news"].append(FeedItem("n1", "Tariff on steel raised"))

    await wait_for(
        lambda: all(len(hooks.calls_to(p)) >= TRIES for p in [*FAULTS, "/redirect"]),
        timeout_s=30,
        what="every failing endpoint tried to the end",
    )
    items: list[dict] = []

    async def settled() -> bool:
        nonlocal items
        items = await deliveries(config)
        return not statuses(items).get("queued")

    deadline = time.monotonic() + 15
    while not await settled():
        assert time.monotonic() < deadline, statuses(items)
        await asyncio.sleep(0.3)  # between reads of the log (a CLI subprocess each)
    await daemon.stop()

    by_sub = {d["subscriber"]: d for d in items}
    assert {k: (v["status"], v["attempts"]) for k, v in by_sub.items()} == {
        "ok": ("sent", 1),
        "e500": ("dead", TRIES),
        "hang": ("dead", TRIES),
        "drop": ("dead", TRIES),
        "redirect": ("dead", TRIES),  # retried on the schedule, never followed
        "busy": ("sent", 2),
    }
    assert "500" in by_sub["e500"]["last_error"]
    assert "no answer within" in by_sub["hang"]["last_error"]
    assert "redirect not followed" in by_sub["redirect"]["last_error"]
    assert hooks.calls_to("/target") == []  # the Location was never followed

    # The healthy endpoint did not wait behind the hanging one: it was served before
    # the hanging endpoint's first attempt could have ended (its timeout, then a retry).
    [ok] = hooks.calls_to("/ok")
    assert ok.received_at < hooks.calls_to("/hang")[1].received_at

    for path in FAULTS:
        calls = hooks.calls_to(path)
        assert len(calls) == TRIES, path  # not one more after "dead"
        assert len({c.headers["webhook-id"] for c in calls}) == 1
        assert all(c.verified for c in calls), [c.error for c in calls]
        # Retried on the schedule, never early: each gap is at least the backoff wait
        # (plus, for the hanging endpoint, the timeout the attempt spent). How late is
        # bounded by the wait above, not by a window that a loaded machine would miss.
        spent_s = TIMEOUT_S if path == "/hang" else 0.0
        gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(calls)]
        for wait_s, gap in zip(BACKOFF_S, gaps, strict=True):
            assert gap >= wait_s + spent_s - 0.05, (path, gaps)

    busy = hooks.calls_to("/busy")
    assert busy[1].received_at - busy[0].received_at >= 3.0 - 0.05  # Retry-After honoured
    assert busy[0].headers["webhook-id"] == busy[1].headers["webhook-id"]


# --- in process: the outbox's drain against a real receiver -------------------------------

SLOW_TIMEOUT_S = 20.0  # far above every deadline below: a wait that ends is not a timeout


@dataclass
class Rig:
    config: Config
    store: Store
    outbox: Outbox
    clock: FakeClock

    async def emit(self, event: Event, *subscriber_ids: str) -> None:
        subs = [s for s in self.config.subscribers if s.id in subscriber_ids]
        planned = plan_deliveries(event, subs, now=self.clock(), zone=self.config.zone)
        async with self.store.transaction() as tx:
            await self.store.emit(tx, event, planned, now=self.clock())


@pytest.fixture
async def rig(
    request: pytest.FixtureRequest, write_config: WriteConfig, hooks: WebhookPeer, clock: FakeClock
) -> AsyncIterator[Rig]:
    """An outbox on a fresh store; parametrize ``rig`` indirectly to set its slots."""
    concurrency: int = getattr(request, "param", 4)
    secret = new_secret()
    for path in ("/slow", "/good", "/erp"):
        hooks.set_secret(path, secret)
    config = load_config(
        write_config(
            notifier_section()
            + delivery_section(("1s",), timeout=f"{SLOW_TIMEOUT_S:g}s", concurrency=concurrency)
            + webhook_subscriber("slow", hooks.url("/slow"), secret)
            + webhook_subscriber("good", hooks.url("/good"), secret)
            + webhook_subscriber("erp", hooks.url("/erp"), secret)
            + webhook_subscriber("chat", hooks.url("/chat"), None, extra='format = "slack"')
        )
    )
    async with open_outbox(config, clock) as (store, outbox):
        try:
            yield Rig(config, store, outbox, clock)
        finally:
            await hooks.stop()  # ends hanging answers, so no attempt outlives the test


def _entry(n: int) -> Event:
    base = sample_event("feed.entry.new")
    return Event(f"evt_test_{n}", base.type, base.timestamp, base.data, text=base.text)


async def test_new_alerts_reach_good_endpoints_while_a_slow_one_hangs(
    rig: Rig, hooks: WebhookPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only notify() may wake the drain here: no periodic look for new work.
    monkeypatch.setattr(outbox_module, "REFILL_S", 3600.0)
    hooks.script("/slow", Reply(204, hang_s=60))
    await rig.emit(_entry(1), "slow")
    drain = asyncio.create_task(rig.outbox.drain())
    await hooks.wait_for_count(1, path="/slow")

    await rig.emit(_entry(2), "good")
    rig.outbox.notify()

    # Long before the slow attempt could time out (SLOW_TIMEOUT_S), the new alert is there.
    [good] = await hooks.wait_for_count(1, path="/good", timeout_s=SLOW_TIMEOUT_S / 4)
    assert good.verified and good.json["data"]["event_id"] == "evt_test_2"
    assert not drain.done(), "the slow attempt is still in flight"
    await hooks.stop()  # the slow receiver answers now
    report = await asyncio.wait_for(drain, SLOW_TIMEOUT_S)
    assert report.sent == 2


async def test_without_notify_new_work_is_claimed_within_the_refill_period(
    rig: Rig, hooks: WebhookPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "REFILL_S", 0.1)
    hooks.script("/slow", Reply(204, hang_s=60))
    await rig.emit(_entry(1), "slow")
    drain = asyncio.create_task(rig.outbox.drain())
    await hooks.wait_for_count(1, path="/slow")

    await rig.emit(_entry(2), "good")  # committed by another instance, say: no notify

    await hooks.wait_for_count(1, path="/good", timeout_s=SLOW_TIMEOUT_S / 4)
    assert not drain.done()
    await hooks.stop()
    await asyncio.wait_for(drain, SLOW_TIMEOUT_S)


# One slot: the other deliveries are claimed while (and after) the 410 is answered.
@pytest.mark.parametrize("rig", [1], indirect=True)
async def test_a_410_is_honoured_at_once_and_reported(rig: Rig, hooks: WebhookPeer) -> None:
    hooks.script("/erp", Reply(410, body=b"endpoint removed"))  # then 204
    seen: list[tuple[str, str]] = []
    rig.outbox.on_gone = lambda sub, target: seen.append((sub, target))
    for n in (1, 2, 3):
        await rig.emit(_entry(n), "erp", "good")

    report = await rig.outbox.drain()

    assert len(hooks.calls_to("/erp")) == 1, "nothing more after the 410"
    assert len(hooks.calls_to("/good")) == 3
    assert seen == [("erp", hooks.url("/erp"))]
    assert (report.sent, report.failed) == (3, 3)
    details = sorted(d for _, status, d in report.outcomes if status == "failed")
    assert details == ["HTTP 410: endpoint removed", GONE_DETAIL, GONE_DETAIL]
    hashes = {s.id: s.config_hash for s in rig.config.subscribers}
    assert ("erp", hooks.url("/erp")) in await rig.store.blocked_targets(hashes)


async def test_the_ledger_keeps_the_hash_of_the_bytes_sent_and_no_secret_url(
    rig: Rig, hooks: WebhookPeer
) -> None:
    await rig.emit(_entry(1), "good", "chat")

    await rig.outbox.drain(report=DrainReport())

    rows = {row["subscriber_id"]: row for row in await rig.store.ledger()}
    [good] = hooks.calls_to("/good")
    [chat] = hooks.calls_to("/chat")
    assert rows["good"]["sha256"] == hashlib.sha256(good.body).hexdigest()
    assert rows["chat"]["sha256"] == hashlib.sha256(chat.body).hexdigest()
    assert rows["good"]["target"] == hooks.url("/good")
    assert rows["chat"]["target"] == f"http://127.0.0.1:{hooks.port}/…"  # Slack: masked
    assert chat.json == {"text": rig.outbox.renderer.render_slack(_entry(1))}


async def test_a_retry_is_claimed_again_when_its_time_comes(rig: Rig, hooks: WebhookPeer) -> None:
    hooks.script("/good", 503)  # then 204
    await rig.emit(_entry(1), "good")

    first = await rig.outbox.drain()
    rig.clock.advance(seconds=1)
    second = await rig.outbox.drain()

    assert (first.retry, second.sent) == (1, 1)
    calls = hooks.calls_to("/good")
    assert calls[0].headers["webhook-id"] == calls[1].headers["webhook-id"]
    assert rig.clock() - timedelta(seconds=1) >= sample_event("feed.entry.new").timestamp
