"""Retention on SQLite and PostgreSQL: what is forgotten, what must never be.

Forgotten: old events whose deliveries are all finished (with their deliveries and
attempts), feed entries long gone from their feed, feeds long removed from the config.
Kept: anything still queued, entries a quiet feed still carries, and enough of the past
that no alert is sent twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from notifier.config import load_config
from notifier.core.model import Delivery, Event
from notifier.errors import ConfigError
from notifier.runtime.daemon import Daemon
from notifier.runtime.jobs import Jobs
from notifier.runtime.runtime import Notifier
from notifier.store import AttemptRecord, Store
from notifier.store import schema as t
from notifier.store.retention import prune
from tests.conftest import FakeClock, WriteConfig, new_secret
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.webhook import WebhookPeer

DAY = timedelta(days=1)
RETENTION = 90 * DAY


async def emit(store: Store, n: int, *, at: FakeClock, finished: bool) -> Delivery:
    now = at()
    event = Event(
        id=f"evt_{n}",
        type="feed.entry.new",
        timestamp=now,
        data={"feed": "news", "entry": {"id": str(n)}},
        origins=("JP",),
        hts=(),
    )
    delivery = Delivery(
        id=Delivery.make_id(event.id, "erp", "webhook", "http://127.0.0.1/h"),
        event_id=event.id,
        subscriber_id="erp",
        channel="webhook",
        target="http://127.0.0.1/h",
        status="queued",
        attempts=0,
        next_at=now,
        created_at=now,
    )
    async with store.transaction() as tx:
        await store.emit(tx, event, [delivery], now=now)
    if finished:
        await store.record_attempts(
            [
                AttemptRecord(
                    delivery_id=delivery.id,
                    at=now,
                    outcome="sent",
                    status="sent",
                    attempts=1,
                    next_at=None,
                    detail="HTTP 204",
                )
            ]
        )
    return delivery


async def count(store: Store, table: sa.Table) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def test_old_finished_events_go_with_their_log_and_queued_ones_stay(
    store: Store, clock: FakeClock
) -> None:
    await emit(store, 1, at=clock, finished=True)  # old and sent: forgotten
    stuck = await emit(store, 2, at=clock, finished=False)  # old but still queued: kept
    clock.advance(days=60)
    await emit(store, 3, at=clock, finished=True)  # sent, but younger than retention
    clock.advance(days=40)

    pruned = await store.prune(now=clock(), retention=RETENTION, feed_ids=[])

    assert (pruned.events, pruned.deliveries, pruned.attempts) == (1, 1, 1)
    assert await store.emitted(["evt_1", "evt_2", "evt_3"]) == {"evt_2", "evt_3"}
    assert await count(store, t.delivery_attempts) == 1
    [(queued, _)] = await store.list_deliveries(status="queued")
    assert queued.id == stuck.id
    # A second pass finds nothing more: the same rows are not counted twice.
    assert (await store.prune(now=clock(), retention=RETENTION, feed_ids=[])).total() == 0


async def test_pruning_goes_in_batches_and_takes_everything(store: Store, clock: FakeClock) -> None:
    for n in range(23):
        await emit(store, n, at=clock, finished=True)
    clock.advance(days=91)
    pruned = await prune(store, now=clock(), retention=RETENTION, feed_ids=[], batch=5)
    assert (pruned.events, pruned.deliveries, pruned.attempts) == (23, 23, 23)
    assert await count(store, t.events) == 0 and await count(store, t.deliveries) == 0


CONFIG = """
[notifier]
state = "{state}"

[[feed]]
id = "news"
url = "{url}"
every = "15m"

