"""The drain's long-lived senders (``delivery/drain.py``), on a real SQLite store and a
real webhook receiver: a fan-out larger than the claims and the senders goes out whole,
once per delivery, never more at once than ``[delivery] concurrency``, with no task per
delivery."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from notifier.config import Config, load_config
from notifier.core.model import Delivery
from notifier.core.planning import plan_deliveries
from notifier.delivery.outbox import Outbox
from notifier.store import Store
from tests.conftest import FakeClock, WriteConfig, new_secret
from tests.faults import delivery_section, notifier_section, open_outbox, webhook_subscriber
from tests.peers.webhook import WebhookPeer
from tests.samples import sample_event

SUBSCRIBERS = 40
CONCURRENCY = 3  # claims of 6 (CLAIM_AHEAD rounds): many claims, many rounds per sender


@pytest.fixture
async def fanout(
    write_config: WriteConfig, hooks: WebhookPeer, clock: FakeClock
) -> AsyncIterator[tuple[Config, Store, Outbox]]:
    secret = new_secret()
    subscribers = ""
    for n in range(SUBSCRIBERS):
        hooks.set_secret(f"/h/{n}", secret)
        subscribers += webhook_subscriber(f"s{n}", hooks.url(f"/h/{n}"), secret)
    config = load_config(
        write_config(notifier_section() + delivery_section(concurrency=CONCURRENCY) + subscribers)
    )
    async with open_outbox(config, clock) as (store, outbox):
        yield config, store, outbox


def senders() -> int:
    return sum(1 for task in asyncio.all_tasks() if "Drain._sender" in repr(task.get_coro()))


async def test_a_fan_out_goes_out_whole_through_at_most_concurrency_senders(
    fanout: tuple[Config, Store, Outbox], hooks: WebhookPeer, clock: FakeClock
) -> None:
    config, store, outbox = fanout
    event = sample_event("tariff.rule.effective")
    planned = plan_deliveries(event, config.subscribers, now=clock(), zone=config.zone)
    async with store.transaction() as tx:
        await store.emit(tx, event, planned, now=clock())
    senders_seen: list[int] = []

    def on_result(delivery: Delivery, status: str, latency_s: float) -> None:
        senders_seen.append(senders())

    outbox.on_result = on_result
    report = await outbox.drain()

    assert report.sent == SUBSCRIBERS and len(senders_seen) == SUBSCRIBERS
    assert 1 <= max(senders_seen) <= CONCURRENCY
    calls = hooks.calls
    assert all(call.verified for call in calls)
    ids = Counter(call.headers["webhook-id"] for call in calls)
    assert sorted(ids) == sorted(d.id for d in planned) and set(ids.values()) == {1}
    assert await store.counts() == {"sent": SUBSCRIBERS}
    ledger = await store.ledger()
    assert len(ledger) == SUBSCRIBERS and all(row["sha256"] for row in ledger)
    assert senders() == 0  # they end with the drain
