"""Webhook endpoints that fail in every way a receiver can, against a daemon subprocess:
each is retried on the backoff schedule and ends in
the log, while a healthy endpoint is served as if nothing happened."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tests.conftest import WriteConfig, new_secret
from tests.faults import (
    deliveries,
    delivery_section,
    feed_section,
    notifier_section,
    statuses,
    webhook_subscriber,
)
from tests.peers import wait_for
from tests.peers.daemon import Daemon
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.webhook import Reply, WebhookPeer

pytestmark = pytest.mark.slow

BACKOFF_S = (1.0, 1.0, 2.0)
TIMEOUT_S = 1.0
TRIES = len(BACKOFF_S) + 1

# path -> what it answers every time
FAULTS = {
    "/e500": Reply(500, body=b"internal error"),
    "/hang": Reply(204, hang_s=5.0),  # answers long after the 1 s timeout
    "/drop": Reply(drop=True),  # closes the connection without answering
}


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
    deadline = time.monotonic() + 15
    while statuses(items := await deliveries(config)).get("queued"):
        assert time.monotonic() < deadline, statuses(items)
        await asyncio.sleep(0.3)
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

    # The healthy endpoint did not wait behind the hanging one.
    [ok] = hooks.calls_to("/ok")
    first_hang = hooks.calls_to("/hang")[0]
    assert ok.received_at - first_hang.received_at < 1.0

    for path in FAULTS:
        calls = hooks.calls_to(path)
        assert len(calls) == TRIES, path  # not one more after "dead"
        assert len({c.headers["webhook-id"] for c in calls}) == 1
        assert all(c.verified for c in calls), [c.error for c in calls]
        # Retried on the schedule: each gap is the backoff wait (plus, for the hanging
        # endpoint, the timeout the attempt spent), with slack for a loaded machine.
        spent_s = TIMEOUT_S if path == "/hang" else 0.0
        gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(calls)]
        for wait_s, gap in zip(BACKOFF_S, gaps, strict=True):
            assert wait_s + spent_s - 0.05 <= gap <= wait_s + spent_s + 1.5, (path, gaps)

    busy = hooks.calls_to("/busy")
    assert busy[1].received_at - busy[0].received_at >= 3.0 - 0.05  # Retry-After honoured
    assert busy[0].headers["webhook-id"] == busy[1].headers["webhook-id"]