[[subscriber]]
id = "erp"
webhook = "{hook}"
secret = "{secret}"
"""


WriteFeedConfig = Callable[..., Path]


@pytest.fixture
def write(
    write_config: WriteConfig, feeds: FeedServer, hooks: WebhookPeer, state_url: str
) -> WriteFeedConfig:
    """A config with one feed (named ``feed``) and one webhook subscriber."""
    secret = new_secret()
    hooks.set_secret("/h", secret)

    def write(*, feed: str = "news") -> Path:
        text = CONFIG.format(
            state=state_url, url=feeds.url(feed), hook=hooks.url("/h"), secret=secret
        )
        return write_config(text.replace('id = "news"', f'id = "{feed}"'))

    return write


async def once(path: Path, clock: FakeClock) -> list[str]:
    """One `once` pass; the ids of the feed entries it alerted."""
    async with Notifier(load_config(path), clock=clock, parse_in_processes=False) as app:
        report = await Jobs(app).run_once()
    return sorted(e.data["entry"]["id"] for e in report.sources.events)


async def test_a_quiet_feed_keeps_its_entries_and_a_gone_entry_is_forgotten(
    write: WriteFeedConfig, feeds: FeedServer, clock: FakeClock, state_url: str
) -> None:
    path = write()
    feeds.feeds["news"] = [FeedItem("a", "Steel"), FeedItem("b", "Autos")]
    assert await once(path, clock) == []  # the baseline

    # The feed stays the same for longer than retention: nothing of it is forgotten,
    # and when it finally changes only the new entry is news.
    clock.advance(days=200)
    assert await once(path, clock) == []
    feeds.feeds["news"].append(FeedItem("c", "Parts"))
    clock.advance(days=1)
    assert await once(path, clock) == ["c"]

    # "a" leaves the feed; it is forgotten once newer entries are `retention` past it.
    feeds.feeds["news"] = [FeedItem("b", "Autos"), FeedItem("c", "Parts")]
    clock.advance(days=1)
    assert await once(path, clock) == []
    for n in range(4):  # the feed moves on for 120 days; "b" and "c" stay in it
        clock.advance(days=30)
        feeds.feeds["news"].append(FeedItem(f"n{n}", f"News {n}"))
        assert await once(path, clock) == [f"n{n}"]

    config = load_config(path)
    store = await Store.open(config.state_url)
    try:
        assert set(await store.seen_entries("news")) == {"b", "c", "n0", "n1", "n2", "n3"}
    finally:
        await store.close()


async def test_a_feed_removed_from_the_config_is_forgotten_after_retention(
    write: WriteFeedConfig, feeds: FeedServer, clock: FakeClock
) -> None:
    old = write(feed="old")
    feeds.feeds["old"] = [FeedItem("a", "Steel")]
    await once(old, clock)
    new = write(feed="new")
    feeds.feeds["new"] = [FeedItem("x", "Autos")]
    clock.advance(days=30)
    await once(new, clock)
    config = load_config(new)
    store = await Store.open(config.state_url)
    try:
        assert set(await store.feed_states()) == {"old", "new"}  # 30 days: kept
        clock.advance(days=61)
        pruned = await store.prune(now=clock(), retention=RETENTION, feed_ids=["new"])
        assert pruned.feeds == 1
        assert set(await store.feed_states()) == {"new"}
        assert await store.seen_entries("old") == {}
        assert set(await store.seen_entries("new")) == {"x"}
    finally:
        await store.close()


RULE = """
[[rule]]
id = "auto-parts"
title = "Section 232 tariff on automobile parts"
origins = ["*"]
hts = ["8708"]
rate = "25%"
effective = 2025-05-03T00:01:00-04:00
"""


async def test_a_sent_transition_is_not_sent_again_after_its_event_is_forgotten(
    write_config: WriteConfig, hooks: WebhookPeer, clock: FakeClock, state_url: str
) -> None:
    secret = new_secret()
    hooks.set_secret("/h", secret)
    text = f"""
[notifier]
state = "{state_url}"
late_limit = "30d"
retention = "31d"

[calendar]
remind = []

[[subscriber]]
id = "erp"
webhook = "{hooks.url("/h")}"
secret = "{secret}"
"""
    path = write_config(text, calendar=RULE)  # the clock starts 2025-04-17
    await once(path, clock)
    clock.advance(days=16)  # past the effective instant (May 3)
    async with Notifier(load_config(path), clock=clock, parse_in_processes=False) as app:
        first = await Jobs(app).run_once()
    assert [e.type for e in first.sources.events] == ["tariff.rule.effective"]
    await hooks.wait_for_count(1, path="/h")

    clock.advance(days=32)
    async with Notifier(load_config(path), clock=clock, parse_in_processes=False) as app:
        later = await Jobs(app).run_once()
    assert later.pruned.events == 1  # the effective event is forgotten…
    assert later.sources.events == []  # …and the transition, past late_limit, not re-sent
    clock.advance(days=1)
    async with Notifier(load_config(path), clock=clock, parse_in_processes=False) as app:
        assert (await Jobs(app).run_once()).sources.events == []
    assert len(hooks.calls) == 1


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('retention = "20d"', "expected `retention` longer than `late_limit`"),
        ('retention = "3d"\nlate_limit = "1d"', 'expected `retention` of at least "7d"'),
    ],
)
def test_retention_shorter_than_late_limit_is_refused(
    write_config: WriteConfig, extra: str, expected: str
) -> None:
    path = write_config(f"[notifier]\n{extra}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert expected in message and str(path) in message and "notifier" in message


async def test_the_daemons_retention_job_forgets_and_counts(
    write: WriteFeedConfig, feeds: FeedServer, hooks: WebhookPeer, clock: FakeClock
) -> None:
    path = write()
    feeds.feeds["news"] = [FeedItem("a", "Steel")]
    await once(path, clock)
    feeds.feeds["news"].append(FeedItem("b", "Autos"))
    assert await once(path, clock) == ["b"]
    await hooks.wait_for_count(1, path="/h")
    clock.advance(days=91)

    config = load_config(path)
    daemon = Daemon(config, clock=clock)
    async with Notifier(config, clock=clock, parse_in_processes=False) as app:
        daemon.notifier = app
        daemon.jobs = Jobs(app)
        assert await app.store.counts() == {"sent": 1}
        await daemon._retention_job()
        assert await app.store.counts() == {}
    exposed = daemon.metrics.render().decode()
    assert 'notifier_pruned_rows_total{kind="events"} 1.0' in exposed
    assert 'notifier_pruned_rows_total{kind="attempts"} 1.0' in exposed


async def test_two_instances_pruning_at_once_forget_each_row_once(
    store: Store, clock: FakeClock
) -> None:
    for n in range(40):
        await emit(store, n, at=clock, finished=True)
    clock.advance(days=91)
    other = await Store.open(store.url)
    try:
        both = await asyncio.gather(
            prune(store, now=clock(), retention=RETENTION, feed_ids=[], batch=4),
            prune(other, now=clock(), retention=RETENTION, feed_ids=[], batch=4),
        )
        # Whoever ran, nothing is left, and no row was counted twice.
        pruned = await store.prune(now=clock(), retention=RETENTION, feed_ids=[])
    finally:
        await other.close()
    assert sum(p.events for p in both) + pruned.events == 40
    assert await count(store, t.events) == 0 and await count(store, t.delivery_attempts) == 0
